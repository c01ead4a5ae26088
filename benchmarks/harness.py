"""The engine behind ``fastobj bench``.

For each operation and size it times, side by side in one process, up to four providers:

``fastobj``
    the library's public call (``fastobj.functional.diversity``, ``total_variation``,
    ``dot_cossim``, or the objective for the cheap objectives) with the automatic backend: the
    Triton kernel on CUDA, the reference (through the custom op) on CPU.
``reference``
    the PyTorch reference ``fastobj.functional.<name>_ref``, imported, never rewritten.
``classic``
    the algorithm as Lucid, Lucent and Captum compute it (:mod:`.baselines`).
``compile``
    ``torch.compile`` of the reference (of the objective where there is no reference). Its
    warm-up, compilation included, is reported as ``compile_s`` and excluded from the timing;
    if compilation fails on this machine the provider is skipped with the reason.

in two modes: ``fwd`` (inputs without grad) and ``fwd+bwd`` (the forward, then
``torch.autograd.grad`` with respect to the activations under a fixed random upstream
gradient).

Each measurement is the median of repeated timings after a warm-up (CUDA synchronised around
every sample; the providers of one case sampled in interleaved rounds, so a burst of other
work on a shared machine weighs on all of them alike), the peak memory of one call, the
backend that ran (``fastobj.backend_for``), the ratio to the classic baseline measured in the
same run, and the throughput given by the op's
cost model (:func:`cost_model`, the one place where FLOPs and bytes are defined) as a fraction
of the device's own ceilings, measured by this harness (:func:`measure_ceilings`).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over one call, minus what was
allocated before it (inputs excluded). On CPU the allocations and frees of one call are traced
with ``torch.profiler`` (``profile_memory=True``) and the running total's maximum is reported;
this is measured, not computed from shapes, but calls slower than a quarter second are not
traced (the tracer's per-op cost would dominate) and report no figure.

The classic Diversity loop is O(B²) tiny ops; the harness bounds it: for each op, mode, dtype
and trailing shape the classic provider is run at increasing batch sizes only while the
previous point stayed under the per-point budget (``--budget``), and a point predicted (from the
previous one and the op's growth in B) to take more than three budgets is skipped.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime
import math
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

import fastobj
from fastobj import functional as Fn
from fastobj.backend import backend_for, interpreter_enabled

from . import baselines

Dims = Tuple[int, ...]

MODES = ("fwd", "fwd+bwd")
PROVIDERS = ("fastobj", "reference", "classic", "compile")
DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "float64": torch.float64, "fp64": torch.float64,
}

DIRECTION_COSSIM_POW = 1.0  # exercises the cosine term (with 0 the op is a plain dot product)
ALIGNMENT_DECAY = 2.0
INTERPOLATION_CHANNELS = (1, 2)

CSV_NAME = "bench.csv"
PLOT_NAME = "diversity.png"
TABLE_NAME = "table.txt"
CSV_COLUMNS = (
    "op", "provider", "mode", "shape", "dtype", "device", "device_name", "median_s", "min_s",
    "repeats", "peak_mem_bytes", "mem_method", "backend", "ratio_to_classic",
    "speedup_vs_classic", "compile_s", "flops", "bytes", "tflops", "gbs", "pct_of_ceiling",
    "fastobj_version", "torch_version", "date", "preset", "note",
)

CPU_MEMORY_TRACE_LIMIT_S = 0.25  # calls slower than this are not traced on CPU
CLASSIC_SKIP_FACTOR = 3.0  # skip a classic point predicted to take more than this many budgets
CLASSIC_PROBE_BATCH = 16  # batch of the calibration call before a large first classic point
SAMPLING_ROUNDS = 3  # the providers of a case are sampled in this many interleaved rounds


class BenchError(Exception):
    """A usage error: reported on stderr, exit code 2."""


class Unavailable(Exception):
    """A provider that does not exist for an op (skipped, with the reason)."""


# ============================================================================================
# Cost models: the one place where each op's FLOPs and bytes are defined.
# ============================================================================================

DIVERSITY_FWDBWD_FLOP_FACTOR = 2
"""fwd+bwd FLOPs of Diversity as a multiple of the forward's 2·B·C²·P: the useful work is the
forward's Grams plus the gradient product (Ḡ_i + Ḡ_iᵀ)·F_i, another 2·B·C²·P. Work an
implementation adds (recomputing the Grams in the backward, as the Triton kernel does to keep
memory at one scratch buffer) is not credited, nor is work saved by Gram symmetry, so the
reported rate is useful FLOPs per second."""


@dataclasses.dataclass(frozen=True)
class Cost:
    flops: float
    bytes: float
    bound: str  # "compute": judged against the matmul ceiling; "memory": the copy ceiling


def cost_model(op: str, dims: Dims, dtype: torch.dtype, mode: str) -> Cost:
    """FLOPs and bytes an op must do and move, by the models in DESIGN.md.

    diversity (B, C, H, W): forward 2·B·C²·P FLOPs for the Grams (P = H·W), fwd+bwd
        :data:`DIVERSITY_FWDBWD_FLOP_FACTOR` times that; bytes: read the activation (+ write
        its gradient). Compute-bound.
    total_variation (…, H, W): bytes: read x (+ write its gradient). Memory-bound.
    direction (B, C, H, W), vec (C,) or (B, C): bytes: read the activation once and the vector,
        write the (B, P) result (+ read the upstream (B, P), write the activation's gradient).
    alignment: read the activation (+ write its gradient).
    activation_interpolation: read the selected channel of both activations (+ write both
        full gradients).
    FLOPs of the memory-bound ops count the arithmetic per element, for reference only.
    """
    size = torch.empty((), dtype=dtype).element_size()
    n = math.prod(dims)
    bwd = mode == "fwd+bwd"
    twice = 2 if bwd else 1  # fwd+bwd: the backward repeats the per-element work and traffic
    if op == "diversity":
        b, c = dims[0], dims[1]
        p = math.prod(dims[2:])
        flops = 2.0 * b * c * c * p
        return Cost(flops * (DIVERSITY_FWDBWD_FLOP_FACTOR if bwd else 1), n * size * twice,
                    "compute")
    if op == "total_variation":
        return Cost(6.0 * n * twice, n * size * twice, "memory")
    if op in ("direction", "direction_per_sample"):
        b, c = dims[0], dims[1]
        p = math.prod(dims[2:])
        vec = (b if op == "direction_per_sample" else 1) * c
        moved = (n + vec + b * p) * size + ((b * p + n) * size if bwd else 0)
        return Cost(6.0 * n * twice, moved, "memory")
    if op == "alignment":
        return Cost(3.0 * 4 * n * twice, n * size * twice, "memory")
    if op == "activation_interpolation":  # one channel of each target is read
        selected = n // dims[1]
        return Cost(4.0 * selected * twice, 2 * selected * size + (2 * n * size if bwd else 0),
                    "memory")
    raise KeyError(op)


# ============================================================================================
# Operations and their providers.
# ============================================================================================

@dataclasses.dataclass(frozen=True)
class Op:
    """One benchmarked computation.

    ``make(dims, dtype, device, generator)`` returns the positional arguments; the first
    ``n_diff`` are the activations (differentiated in fwd+bwd mode). ``providers`` maps a
    provider name to a builder returning the callable on those arguments (raising
    :class:`Unavailable` when the op has no such provider); ``compile_source`` is the function
    the ``compile`` provider compiles. ``classic_growth``: exponent of B in the classic
    algorithm's number of ops (0: vectorised), used to bound it.
    """
    name: str
    help: str
    make: Callable[[Dims, torch.dtype, torch.device, torch.Generator], Tuple[torch.Tensor, ...]]
    n_diff: int
    providers: Dict[str, Callable[[], Callable]]
    compile_source: Callable[[], Callable]
    classic_growth: int = 0
    has_kernel: bool = True  # False: one implementation, the backend choice does not concern it


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


def _diversity_fastobj(x):
    return Fn.diversity(x.flatten(2))


def _diversity_reference(x):
    return Fn.diversity_ref(x.flatten(2))


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


def _no_reference(op: str):
    def build():
        raise Unavailable(f"{op} has no separate reference (the objective is the PyTorch code)")
    return build


def _direction_op(name: str, per_sample: bool) -> Op:
    return Op(name,
              f"fastobj.functional.dot_cossim on (B, C, H·W), cossim_pow={DIRECTION_COSSIM_POW}, "
              + ("one vector per sample (B, C)" if per_sample else "one shared vector (C,)"),
              _acts_and_vec(per_sample), 1,
              {"fastobj": lambda: _direction_fastobj, "reference": lambda: _direction_reference,
               "classic": lambda: _direction_classic},
              lambda: _direction_reference)


OPS: Dict[str, Op] = {op.name: op for op in (
    Op("diversity", "Diversity on (B, C, H, W): closed form vs the O(B²) pairwise loop",
       _acts, 1,
       {"fastobj": lambda: _diversity_fastobj, "reference": lambda: _diversity_reference,
        "classic": lambda: baselines.diversity},
       lambda: _diversity_reference, classic_growth=2),
    Op("total_variation", "anisotropic L1 total variation of an image batch (B, 3, H, W)",
       _acts, 1,
       {"fastobj": lambda: Fn.total_variation, "reference": lambda: Fn.total_variation_ref,
        "classic": lambda: baselines.total_variation},
       lambda: Fn.total_variation_ref),
    _direction_op("direction", per_sample=False),
    _direction_op("direction_per_sample", per_sample=True),
    Op("alignment", f"Alignment objective (decay {ALIGNMENT_DECAY}) vs the classic double loop",
       _acts, 1,
       {"fastobj": _alignment_fastobj, "reference": lambda: _alignment_reference,
        "classic": lambda: _alignment_classic},
       lambda: _alignment_reference, classic_growth=1, has_kernel=False),
    Op("activation_interpolation",
       f"ActivationInterpolation objective (channels {INTERPOLATION_CHANNELS}) vs the classic loop",
       _two_acts, 2,
       {"fastobj": _interpolation_fastobj, "reference": _no_reference("activation_interpolation"),
        "classic": lambda: _interpolation_classic},
       _interpolation_fastobj, classic_growth=1, has_kernel=False),
)}


# ============================================================================================
# Presets: named sweeps.
# ============================================================================================

@dataclasses.dataclass(frozen=True)
class Sweep:
    op: str
    shapes: Tuple[Dims, ...]
    dtypes: Tuple[str, ...] = ("float32",)
    compile_batches: Tuple[int, ...] = ()  # batch sizes at which the compile provider runs
    modes: Tuple[str, ...] = MODES
    compile_modes: Tuple[str, ...] = MODES  # modes in which it runs there


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    help: str
    sweeps: Tuple[Sweep, ...]
    budget_s: float  # classic escalation budget per point
    measure_s: float  # time spent timing one point (after warm-up)
    ceilings: bool = True
    memory: bool = True
    time_limit_s: Optional[float] = None  # points left after this are skipped (--max-minutes)


def _batches(bs: Sequence[int], rest: Dims) -> Tuple[Dims, ...]:
    return tuple((b,) + tuple(rest) for b in bs)


PRESETS: Dict[str, Preset] = {p.name: p for p in (
    Preset("cpu", "default sweep on CPU (about a minute and a half on 2 cores)", (
        Sweep("diversity", _batches((8, 16, 32, 64, 128, 256, 512, 1024), (64, 14, 14)),
              compile_batches=(128,), compile_modes=("fwd+bwd",)),
        Sweep("total_variation", _batches((1, 16), (3, 224, 224)), compile_batches=(16,)),
        Sweep("direction", _batches((16,), (512, 14, 14)), compile_batches=(16,),
              modes=("fwd+bwd",)),
        Sweep("direction_per_sample", _batches((16,), (512, 14, 14)), modes=("fwd+bwd",)),
        Sweep("alignment", _batches((16, 64), (64, 14, 14))),
        Sweep("activation_interpolation", _batches((16, 64), (64, 14, 14))),
    ), budget_s=1.0, measure_s=0.2, time_limit_s=95.0),
    Preset("gpu", "sweep for one H100/H200-class GPU (benchmarks/gpu_check.sh)", (
        Sweep("diversity", _batches((8, 16, 32, 64, 128, 256, 512, 1024), (512, 28, 28)),
              ("float32", "bfloat16"), compile_batches=(1024,), compile_modes=("fwd+bwd",)),
        Sweep("total_variation", ((64, 3, 512, 512),), ("float32", "bfloat16"),
              compile_batches=(64,), compile_modes=("fwd+bwd",)),
        Sweep("direction", ((256, 1024, 14, 14),), ("float32", "bfloat16"),
              compile_batches=(256,), compile_modes=("fwd+bwd",)),
        Sweep("direction_per_sample", ((256, 1024, 14, 14),), ("float32", "bfloat16")),
        Sweep("alignment", ((256, 512, 14, 14),), ("float32", "bfloat16")),
        Sweep("activation_interpolation", ((256, 512, 14, 14),), ("float32", "bfloat16")),
    ), budget_s=2.0, measure_s=0.2, time_limit_s=330.0),
    Preset("quick", "tiny smoke sweep: every op and provider but compile, in seconds", (
        Sweep("diversity", _batches((4, 8), (8, 4, 4))),
        Sweep("total_variation", ((2, 3, 16, 16),)),
        Sweep("direction", ((2, 8, 4, 4),)),
        Sweep("direction_per_sample", ((2, 8, 4, 4),)),
        Sweep("alignment", ((6, 8, 4, 4),)),
        Sweep("activation_interpolation", ((4, 8, 4, 4),)),
    ), budget_s=0.2, measure_s=0.01, ceilings=False),
)}


@dataclasses.dataclass(frozen=True)
class Case:
    op: str
    dims: Dims
    dtype: str
    mode: str
    compile: bool


def plan(preset: Preset, ops: Optional[Sequence[str]] = None,
         batch_sizes: Optional[Sequence[int]] = None,
         dtypes: Optional[Sequence[str]] = None,
         modes: Optional[Sequence[str]] = None) -> List[Case]:
    """The cases of a preset, filtered and overridden, in run order (B increasing)."""
    cases: List[Case] = []
    for sweep in preset.sweeps:
        if ops is not None and sweep.op not in ops:
            continue
        shapes = list(sweep.shapes)
        compile_at = set(sweep.compile_batches)
        if batch_sizes:
            rests = list(dict.fromkeys(s[1:] for s in shapes))
            shapes = [(b,) + r for r in rests for b in batch_sizes]
            if compile_at:  # the preset's compile points that survive, else the nearest B
                kept = compile_at & set(batch_sizes)
                target = min(compile_at)
                compile_at = kept or {min(batch_sizes, key=lambda b: abs(b - target))}
        for dtype in (dtypes or sweep.dtypes):
            for mode in (modes or sweep.modes):
                for dims in sorted(shapes):
                    cases.append(Case(sweep.op, tuple(dims), dtype, mode,
                                      dims[0] in compile_at and mode in sweep.compile_modes))
    return cases


# ============================================================================================
# Timing and memory.
# ============================================================================================

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    """One provider on one case: ``step()`` runs one forward (and backward) without syncing."""

    def __init__(self, fn: Callable, args: Tuple[torch.Tensor, ...], n_diff: int, mode: str,
                 device: torch.device, seed: int = 0):
        self.fn, self.mode, self.device, self.seed = fn, mode, device, seed
        self.n_diff = n_diff
        if mode == "fwd+bwd":
            args = tuple(a.detach().requires_grad_(i < n_diff) for i, a in enumerate(args))
        self.args = args
        self.upstream: Optional[torch.Tensor] = None
        self.compile_s: Optional[float] = None  # warm-up time, set by prepare()
        self.backend: Optional[str] = None

    def step(self):
        out = self.fn(*self.args)
        if self.mode == "fwd":
            return out
        if self.upstream is None:  # a fixed random upstream gradient, made on the first call
            gen = torch.Generator(device=out.device).manual_seed(self.seed + 1)
            self.upstream = torch.randn(out.shape, device=out.device, generator=gen).to(out.dtype)
        return torch.autograd.grad(out, self.args[:self.n_diff], self.upstream)

    def sync(self) -> None:
        _sync(self.device)

    def timed_call(self) -> float:
        self.sync()
        start = time.perf_counter()
        self.step()
        self.sync()
        return time.perf_counter() - start


@dataclasses.dataclass
class Timing:
    median_s: float
    min_s: float
    repeats: int
    first_s: float


@dataclasses.dataclass
class Sampler:
    """The timing plan of one runner: warm-up done, samples taken in one or several goes."""
    runner: Runner
    first_s: float
    inner: int = 1
    repeats: int = 0
    samples: List[float] = dataclasses.field(default_factory=list)

    def take(self, count: Optional[int] = None) -> None:
        """Take ``count`` more samples (default: all that are left)."""
        left = self.repeats - len(self.samples)
        for _ in range(left if count is None else min(count, left)):
            self.runner.sync()
            start = time.perf_counter()
            for _ in range(self.inner):
                self.runner.step()
            self.runner.sync()
            self.samples.append((time.perf_counter() - start) / self.inner)

    def timing(self) -> Timing:
        return Timing(statistics.median(self.samples), min(self.samples), len(self.samples),
                      self.first_s)


def warm_up(runner: Runner, measure_s: float, min_repeats: int = 3, max_repeats: int = 1000,
            single_if_over: Optional[float] = None) -> Sampler:
    """Warm a runner up and plan its samples.

    The first call is the warm-up (compilation, allocator growth, Triton JIT) and is timed on
    its own (``first_s``). On CPU every later call is a sample of its own (calls under 20 us
    are grouped to about 50 us): the median of single calls shrugs off the stalls a shared
    machine inflicts on some of them. On CUDA calls are grouped so each synchronised sample
    lasts about 1 ms or more. Sampling is planned to last about ``measure_s``, with at least
    ``min_repeats`` samples. A call of over a second whose warm-up was no slower than 1.5
    times the next call (the classic loops at large B) is timed twice only, the warm-up
    counting as a sample: for a Python loop of seconds, warm-up effects are noise. With
    ``single_if_over`` (given for the classic provider, which compiles nothing), a warm-up
    slower than that is the only sample.
    """
    first = runner.timed_call()
    if single_if_over is not None and first > single_if_over:
        return Sampler(runner, first, repeats=1, samples=[first])
    est = runner.timed_call()
    if est > max(measure_s, 1.0) and first < 1.5 * est:
        return Sampler(runner, first, repeats=2, samples=[first, est])
    samples = [est] if est > measure_s / 2 else []
    if runner.device.type == "cuda":
        target = max(1e-3, measure_s / 50)
    else:
        target = 50e-6 if est < 20e-6 else 0.0
    inner = 1 if est >= target else max(1, int(target / max(est, 1e-7)))
    repeats = max(min_repeats, min(max_repeats, int(measure_s / max(est * inner, 1e-9))))
    if est > max(measure_s, 1.0):
        repeats = 2
    return Sampler(runner, first, inner, repeats, samples)


def time_runner(runner: Runner, measure_s: float, **kwargs) -> Timing:
    """Median per-call time of ``runner.step`` (see :func:`warm_up` for the plan)."""
    sampler = warm_up(runner, measure_s, **kwargs)
    sampler.take()
    return sampler.timing()


@contextlib.contextmanager
def _quiet_stderr_fd() -> Iterator[None]:
    """Silence the C++ profiler's start/stop lines written straight to file descriptor 2."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_peak_bytes(runner: Runner) -> int:
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr_fd():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            result = runner.step()
            del result
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for e in events:
        if e.device_type() == torch.autograd.DeviceType.CPU:
            current += e.nbytes()
            peak = max(peak, current)
    return peak


def measure_peak_memory(runner: Runner, median_s: float) -> Tuple[Optional[int], str]:
    """(peak bytes allocated during one call beyond what existed before, how it was measured)."""
    if runner.device.type == "cuda":
        runner.sync()
        torch.cuda.reset_peak_memory_stats(runner.device)
        before = torch.cuda.memory_allocated(runner.device)
        result = runner.step()
        runner.sync()
        peak = torch.cuda.max_memory_allocated(runner.device) - before
        del result
        return peak, "cuda_max_memory_allocated"
    if runner.device.type == "cpu":
        if median_s > CPU_MEMORY_TRACE_LIMIT_S:
            return None, "not traced (slow call)"
        return _cpu_peak_bytes(runner), "cpu_profiler_trace"
    return None, "unsupported device"


# ============================================================================================
# Device ceilings.
# ============================================================================================

@dataclasses.dataclass
class Ceilings:
    copy_gbs: Optional[float] = None
    matmul_tflops: Dict[str, float] = dataclasses.field(default_factory=dict)
    rows: List[dict] = dataclasses.field(default_factory=list)


def _time_simple(fn: Callable, device: torch.device, repeats: int) -> float:
    fn()
    _sync(device)
    samples = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def measure_ceilings(device: torch.device, dtypes: Sequence[str]) -> Ceilings:
    """Copy bandwidth (a large tensor copy, read + write) and matmul rate per dtype.

    The matmul runs at each dtype under the current ``torch.get_float32_matmul_precision()``,
    as the float32 kernels do.
    """
    cuda = device.type == "cuda"
    out = Ceilings()
    numel = (256 if cuda else 32) * 2 ** 20  # 1 GiB on CUDA, 128 MiB on CPU (float32)
    src = torch.empty(numel, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    t = _time_simple(lambda: dst.copy_(src), device, 10 if cuda else 5)
    out.copy_gbs = 2 * src.numel() * src.element_size() / t / 1e9
    out.rows.append(_ceiling_row("ceiling_copy", (numel,), "float32", t, gbs=out.copy_gbs,
                                 note="dst.copy_(src); bytes = read + write"))
    del src, dst
    n = 8192 if cuda else 1024
    for name in dict.fromkeys(dtypes):
        dtype = DTYPES[name]
        if not cuda and dtype in (torch.float16,):
            continue  # no useful CPU half matmul
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        t = _time_simple(lambda: torch.matmul(a, b), device, 10 if cuda else 3)
        tflops = 2 * n ** 3 / t / 1e12
        out.matmul_tflops[name] = tflops
        out.rows.append(_ceiling_row(
            "ceiling_matmul", (n, n, n), name, t, tflops=tflops,
            note=f"torch.matmul; float32_matmul_precision={torch.get_float32_matmul_precision()}"))
        del a, b
    return out


def _ceiling_row(op, shape, dtype, t, gbs=None, tflops=None, note=""):
    return {"op": op, "provider": "torch", "mode": "fwd", "shape": _shape_str(shape),
            "dtype": dtype, "median_s": t, "gbs": gbs, "tflops": tflops, "note": note}


# ============================================================================================
# The sweep.
# ============================================================================================

def _shape_str(dims: Sequence[int]) -> str:
    return "x".join(str(d) for d in dims)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "CPU"
    threads = torch.get_num_threads()
    return f"{model} ({threads} thread{'s' if threads != 1 else ''})"


def best_device() -> torch.device:
    """The current CUDA device (with its index) when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _backend_label(op: str, provider: str, args: Tuple[torch.Tensor, ...]) -> str:
    if provider == "fastobj" and OPS[op].has_kernel:
        label = backend_for(*[a for a in args if isinstance(a, torch.Tensor)])
        if label == "triton" and args[0].device.type == "cpu" and interpreter_enabled():
            label = "triton-interpreter"
        return label
    if provider == "compile":
        return "inductor"
    return "torch"


def make_args(case_op: str, dims: Dims, dtype: str, device: torch.device, seed: int
              ) -> Tuple[torch.Tensor, ...]:
    gen = torch.Generator(device=device).manual_seed(seed)
    return OPS[case_op].make(dims, DTYPES[dtype], device, gen)


def build_provider(op: str, provider: str) -> Callable:
    """The callable of ``provider`` for ``op``; raises :class:`Unavailable`."""
    spec = OPS[op]
    if provider == "compile":
        import torch._dynamo  # noqa: F401  (reset between compile points: fresh, static shapes)
        torch._dynamo.reset()
        return torch.compile(spec.compile_source(), dynamic=False)
    if provider not in spec.providers:
        raise Unavailable(f"{op} has no {provider} provider")
    return spec.providers[provider]()


def prepare(op: str, provider: str, dims: Dims, dtype: str = "float32", mode: str = "fwd",
            device: Optional[torch.device] = None, seed: int = 0) -> Runner:
    """A warmed-up :class:`Runner` for one provider on one case (the pytest-benchmark suite's
    entry point). For ``compile`` the warm-up compiles; its time is ``runner.compile_s``."""
    device = device or best_device()
    args = make_args(op, dims, dtype, device, seed)
    runner = Runner(build_provider(op, provider), args, OPS[op].n_diff, mode, device, seed)
    runner.compile_s = runner.timed_call()
    runner.backend = _backend_label(op, provider, runner.args)
    return runner


@dataclasses.dataclass
class Settings:
    preset: Preset
    device: torch.device
    providers: Tuple[str, ...]
    budget_s: float
    measure_s: float
    memory: bool
    seed: int = 0
    deadline: Optional[float] = None  # time.monotonic() after which cases are skipped


class Sweeper:
    """Runs the cases; collects result rows and notes."""

    def __init__(self, settings: Settings, version: str, date: str, dev_name: str):
        self.s = settings
        self.rows: List[dict] = []
        self.notes: List[str] = []
        self.failures: List[str] = []
        self.base = {"device": settings.device.type, "device_name": dev_name,
                     "fastobj_version": version, "torch_version": torch.__version__,
                     "date": date, "preset": settings.preset.name}
        self.ceilings = Ceilings()
        self._classic: Dict[tuple, Tuple[int, float]] = {}  # key -> (B, fastest call) of last point
        self._classic_stop: Dict[tuple, Tuple[int, float]] = {}
        self._compile_broken: Dict[str, str] = {}

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # -- the classic escalation bound --------------------------------------------------------
    def _classic_key(self, case: Case) -> tuple:
        return (case.op, case.mode, case.dtype, case.dims[1:])

    def _classic_blocked(self, case: Case) -> Optional[str]:
        growth = OPS[case.op].classic_growth
        if growth == 0:
            return None
        key = self._classic_key(case)
        batch = case.dims[0]
        if key in self._classic_stop:
            b0, t0 = self._classic_stop[key]
            return (f"classic {case.op} {case.mode} {case.dtype} stopped escalating after "
                    f"B={b0}: its fastest call took {t0:.2f} s (budget {self.s.budget_s:g} s)")
        if key in self._classic:
            b0, t0 = self._classic[key]
        elif batch > CLASSIC_PROBE_BATCH:
            b0 = CLASSIC_PROBE_BATCH
            probe = make_args(case.op, (b0,) + case.dims[1:], case.dtype, self.s.device,
                              self.s.seed)
            runner = Runner(build_provider(case.op, "classic"), probe, OPS[case.op].n_diff,
                            case.mode, self.s.device, self.s.seed)
            t0 = runner.timed_call()
        else:
            return None
        predicted = t0 * (batch / b0) ** growth
        if predicted > CLASSIC_SKIP_FACTOR * self.s.budget_s:
            return (f"classic {case.op} {case.mode} {case.dtype} B={batch} skipped: predicted "
                    f"{predicted:.1f} s per call from B={b0} (budget {self.s.budget_s:g} s)")
        return None

    def _classic_done(self, case: Case, seconds: float) -> None:
        if OPS[case.op].classic_growth == 0:
            return
        key = self._classic_key(case)
        self._classic[key] = (case.dims[0], seconds)
        if seconds > self.s.budget_s:
            self._classic_stop[key] = (case.dims[0], seconds)

    # -- one case ----------------------------------------------------------------------------
    def providers_for(self, case: Case) -> List[str]:
        order = ["classic"] + [p for p in PROVIDERS if p != "classic"]
        chosen = [p for p in order if p in self.s.providers]
        if not case.compile:
            chosen = [p for p in chosen if p != "compile"]
        return chosen

    def run_case(self, case: Case, progress=None) -> None:
        """Measure every provider on one case.

        The providers are warmed up one after the other, then sampled in
        :data:`SAMPLING_ROUNDS` interleaved rounds, so a burst of other work on the machine
        (or a change in the allocator's state) weighs on all of them alike.
        """
        shape = _shape_str(case.dims)
        label = f"{case.op} {case.mode} {shape} {case.dtype}"
        args = make_args(case.op, case.dims, case.dtype, self.s.device, self.s.seed)
        samplers: Dict[str, Sampler] = {}
        for provider in self.providers_for(case):
            if progress is not None:
                progress.set_postfix_str(f"{label} {provider}", refresh=False)
            if self.s.deadline is not None and time.monotonic() > self.s.deadline:
                self.note("time limit (--max-minutes) reached: the remaining points were skipped")
                continue
            with self._guard(case, provider, label):
                sampler = self._warm(case, provider, args)
                if sampler is not None:
                    samplers[provider] = sampler
        for r in range(SAMPLING_ROUNDS):
            for provider, sampler in list(samplers.items()):
                left = sampler.repeats - len(sampler.samples)
                ok = False
                with self._guard(case, provider, label):
                    sampler.take(-(-left // (SAMPLING_ROUNDS - r)))
                    ok = True
                if not ok:
                    del samplers[provider]
        cost = cost_model(case.op, case.dims, DTYPES[case.dtype], case.mode)
        classic: Optional[float] = None
        for provider in self.providers_for(case):
            if provider in samplers:
                row = None
                with self._guard(case, provider, label):
                    row = self._row(case, provider, samplers[provider], cost)
                if row is not None:
                    if provider == "classic":
                        classic = row["median_s"]
                    if classic is not None:
                        row["ratio_to_classic"] = row["median_s"] / classic
                        row["speedup_vs_classic"] = classic / row["median_s"]
                    self.rows.append(row)
            self._tick(progress)
        del args, samplers

    @contextlib.contextmanager
    def _guard(self, case: Case, provider: str, label: str) -> Iterator[None]:
        """Turn a provider's failure into a note (compile, unavailable) or a failure line."""
        try:
            yield
        except Unavailable as exc:
            self.note(f"{provider} skipped for {case.op}: {exc}")
        except Exception as exc:  # one failing provider must not end the sweep
            lines = str(exc).strip().splitlines()
            msg = f"{type(exc).__name__}: {lines[0] if lines else ''}"
            if provider == "compile":
                self._compile_broken[case.op] = msg
                self.note(f"compile skipped for {case.op} ({case.mode}, {case.dtype}): "
                          f"torch.compile failed on this machine: {msg}")
            else:
                self.failures.append(f"{provider} failed on {label}: {msg}")
            if self.s.device.type == "cuda":  # e.g. out of memory: leave room for the rest
                torch.cuda.empty_cache()

    @staticmethod
    def _tick(progress) -> None:
        if progress is not None:
            progress.update(1)

    def _warm(self, case: Case, provider: str, args) -> Optional[Sampler]:
        if provider == "compile" and case.op in self._compile_broken:
            raise Unavailable(f"torch.compile failed earlier: {self._compile_broken[case.op]}")
        if provider == "classic":
            blocked = self._classic_blocked(case)
            if blocked:
                self.note(blocked)
                return None
        runner = Runner(build_provider(case.op, provider), args, OPS[case.op].n_diff, case.mode,
                        self.s.device, self.s.seed)
        return warm_up(runner, self.s.measure_s,
                       single_if_over=self.s.budget_s if provider == "classic" else None)

    def _row(self, case: Case, provider: str, sampler: Sampler, cost: Cost) -> dict:
        timing, runner = sampler.timing(), sampler.runner
        if provider == "classic":  # the fastest call decides: robust to a busy machine
            self._classic_done(case, timing.min_s)
        peak, method = (None, "off")
        if self.s.memory:
            peak, method = measure_peak_memory(runner, timing.median_s)
        row = dict(self.base)
        row.update({
            "op": case.op, "provider": provider, "mode": case.mode,
            "shape": _shape_str(case.dims), "dtype": case.dtype,
            "median_s": timing.median_s, "min_s": timing.min_s, "repeats": timing.repeats,
            "peak_mem_bytes": peak, "mem_method": method,
            "backend": _backend_label(case.op, provider, runner.args),
            "compile_s": timing.first_s if provider == "compile" else None,
            "flops": cost.flops, "bytes": cost.bytes,
            "tflops": cost.flops / timing.median_s / 1e12,
            "gbs": cost.bytes / timing.median_s / 1e9, "bound": cost.bound,
        })
        if cost.bound == "compute" and case.dtype in self.ceilings.matmul_tflops:
            row["pct_of_ceiling"] = 100 * row["tflops"] / self.ceilings.matmul_tflops[case.dtype]
        elif cost.bound == "memory" and self.ceilings.copy_gbs:
            row["pct_of_ceiling"] = 100 * row["gbs"] / self.ceilings.copy_gbs
        return row


# ============================================================================================
# Output: CSV, table, plot.
# ============================================================================================

def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_csv(path: str, rows: Sequence[dict]) -> str:
    """Append rows to ``path`` (header written when the file is new); a file with another
    header is left alone and the rows go to a timestamped file beside it. Returns the path."""
    if os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if tuple(header) != CSV_COLUMNS:
            stem, ext = os.path.splitext(path)
            path = f"{stem}-{datetime.datetime.now():%Y%m%d-%H%M%S}{ext}"
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([_csv_value(row.get(c)) for c in CSV_COLUMNS])
    return path


def _fmt_time(s: Optional[float]) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def _fmt_bytes(n: Optional[int]) -> str:
    if n is None or n == "":
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"


def format_table(rows: Sequence[dict]) -> str:
    header = ("op", "mode", "shape", "dtype", "provider", "backend", "median", "peak mem",
              "vs classic", "throughput", "% ceiling", "compile")
    lines = [header]
    for r in rows:
        throughput = (f"{r['tflops']:.3g} TFLOP/s" if r.get("bound") == "compute"
                      else f"{r['gbs']:.3g} GB/s")
        speed = r.get("speedup_vs_classic")
        lines.append((
            r["op"], r["mode"], r["shape"], r["dtype"], r["provider"], r["backend"],
            _fmt_time(r["median_s"]), _fmt_bytes(r.get("peak_mem_bytes")),
            "-" if speed is None else f"{speed:.3g}x",
            throughput,
            "-" if r.get("pct_of_ceiling") is None else f"{r['pct_of_ceiling']:.1f}%",
            "-" if r.get("compile_s") is None else f"{r['compile_s']:.1f} s",
        ))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for k, line in enumerate(lines):
        out.append("  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def plot_diversity(rows: Sequence[dict], path: str, title: str) -> Optional[str]:
    """Time vs batch size of Diversity, log-log, one panel per mode. Returns the path or None."""
    rows = [r for r in rows if r["op"] == "diversity"]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    fig, axes = plt.subplots(1, len(modes), figsize=(6.2 * len(modes), 4.6), squeeze=False)
    markers = {"fastobj": "o", "reference": "s", "classic": "^", "compile": "D"}
    styles = ["-", "--", ":", "-."]
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    rests = list(dict.fromkeys(r["shape"].split("x", 1)[1] for r in rows))
    for ax, mode in zip(axes[0], modes):
        for provider in PROVIDERS:
            for k, dtype in enumerate(dtypes):
                for rest in rests:
                    pts = sorted((int(r["shape"].split("x")[0]), r["median_s"]) for r in rows
                                 if r["mode"] == mode and r["provider"] == provider
                                 and r["dtype"] == dtype and r["shape"].split("x", 1)[1] == rest)
                    if not pts:
                        continue
                    label = (provider + (f" {dtype}" if len(dtypes) > 1 else "")
                             + (f" CxHxW={rest}" if len(rests) > 1 else ""))
                    ax.plot([p[0] for p in pts], [p[1] for p in pts],
                            linestyle=styles[k % len(styles)],
                            marker=markers.get(provider, "x"), label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size B")
        ax.set_ylabel("median time per call (s)")
        ax.set_title(f"Diversity {mode}" + (f", CxHxW = {rests[0]}" if len(rests) == 1 else ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ============================================================================================
# Command line.
# ============================================================================================

def _comma_list(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _positive_ints(text: str) -> List[int]:
    try:
        values = [int(t) for t in _comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of integers, got {text!r}")
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``fastobj bench``'s options to ``parser`` and set ``run`` as its action."""
    parser.description = (
        "Time fastobj's hot computations against the PyTorch reference, the classic "
        "Lucid/Lucent/Captum algorithms and torch.compile; print a table and write a CSV row "
        "per measurement and a plot of Diversity time vs batch size.")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="named sweep (default: 'gpu' on a CUDA device, 'cpu' otherwise); "
                             + "; ".join(f"{p.name}: {p.help}" for p in PRESETS.values()))
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke sweep (the 'quick' preset): seconds, no torch.compile")
    parser.add_argument("--ops", type=_comma_list, default=None,
                        help="comma list of ops to run (default: all of the preset): "
                             + ", ".join(OPS))
    parser.add_argument("--providers", type=_comma_list, default=None,
                        help="comma list of providers (default: all): " + ", ".join(PROVIDERS))
    parser.add_argument("--device", default=None,
                        help="cpu or cuda (default: cuda when available, else cpu)")
    parser.add_argument("--modes", type=_comma_list, default=None,
                        help="comma list of modes overriding the preset's: fwd, fwd+bwd")
    parser.add_argument("--dtype", type=_comma_list, default=None,
                        help="comma list of dtypes overriding the preset's: "
                             "float32, bfloat16, float16, float64")
    parser.add_argument("--batch-sizes", type=_positive_ints, default=None,
                        help="comma list of batch sizes replacing every op's batch sweep")
    parser.add_argument("--out", default="bench-out",
                        help="output folder for bench.csv (appended), diversity.png and "
                             "table.txt (default: ./bench-out)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds per call beyond which the classic loops stop escalating "
                             "the batch size (default: the preset's)")
    parser.add_argument("--measure-time", type=float, default=None,
                        help="seconds spent timing each point after warm-up (default: preset's)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="skip the remaining points once this much time has passed "
                             "(default: the preset's limit: cpu 95 s, gpu 5.5 min, quick none)")
    parser.add_argument("--cold-compile", action="store_true",
                        help="disable Inductor's caches so compile_s is a cold compile")
    parser.add_argument("--no-memory", action="store_true", help="do not measure peak memory")
    parser.add_argument("--no-ceilings", action="store_true",
                        help="do not measure the device's copy bandwidth and matmul rate")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (torch.set_num_threads; default: torch's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.set_defaults(run=run)
    return parser


def _check_names(kind: str, given: Optional[Sequence[str]], valid: Sequence[str]) -> None:
    """Refuse an empty list or names outside ``valid`` (a :class:`BenchError` listing both)."""
    if given is None:
        return
    unknown = [name for name in given if name not in valid]
    if unknown or not given:
        raise BenchError(f"unknown {kind}(s) {', '.join(map(repr, unknown)) or '(none given)'};"
                         f" valid {kind}s: {', '.join(valid)}")


def _parse_device(text: str) -> torch.device:
    name = text.strip().lower()
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise BenchError(f"unknown device {text!r}; valid: cpu, cuda, cuda:N")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise BenchError(f"device {text!r} is not available: torch {torch.__version__} sees no "
                         "CUDA GPU on this machine (use --device cpu)")
    try:
        device = torch.device(name)
    except RuntimeError:  # "cuda:x", "cuda:-1"
        raise BenchError(f"unknown device {text!r}; valid: cpu, cuda, cuda:N") from None
    if device.index is None:  # torch.cuda.set_device needs an index
        return torch.device("cuda", torch.cuda.current_device())
    if device.index >= torch.cuda.device_count():
        raise BenchError(f"device {text!r} is not available: "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    return device


def _resolve(args: argparse.Namespace):
    preset_name = args.preset
    if args.quick:
        if preset_name not in (None, "quick"):
            raise BenchError(f"--quick conflicts with --preset {preset_name}")
        preset_name = "quick"
    device = best_device() if args.device is None else _parse_device(args.device)
    preset = PRESETS[preset_name or ("gpu" if device.type == "cuda" else "cpu")]
    _check_names("op", args.ops, list(OPS))
    _check_names("provider", args.providers, PROVIDERS)
    _check_names("dtype", args.dtype, list(DTYPES))
    _check_names("mode", args.modes, MODES)
    providers = tuple(args.providers) if args.providers is not None else PROVIDERS
    if preset.name == "quick" and args.providers is None:
        providers = tuple(p for p in providers if p != "compile")
    for name in ("budget", "measure_time", "max_minutes", "threads"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise BenchError(f"--{name.replace('_', '-')} must be positive, got {value}")
    return preset, device, providers


def run(args: argparse.Namespace) -> int:
    """Run ``fastobj bench``. Returns 0, 1 when a provider failed, 2 on a usage error."""
    try:
        preset, device, providers = _resolve(args)
    except BenchError as exc:
        print(f"fastobj bench: error: {exc}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.cold_compile:
        import torch._inductor.config as inductor_config
        inductor_config.force_disable_caches = True
    started = time.monotonic()
    limit = 60 * args.max_minutes if args.max_minutes is not None else preset.time_limit_s
    cases = plan(preset, args.ops, args.batch_sizes, args.dtype, args.modes)
    settings = Settings(
        preset=preset, device=device, providers=providers,
        budget_s=args.budget or preset.budget_s,
        measure_s=args.measure_time or preset.measure_s,
        memory=preset.memory and not args.no_memory, seed=args.seed,
        deadline=None if limit is None else started + limit)
    dev_name = device_name(device)
    version = getattr(fastobj, "__version__", "unknown")
    date = datetime.date.today().isoformat()
    sweeper = Sweeper(settings, version, date, dev_name)
    os.makedirs(args.out, exist_ok=True)

    print(f"fastobj {version} bench: preset {preset.name}, device {device} ({dev_name}), "
          f"torch {torch.__version__}, float32 matmul precision "
          f"{torch.get_float32_matmul_precision()}, {date}")
    if device.type == "cpu" and hasattr(os, "getloadavg"):
        load = os.getloadavg()
        print("load average at start: " + ", ".join(f"{v:.2f}" for v in load)
              + f" on {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads")
        if load[0] > 0.75 * (os.cpu_count() or 1) and torch.get_num_threads() > 1:
            print("warning: the machine is busy; multi-threaded torch ops then stall waiting "
                  "for descheduled threads, which inflates every time (the classic loops' "
                  "backward most). --threads 1 gives steadier figures on a shared machine.")
    if device.type == "cpu" and interpreter_enabled():
        print("warning: TRITON_INTERPRET is set, so the fastobj provider runs Triton's "
              "interpreter on CPU: its times measure the interpreter, not the library.")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if preset.ceilings and not args.no_ceilings:
        dtypes = sorted({c.dtype for c in cases}) or ["float32"]
        sweeper.ceilings = measure_ceilings(device, dtypes)
        ceil = sweeper.ceilings
        print(f"ceilings: copy {ceil.copy_gbs:.1f} GB/s; matmul "
              + ", ".join(f"{k} {v:.2f} TFLOP/s" for k, v in ceil.matmul_tflops.items()))
        for row in ceil.rows:
            row.update({k: v for k, v in sweeper.base.items() if k not in row})
        sweeper.rows.extend(ceil.rows)

    total = sum(len(sweeper.providers_for(c)) for c in cases)
    progress = None
    if not args.no_progress:
        from tqdm import tqdm
        progress = tqdm(total=total, desc="fastobj bench", unit="pt", file=sys.stderr,
                        dynamic_ncols=True, mininterval=0.5)
    csv_path = os.path.join(args.out, CSV_NAME)
    try:
        for case in cases:
            before = len(sweeper.rows)
            sweeper.run_case(case, progress)
            csv_path = write_csv(csv_path, sweeper.rows[before:])  # incremental: survives a kill
    finally:
        if progress is not None:
            progress.close()
    if sweeper.ceilings.rows:
        write_csv(csv_path, sweeper.ceilings.rows)

    measured = [r for r in sweeper.rows if not r["op"].startswith("ceiling")]
    try:
        plot = plot_diversity(measured, os.path.join(args.out, PLOT_NAME),
                              f"fastobj {version}, {dev_name}, torch {torch.__version__}, {date}")
    except ImportError as exc:  # matplotlib is optional (the "bench" extra)
        plot = None
        sweeper.note(f"no plot: matplotlib does not import ({exc}); pip install matplotlib")
    table = format_table(measured)
    print(table)
    for text in sweeper.notes:
        print(f"note: {text}")
    for text in sweeper.failures:
        print(f"FAILED: {text}")
    wall = time.monotonic() - started
    with open(os.path.join(args.out, TABLE_NAME), "w") as f:
        f.write(f"preset {preset.name}, {dev_name}, {date}, wall {wall:.1f} s\n{table}\n")
        f.writelines(f"note: {t}\n" for t in sweeper.notes)
        f.writelines(f"FAILED: {t}\n" for t in sweeper.failures)
    print(f"wrote {csv_path}" + (f", {plot}" if plot else "")
          + f", {os.path.join(args.out, TABLE_NAME)}; wall time {wall:.1f} s")
    return 1 if sweeper.failures else 0


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="fastobj bench"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m fastobj.benchmarks.harness [options]``: the same as ``fastobj bench``."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
