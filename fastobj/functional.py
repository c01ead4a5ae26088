"""The tensor-computation core shared by the objectives.

Each hot computation has three parts, kept together here:

* ``<name>_ref``: the pure-PyTorch reference. It is the CPU path (differentiated by plain
  autograd, and traced and fused by ``torch.compile`` like any PyTorch code), the oracle of the
  tests and the baseline of the benchmarks; nothing else writes the formula again.
* a ``torch.library`` custom op ``fastobj::<name>`` around the Triton kernels of
  ``fastobj.kernels``, with a fake (meta) implementation and an autograd formula whose
  backward is a second op, so the kernels run inside ``torch.compile(fullgraph=True)`` graphs.
  Eager calls skip the dispatcher: a ``torch.autograd.Function`` made from the same
  implementation and the same autograd formula (:func:`_eager`) calls the launchers directly,
  which saves torch's Python custom-op dispatch (tens of microseconds an op) on every call.
* the public function (``diversity``, ``total_variation``, ``dot_cossim``) the objectives
  call. It asks :func:`fastobj.backend.backend_for` which path to take (under
  ``torch.compile`` the answer is fixed when the graph is traced).

Reductions over 16-bit inputs accumulate in float32; results come back in the input's dtype,
except the intermediate Gram sums of Diversity, which stay in the accumulation dtype.
"""
from __future__ import annotations

import functools
from typing import Callable, Tuple

import torch

from .backend import backend_for

GRAM_NORM_EPS = 1e-12  # F.normalize's floor on ‖G_i‖_F, as in the classic Diversity
COSSIM_EPS = 1e-8  # torch.cosine_similarity's eps, as in the classic dot_cossim


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for 16-bit inputs; float32 and float64 accumulate in themselves."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def zero_in_graph(t: torch.Tensor) -> torch.Tensor:
    """An exact 0-dim zero in t's dtype and autograd graph (an empty sum): its gradient is
    zeros, and a backward through it still reaches t's producers."""
    return t.reshape(-1)[:0].sum()


def _eager(forward: Callable, setup_context: Callable, backward: Callable) -> Callable:
    """An autograd.Function's ``apply`` that runs ``forward`` (an op's implementation) and the
    op's autograd formula (``setup_context``, ``backward``) without the dispatcher: the eager
    path of an op. Under ``torch.compile`` the public functions call the op itself, which
    Dynamo keeps whole in the graph."""
    class Eager(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            output = forward(*inputs)
            setup_context(ctx, inputs, output)
            return output

    Eager.backward = staticmethod(backward)
    return Eager.apply


def _use_op() -> bool:
    """Whether to call the custom op (under torch.compile) rather than the eager path."""
    return torch.compiler.is_compiling()


# --------------------------------------------------------------------------------------------
# Diversity: Gram matrices, Frobenius-normalised, summed over the batch.
# --------------------------------------------------------------------------------------------

class _Gram(torch.autograd.Function):
    """Per-sample Gram matrices F Fᵀ of (B, C, P) features.

    The backward uses the symmetry of G: ∂L/∂F = (Ḡ + Ḡᵀ) F, one batched matmul where plain
    autograd of ``f @ f.mT`` spends two (about 40% of Diversity's CPU time at B=128, C=64).
    """

    @staticmethod
    def forward(ctx, f: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(f)
        return torch.matmul(f, f.mT)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (f,) = ctx.saved_tensors
        return torch.matmul(grad + grad.mT, f)


def diversity_sums_ref(feats: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sums of the normalised Gram matrices of a batch.

    feats: (B, C, P), sample i flattened to F_i (C x P).
    Returns S = Σ_i g_i (C, C), sq = Σ_i ‖g_i‖²_F (0-dim) and the raw norms ‖G_i‖_F (B,), where
    G_i = F_i F_iᵀ and g_i = G_i / max(‖G_i‖_F, 1e-12); all in the accumulation dtype.
    """
    grams = _Gram.apply(feats.to(accumulation_dtype(feats.dtype)))
    norms = torch.linalg.vector_norm(grams, dim=(1, 2))
    normalised = grams / norms.clamp_min(GRAM_NORM_EPS)[:, None, None]
    return normalised.sum(0), normalised.square().sum(), norms


def diversity_value(sums: torch.Tensor, sq: torch.Tensor, count) -> torch.Tensor:
    """-(‖S‖² - Σ‖g_i‖²) / B: the classic pairwise sum over i != j, in closed form."""
    return (sq - sums.square().sum()) / count


def diversity_ref(feats: torch.Tensor) -> torch.Tensor:
    """Diversity value of a (B, C, P) batch, 0-dim, in feats' dtype (the reference path)."""
    sums, sq, _ = diversity_sums_ref(feats)
    return diversity_value(sums, sq, feats.shape[0]).to(feats.dtype)


def _diversity_sums_impl(feats: torch.Tensor
                         ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(S, sq, norms, grams): grams holds the packed upper Gram tiles of every sample for the
    backward (kernels.diversity.gram_storage_shape, in gram_storage_dtype)."""
    from .kernels import diversity as kernels  # Triton is only touched when a kernel runs
    return kernels.diversity_sums_forward(feats, GRAM_NORM_EPS)


_diversity_sums_op = torch.library.custom_op("fastobj::diversity_sums", _diversity_sums_impl,
                                             mutates_args=())


@_diversity_sums_op.register_fake
def _(feats):
    from .kernels import diversity as kernels
    acc = accumulation_dtype(feats.dtype)
    b, c = feats.shape[0], feats.shape[1]
    # The kernel's own shape function: the packed tiles depend on (B, C) only, never on
    # feats' strides or the matmul precision, so this matches the real output on any layout.
    grams = feats.new_empty(kernels.gram_storage_shape(b, c, feats.dtype),
                            dtype=kernels.gram_storage_dtype(feats.dtype))
    return (feats.new_empty((c, c), dtype=acc), feats.new_empty((), dtype=acc),
            feats.new_empty((b,), dtype=acc), grams)


def _diversity_sums_backward_impl(feats: torch.Tensor, norms: torch.Tensor, grams: torch.Tensor,
                                  grad_sums: torch.Tensor, grad_sq: torch.Tensor
                                  ) -> torch.Tensor:
    from .kernels import diversity as kernels
    return kernels.diversity_sums_backward(feats, norms, grams, grad_sums, grad_sq,
                                           GRAM_NORM_EPS)


_diversity_sums_backward_op = torch.library.custom_op(
    "fastobj::diversity_sums_backward", _diversity_sums_backward_impl, mutates_args=())


@_diversity_sums_backward_op.register_fake
def _(feats, norms, grams, grad_sums, grad_sq):
    return feats.new_empty(feats.shape)  # the kernel writes a contiguous gradient


def _diversity_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], output[2], output[3])
    # No zero-filled gradients for the outputs the backward ignores (norms, and the packed
    # grams: 0.34 GB of memset at B = 1024, C = 512); a missing S or sq gradient is None.
    ctx.set_materialize_grads(False)


def _diversity_backward(run_backward, ctx, grad_sums, grad_sq, _grad_norms, _grad_grams):
    feats, norms, grams = ctx.saved_tensors
    if grad_sums is None:
        grad_sums = norms.new_zeros((feats.shape[1], feats.shape[1]))
    if grad_sq is None:
        grad_sq = norms.new_zeros(())
    return run_backward(feats, norms, grams, grad_sums.contiguous(), grad_sq)


_diversity_sums_op.register_autograd(
    functools.partial(_diversity_backward, _diversity_sums_backward_op),
    setup_context=_diversity_setup)
_diversity_sums_eager = _eager(_diversity_sums_impl, _diversity_setup,
                               functools.partial(_diversity_backward,
                                                 _diversity_sums_backward_impl))


def diversity_sums(feats: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(S, Σ‖g_i‖²) of a (B, C, P) batch on the chosen backend (differentiable)."""
    if backend_for(feats) == "torch":
        sums, sq, _ = diversity_sums_ref(feats)
    else:
        sums, sq, _, _ = (_diversity_sums_op if _use_op() else _diversity_sums_eager)(feats)
    return sums, sq


class _DiversityEager(torch.autograd.Function):
    """The eager kernel path of :func:`diversity`: the Gram sums and their closed-form value in
    one autograd node. Built from the sums' op implementation, it saves the value's five torch
    ops and their five backward nodes on every step (about a third of the call's host time);
    under torch.compile, :func:`diversity` calls the sums' op and Dynamo traces the value.

    With value v = (sq - ‖S‖²)/B and upstream gradient u: ∂v/∂S = -2uS/B, ∂v/∂sq = u/B, which
    the backward kernels form from S and u themselves (kernels.diversity_value_backward)."""

    @staticmethod
    def forward(ctx, feats):
        sums, sq, norms, grams = _diversity_sums_impl(feats)
        ctx.save_for_backward(feats, norms, grams, sums)
        return diversity_value(sums, sq, feats.shape[0]).to(feats.dtype)

    @staticmethod
    def backward(ctx, grad):
        from .kernels import diversity as kernels
        feats, norms, grams, sums = ctx.saved_tensors
        return kernels.diversity_value_backward(feats, norms, grams, sums, grad, GRAM_NORM_EPS)


def diversity(feats: torch.Tensor) -> torch.Tensor:
    """Diversity of a (B, C, P) batch on the chosen backend: 0-dim, feats' dtype."""
    if backend_for(feats) == "triton" and not _use_op():
        return _DiversityEager.apply(feats)
    sums, sq = diversity_sums(feats)
    return diversity_value(sums, sq, feats.shape[0]).to(feats.dtype)


# --------------------------------------------------------------------------------------------
# Total variation over the last two dims.
# --------------------------------------------------------------------------------------------

def total_variation_ref(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic L1 total variation over the last two dims, summed over the rest; 0-dim.

    Σ|x[..., i+1, :] - x[..., i, :]| + Σ|x[..., :, j+1] - x[..., :, j]|, accumulated in the
    accumulation dtype, returned in x's dtype.
    """
    a = x.to(accumulation_dtype(x.dtype))
    rows = (a[..., 1:, :] - a[..., :-1, :]).abs().sum()
    cols = (a[..., :, 1:] - a[..., :, :-1]).abs().sum()
    return (rows + cols).to(x.dtype)


def _total_variation_impl(x: torch.Tensor) -> torch.Tensor:
    from .kernels import total_variation as kernels
    return kernels.total_variation_forward(x, x.dtype)


_total_variation_op = torch.library.custom_op("fastobj::total_variation", _total_variation_impl,
                                              mutates_args=())


@_total_variation_op.register_fake
def _(x):
    return x.new_empty(())


def _total_variation_backward_impl(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    from .kernels import total_variation as kernels
    return kernels.total_variation_backward(x, grad)


_total_variation_backward_op = torch.library.custom_op(
    "fastobj::total_variation_backward", _total_variation_backward_impl, mutates_args=())


@_total_variation_backward_op.register_fake
def _(x, grad):
    return torch.empty_like(x)


def _tv_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _tv_backward(run_backward, ctx, grad):
    (x,) = ctx.saved_tensors
    return run_backward(x, grad)


_total_variation_op.register_autograd(
    functools.partial(_tv_backward, _total_variation_backward_op), setup_context=_tv_setup)
_total_variation_eager = _eager(_total_variation_impl, _tv_setup,
                                functools.partial(_tv_backward, _total_variation_backward_impl))


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Total variation of x (rank >= 2) on the chosen backend; 0-dim, x's dtype."""
    if backend_for(x) == "torch":
        return total_variation_ref(x)
    return (_total_variation_op if _use_op() else _total_variation_eager)(x)


# --------------------------------------------------------------------------------------------
# Per-position dot product times clamped cosine (Direction family).
# --------------------------------------------------------------------------------------------

def dot_cossim_ref(acts: torch.Tensor, vec: torch.Tensor, cossim_pow: float,
                   eps: float = COSSIM_EPS, angled: bool = False) -> torch.Tensor:
    """Channel dot product at every position, times a clamped cosine raised to cossim_pow.

    acts: (B, C, P). vec: (Bv, C, Pv) with Bv in {1, B} and Pv in {1, P} (broadcast).
    Returns (B, P) in acts' dtype.

    angled=False (Direction, NeuronDirection, TensorDirection):
        dot = Σ_c v·a;  cos = dot / (max(‖v‖, eps) · max(‖a‖, eps))  (torch.cosine_similarity).
    angled=True (AngledNeuronDirection, per sample, Lucid's activation-atlas form):
        dot = mean_c v·a;  cos = dot / (eps + ‖a‖)  (no division by ‖v‖).
    Result dot · clamp(cos, min=0.1) ** cossim_pow; with cossim_pow == 0 just dot.
    """
    acc = accumulation_dtype(acts.dtype)
    a, v = acts.to(acc), vec.to(acc)
    prod = (a * v).sum(1)
    if angled:
        dot = prod / acts.shape[1]
        cos = dot / (eps + torch.linalg.vector_norm(a, dim=1))
    else:
        dot = prod
        cos = torch.cosine_similarity(v, a, dim=1, eps=eps)
    out = dot if cossim_pow == 0 else dot * cos.clamp_min(0.1).pow(cossim_pow)
    return out.to(acts.dtype)


def _dot_cossim_impl(acts: torch.Tensor, vec: torch.Tensor, cossim_pow: float, eps: float,
                     angled: bool) -> torch.Tensor:
    from .kernels import dot_cossim as kernels
    return kernels.dot_cossim_forward(acts, vec, cossim_pow, eps, angled)


_dot_cossim_op = torch.library.custom_op("fastobj::dot_cossim", _dot_cossim_impl,
                                         mutates_args=())


@_dot_cossim_op.register_fake
def _(acts, vec, cossim_pow, eps, angled):
    return acts.new_empty((acts.shape[0], acts.shape[2]))


def _dot_cossim_backward_impl(acts: torch.Tensor, vec: torch.Tensor, grad: torch.Tensor,
                              cossim_pow: float, eps: float, angled: bool, vec_grad: bool
                              ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Gradients for (acts, vec); the one for vec is an empty (0,) tensor unless vec_grad is
    set (nothing is written for a gradient nobody asked for)."""
    from .kernels import dot_cossim as kernels
    return kernels.dot_cossim_backward(acts, vec, grad, cossim_pow, eps, angled, vec_grad)


_dot_cossim_backward_op = torch.library.custom_op(
    "fastobj::dot_cossim_backward", _dot_cossim_backward_impl, mutates_args=())


@_dot_cossim_backward_op.register_fake
def _(acts, vec, grad, cossim_pow, eps, angled, vec_grad):
    return torch.empty_like(acts), torch.empty_like(vec) if vec_grad else vec.new_empty((0,))


def _dot_cossim_setup(ctx, inputs, output):
    acts, vec, ctx.cossim_pow, ctx.eps, ctx.angled = inputs
    ctx.save_for_backward(acts, vec)


def _dot_cossim_backward(run_backward, ctx, grad):
    acts, vec = ctx.saved_tensors
    grad_acts, grad_vec = run_backward(acts, vec, grad.contiguous(), ctx.cossim_pow, ctx.eps,
                                       ctx.angled, ctx.needs_input_grad[1])
    return grad_acts, grad_vec if ctx.needs_input_grad[1] else None, None, None, None


_dot_cossim_op.register_autograd(functools.partial(_dot_cossim_backward, _dot_cossim_backward_op),
                                 setup_context=_dot_cossim_setup)
_dot_cossim_eager = _eager(_dot_cossim_impl, _dot_cossim_setup,
                           functools.partial(_dot_cossim_backward, _dot_cossim_backward_impl))


def dot_cossim(acts: torch.Tensor, vec: torch.Tensor, cossim_pow: float = 0.0,
               eps: float = COSSIM_EPS, angled: bool = False) -> torch.Tensor:
    """:func:`dot_cossim_ref` on the chosen backend, (B, C, P) activations; returns (B, P)."""
    if backend_for(acts, vec) == "torch":
        return dot_cossim_ref(acts, vec, cossim_pow, eps, angled)
    return (_dot_cossim_op if _use_op() else _dot_cossim_eager)(
        acts, vec, float(cossim_pow), float(eps), bool(angled))


# --------------------------------------------------------------------------------------------
# Alignment of neighbouring samples.
# --------------------------------------------------------------------------------------------

ALIGNMENT_MAX_DISTANCE = 4


def alignment_pairs_ref(first: torch.Tensor, second: torch.Tensor, distance: int,
                        decay_ratio: float) -> torch.Tensor:
    """Σ_i mean((first_i - second_i)²) / decay_ratio^distance over paired samples; 0-dim, acc."""
    acc = accumulation_dtype(first.dtype)
    diff = (first.to(acc) - second.to(acc)).reshape(first.shape[0], -1)
    return diff.square().mean(dim=1).sum() / decay_ratio ** distance


def alignment_ref(s: torch.Tensor, decay_ratio: float) -> torch.Tensor:
    """-Σ_{d=1..4} Σ_i mean((s_i - s_{i+d})²) / decay_ratio^d, shape (1,), in s's dtype.

    Vectorised over the batch: one slice pair per distance. A batch of one gives 0.
    """
    total = zero_in_graph(s).to(accumulation_dtype(s.dtype))
    for d in range(1, min(ALIGNMENT_MAX_DISTANCE, s.shape[0] - 1) + 1):
        total = total + alignment_pairs_ref(s[:-d], s[d:], d, decay_ratio)
    return (-total).reshape(1).to(s.dtype)
