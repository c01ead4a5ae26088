"""The operations ``fastobj bench`` times: their inputs, providers and cost models.

Providers, side by side in one process:

``fastobj``
    the library's public call (``fastobj.functional.diversity``, ``total_variation``,
    ``dot_cossim``, or the objective where there is no kernel) with the automatic backend: the
    Triton kernel on CUDA, the PyTorch reference elsewhere. Where it runs the reference, the
    sweep measures it once and says so.
``reference``
    the PyTorch reference ``fastobj.functional.<name>_ref``, imported, never rewritten.
``classic``
    the algorithm as Lucid, Lucent and Captum compute it (:mod:`.baselines`).
``compile``
    ``torch.compile`` of the reference (of the objective where there is no reference).
``bmm``
    (Diversity) torch's batched matrix products for the products the kernels compute: the
    Grams F Fᵀ forward, and backward one product (B, C, C)·(B, C, P) for the gradient; the
    sweep reports every provider's time as a multiple of it ("x bmm").

Modes: ``fwd`` (inputs without grad) and ``fwd+bwd`` (the forward, then
``torch.autograd.grad`` with respect to the activations under a fixed random upstream gradient).

Cost models (bytes moved, FLOPs done) of the ops with a kernel come from the kernel modules'
own ``cost`` functions (``fastobj.kernels.<name>.cost``), the single source of truth.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch

import fastobj
from fastobj import functional as Fn
from fastobj.backend import backend_for, interpreter_enabled, triton_import_error

from . import baselines, render_step, vit_ops

Dims = Tuple[int, ...]

MODES = ("fwd", "fwd+bwd")
PROVIDERS = ("fastobj", "reference", "classic", "compile", "bmm")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "float64": torch.float64}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16",
                 "fp64": "float64"}

DIRECTION_COSSIM_POW = 1.0  # exercises the cosine term (with 0 the op is a plain dot product)
ALIGNMENT_DECAY = 2.0
INTERPOLATION_CHANNELS = (1, 2)


class Unavailable(Exception):
    """A provider that does not exist for an op (skipped, with the reason)."""


def canonical_dtype(name: str) -> str:
    """The one name every output uses for a dtype ("bf16" -> "bfloat16"); KeyError if unknown."""
    name = DTYPE_ALIASES.get(name, name)
    if name not in DTYPES:
        raise KeyError(name)
    return name


def shape_str(dims: Sequence[int]) -> str:
    return "x".join(str(d) for d in dims)


@dataclasses.dataclass(frozen=True)
class Cost:
    bytes: float
    flops: float
    bound: str  # "compute": judged against the matmul ceiling; "memory": the copy ceiling


@dataclasses.dataclass(frozen=True)
class Op:
    """One benchmarked computation.

    ``make(dims, dtype, device, generator)`` returns the positional arguments; the first
    ``n_diff`` are differentiated in fwd+bwd mode. ``providers`` maps a provider name to a
    builder of the callable on those arguments; ``compile_source`` builds what the
    ``compile`` provider compiles (None: no compile provider). ``cost(dims, dtype, mode)``
    gives the op's :class:`Cost` (None when unknown). ``classic_growth`` is the exponent of B
    in the classic algorithm's number of ops (0: vectorised), used to bound it.
    ``has_kernel``: the fastobj provider dispatches between a Triton kernel and the reference.
    ``objective_part``: an op timing the objective alone, on the same seed, whose time the
    sweep reports as a share of this one's.
    """
    name: str
    make: Callable[[Dims, torch.dtype, torch.device, torch.Generator], Tuple[torch.Tensor, ...]]
    n_diff: int
    providers: Dict[str, Callable[[], Callable]]
    compile_source: Optional[Callable[[], Callable]]
    cost: Callable[[Dims, torch.dtype, str], Optional[Cost]]
    classic_growth: int = 0
    has_kernel: bool = True
    objective_part: Optional["Op"] = None


# -- inputs ----------------------------------------------------------------------------------

def _randn(dims: Sequence[int], dtype, device, gen) -> torch.Tensor:
    return torch.randn(tuple(dims), device=device, generator=gen).to(dtype)


def _acts(dims, dtype, device, gen):
    return (_randn(dims, dtype, device, gen),)


def _acts_and_vec(per_sample: bool):
    def make(dims, dtype, device, gen):
        vec_shape = (dims[0], dims[1]) if per_sample else (dims[1],)
        return _randn(dims, dtype, device, gen), _randn(vec_shape, dtype, device, gen)
    return make


def _two_acts(dims, dtype, device, gen):
    return _randn(dims, dtype, device, gen), _randn(dims, dtype, device, gen)


# -- cost models -----------------------------------------------------------------------------

def _kernel(name: str):
    """``fastobj.kernels.<name>`` for its cost function, or None when Triton does not import."""
    if triton_import_error() is not None:
        return None
    return importlib.import_module(f"fastobj.kernels.{name}")


def _diversity_cost(dims, dtype, mode) -> Optional[Cost]:
    kernel = _kernel("diversity")
    return None if kernel is None else Cost(*kernel.cost(dims, dtype, mode), "compute")


def _total_variation_cost(dims, dtype, mode) -> Optional[Cost]:
    kernel = _kernel("total_variation")
    return None if kernel is None else Cost(*kernel.cost(dims, dtype, mode), "memory")


def _direction_cost(per_sample: bool):
    def cost(dims, dtype, mode) -> Optional[Cost]:
        kernel = _kernel("dot_cossim")
        acts = (dims[0], dims[1], math.prod(dims[2:]))
        vec = (dims[0] if per_sample else 1, dims[1], 1)
        return None if kernel is None else Cost(*kernel.cost(acts, vec, dtype, mode), "memory")
    return cost


def _alignment_cost(dims, dtype, mode) -> Cost:
    """No kernel: read the activation (fwd+bwd: read it again, write its gradient); FLOPs a
    subtraction, a square and an add per element for each of the four distances."""
    n = math.prod(dims)
    passes = 3 if mode == "fwd+bwd" else 1
    return Cost(n * dtype.itemsize * passes, 12.0 * n * (2 if mode == "fwd+bwd" else 1),
                "memory")


def _interpolation_cost(dims, dtype, mode) -> Cost:
    """No kernel: read the selected channel of both activations (fwd+bwd: write both full
    gradients too); FLOPs a multiply and an add per selected element."""
    selected = math.prod(dims) // dims[1]
    moved = 2 * selected + (2 * math.prod(dims) if mode == "fwd+bwd" else 0)
    return Cost(moved * dtype.itemsize, 2.0 * selected * (2 if mode == "fwd+bwd" else 1),
                "memory")


def _vit_cost(kernel_cost: Callable[[Dims, torch.dtype, str], Optional[Cost]]):
    """The cost of a token op: the kernel's on the (B, C, patches) view it reads."""
    def cost(dims, dtype, mode) -> Optional[Cost]:
        batch, tokens, channels = dims
        return kernel_cost((batch, channels, tokens - vit_ops.PREFIX), dtype, mode)
    return cost


def _no_cost(dims, dtype, mode) -> None:
    return None


# -- providers -------------------------------------------------------------------------------

def _diversity_fastobj(x):
    return Fn.diversity(x.flatten(2))


def _diversity_reference(x):
    return Fn.diversity_ref(x.flatten(2))


class _GramProducts(torch.autograd.Function):
    """The matrix products of Diversity through torch.bmm: forward the Grams F Fᵀ, backward
    one (B, C, C)·(B, C, P) product (the shape of W·F), in the input's dtype."""

    @staticmethod
    def forward(ctx, f):
        ctx.save_for_backward(f)
        return torch.bmm(f, f.mT)

    @staticmethod
    def backward(ctx, grad):
        (f,) = ctx.saved_tensors
        return torch.bmm(grad, f)


def _diversity_bmm(x):
    return _GramProducts.apply(x.flatten(2))


def _dir_vec(x, vec):
    return vec.reshape(-1, x.shape[1], 1)


def _direction_fastobj(x, vec):
    return Fn.dot_cossim(x.flatten(2), _dir_vec(x, vec), DIRECTION_COSSIM_POW)


def _direction_reference(x, vec):
    return Fn.dot_cossim_ref(x.flatten(2), _dir_vec(x, vec), DIRECTION_COSSIM_POW)


def _direction_classic(x, vec):
    return baselines.direction(x, vec, DIRECTION_COSSIM_POW)


def _alignment_reference(x):
    return Fn.alignment_ref(x, ALIGNMENT_DECAY)


def _alignment_classic(x):
    return baselines.alignment(x, ALIGNMENT_DECAY)


def _alignment_fastobj():
    key = torch.nn.Identity()
    objective = fastobj.Alignment(key, decay_ratio=ALIGNMENT_DECAY)
    return lambda x: objective({key: x})


def _interpolation_fastobj():
    one, two = torch.nn.Identity(), torch.nn.Identity()
    objective = fastobj.ActivationInterpolation(one, INTERPOLATION_CHANNELS[0], two,
                                                INTERPOLATION_CHANNELS[1])
    return lambda x1, x2: objective({one: x1, two: x2})


def _interpolation_classic(x1, x2):
    return baselines.activation_interpolation(x1, x2, *INTERPOLATION_CHANNELS)


def _direction_op(name: str, per_sample: bool) -> Op:
    return Op(name, _acts_and_vec(per_sample), 1,
              {"fastobj": lambda: _direction_fastobj, "reference": lambda: _direction_reference,
               "classic": lambda: _direction_classic},
              lambda: _direction_reference, _direction_cost(per_sample))


def _render_step_op() -> Op:
    both = {"fastobj": render_step.fastobj_objective, "classic": render_step.classic_objective}
    objective = Op("render_objective", render_step.make_activations, 2,
                   {k: render_step.objective_provider(v) for k, v in both.items()}, None,
                   _no_cost, classic_growth=2)
    return Op("render_step", render_step.make_images, 1,
              {k: render_step.step_provider(v) for k, v in both.items()}, None, _no_cost,
              classic_growth=2, objective_part=objective)


def _vit_op(name: str, cost, classic_growth: int) -> Op:
    """A ViT-B/16 token op of :mod:`.vit_ops` (its copy+fastobj provider is for its tests)."""
    functions = vit_ops.FUNCTIONS[name]
    return Op(name, vit_ops.MAKERS[name], 1,
              {p: (lambda f=functions[p]: f) for p in ("fastobj", "reference", "classic")},
              lambda: functions["reference"], cost, classic_growth=classic_growth)


OPS: Dict[str, Op] = {op.name: op for op in (
    Op("diversity", _acts, 1,
       {"fastobj": lambda: _diversity_fastobj, "reference": lambda: _diversity_reference,
        "classic": lambda: baselines.diversity, "bmm": lambda: _diversity_bmm},
       lambda: _diversity_reference, _diversity_cost, classic_growth=2),
    Op("total_variation", _acts, 1,
       {"fastobj": lambda: Fn.total_variation, "reference": lambda: Fn.total_variation_ref,
        "classic": lambda: baselines.total_variation},
       lambda: Fn.total_variation_ref, _total_variation_cost),
    _direction_op("direction", per_sample=False),
    _direction_op("direction_per_sample", per_sample=True),
    Op("alignment", _acts, 1,
       {"fastobj": _alignment_fastobj, "reference": lambda: _alignment_reference,
        "classic": lambda: _alignment_classic},
       lambda: _alignment_reference, _alignment_cost, classic_growth=1, has_kernel=False),
    Op("activation_interpolation", _two_acts, 2,
       {"fastobj": _interpolation_fastobj, "classic": lambda: _interpolation_classic},
       _interpolation_fastobj, _interpolation_cost, classic_growth=1, has_kernel=False),
    _render_step_op(),
    _vit_op("vit_diversity", _vit_cost(_diversity_cost), classic_growth=2),
    _vit_op("vit_direction", _vit_cost(_direction_cost(per_sample=False)), classic_growth=0),
)}


def make_args(op: Op, dims: Dims, dtype: str, device: torch.device, seed: int
              ) -> Tuple[torch.Tensor, ...]:
    gen = torch.Generator(device=device).manual_seed(seed)
    return op.make(dims, DTYPES[dtype], device, gen)


def has_provider(op: Op, provider: str) -> bool:
    return op.compile_source is not None if provider == "compile" else provider in op.providers


def build_provider(op: Op, provider: str) -> Callable:
    """The callable of ``provider`` for ``op``; raises :class:`Unavailable`."""
    if not has_provider(op, provider):
        raise Unavailable(f"{op.name} has no {provider} provider")
    if provider == "compile":
        return torch.compile(op.compile_source(), dynamic=False)
    return op.providers[provider]()


def backend_label(op: Op, provider: str, args: Tuple[torch.Tensor, ...]) -> str:
    """What runs: "triton", "triton-interpreter", "inductor" or "torch"."""
    if provider == "fastobj" and op.has_kernel:
        label = backend_for(*[a for a in args if isinstance(a, torch.Tensor)])
        if label == "triton" and args[0].device.type == "cpu" and interpreter_enabled():
            label = "triton-interpreter"
        return label
    return "inductor" if provider == "compile" else "torch"
