"""The Triton kernel variants the launchers pick on a GPU, found by running the launchers.

Each case below calls a public launcher of ``fastobj.kernels`` on CPU tensors (allocated, never
read by a kernel) with grids sized for a number of SMs (132, an H100's or H200's, unless told
otherwise: the GPU check passes the device's own count). Every Triton kernel is
swapped for a recorder, so a case launches nothing and records (kernel, grid, arguments,
options). Triton's own binder then turns each record into the specialisation a CUDA launch
would compile (aligned pointers, integers divisible by 16, integers equal to 1 made constant)
and the compiler input (``ASTSource`` and options) exactly as ``JITFunction.run`` builds it, so
an ahead-of-time compile of a variant is the compile the GPU would do, with the same cache key.

The cases are the library's layouts and settings (:func:`cases`) and, first, the points of a
``fastobj bench`` preset that run a kernel (:func:`bench_cases`, headline points first), so the
GPU check compiles ahead what its benchmark phases will launch.

Used by tests/test_kernels_compile.py (compile every variant for sm_90a and sm_80 and read
ptxas' register/spill report), tests/test_kernel_variants_gpu.py (every case on the GPU against
the float64 references) and benchmarks/gpu_check.sh (--plan: count the variants; on the GPU
machine: compile them in parallel before the timed phases; the profile phase: registers,
spills and SASS of the Diversity product kernels).

Run as a module, it prints JSON: ``python -m fastobj.benchmarks.kernel_variants report 90 80``
(needs Triton's bundled ptxas; TRITON_INTERPRET must be unset), ``... count`` (variant count
per group, no compilation) or ``... warm 90`` (compile for one capability, one JSON line per
variant as it finishes, exit status 1 if any failed). Options: ``--sms N`` (grids for N SMs),
``--preset NAME`` (the bench preset whose points come first; default gpu; none: only the
library's cases, as the AOT tier compiles them), ``--limit N``
(compile only the first N variants: the CPU rehearsal). ``... occupancy 90`` compiles the W·F
kernel of the headline Diversity point under each tile configuration of WF_CONFIGS and prints
its registers, spills, shared memory and resident programs per SM, one JSON line each: the
static half of choosing its tiles (the other half, their time, needs the GPU).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import traceback
from typing import Callable, List, Optional, Tuple

H200_SMS = 132  # an H100's and an H200's SM count
MODULES = ("_common", "total_variation", "dot_cossim", "diversity")


# --------------------------------------------------------------------------------------------
# Recording launches.
# --------------------------------------------------------------------------------------------

class _Recorder:
    """Stands in for a JITFunction: ``kernel[grid](*args, **kwargs)`` is recorded, not run."""

    def __init__(self, kernel, records):
        self.kernel, self.records = kernel, records

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.records.append((self.kernel, tuple(grid), args, kwargs))
        return launch


@contextlib.contextmanager
def recording(sm_count: int = H200_SMS):
    """Within the block, every ``*_kernel`` of fastobj.kernels records its launches into the
    list this yields, and grids are sized for `sm_count` SMs."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction
    records: list = []
    saved = []
    for name in MODULES:
        module = importlib.import_module(f"fastobj.kernels.{name}")
        for attr, value in vars(module).items():  # compiled, or in the interpreter
            if attr.endswith("_kernel") and isinstance(value, (JITFunction, InterpretedFunction)):
                saved.append((module, attr, value))
    previous = os.environ.get("FASTOBJ_SM_COUNT")
    os.environ["FASTOBJ_SM_COUNT"] = str(sm_count)
    try:
        for module, attr, value in saved:
            setattr(module, attr, _Recorder(value, records))
        yield records
    finally:
        for module, attr, value in saved:
            setattr(module, attr, value)
        if previous is None:
            os.environ.pop("FASTOBJ_SM_COUNT")
        else:
            os.environ["FASTOBJ_SM_COUNT"] = previous


# --------------------------------------------------------------------------------------------
# The cases: launcher calls at the shapes, dtypes, layouts and settings the library meets.
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Case:
    """One call of a kernel module's launchers.

    inputs(new) builds the tensors from new(shape, dtype), which allocates (a meta tensor when
    recording, random values on the device when checking); settings are the float32 matmul
    precision, a lowered INT32_LIMIT (to reach the int64-offset variants) and the op's scalar
    arguments.
    """
    group: str
    label: str
    inputs: Callable
    precision: str = "highest"
    int32_limit: Optional[int] = None
    scalars: Tuple = ()

    @contextlib.contextmanager
    def settings(self):
        import torch

        from fastobj.kernels import _common
        previous = (torch.get_float32_matmul_precision(), _common.INT32_LIMIT)
        torch.set_float32_matmul_precision(self.precision)
        _common.INT32_LIMIT = self.int32_limit or previous[1]
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(previous[0])
            _common.INT32_LIMIT = previous[1]

    def launch(self, new):
        """Call the launchers as the library's ops do, on inputs from new."""
        import torch
        module = importlib.import_module(f"fastobj.kernels.{self.group}")
        with self.settings():
            args = self.inputs(new)
            if self.group == "total_variation":
                (x,) = args
                module.total_variation_forward(x, x.dtype)
                module.total_variation_backward(x, torch.ones((), dtype=x.dtype))
            elif self.group == "dot_cossim":
                acts, vec = args
                cossim_pow, angled, vec_grad = self.scalars
                module.dot_cossim_forward(acts, vec, cossim_pow, 1e-8, angled)
                grad = torch.ones(acts.shape[0], acts.shape[2], dtype=acts.dtype)
                module.dot_cossim_backward(acts, vec, grad, cossim_pow, 1e-8, angled, vec_grad)
            else:
                (feats,) = args
                sums, _, norms, grams = module.diversity_sums_forward(feats, 1e-12)
                c = feats.shape[1]
                module.diversity_sums_backward(feats, norms, grams, torch.ones(c, c),
                                               torch.ones(()), 1e-12)
                # the eager objective's backward: A formed from S, u in feats' dtype
                module.diversity_value_backward(feats, norms, grams, sums,
                                                torch.ones((), dtype=feats.dtype), 1e-12)


def cases() -> List[Case]:
    """Every case: the benchmark shapes (TV 64x3x512x512, Direction 256xCx14x14, Diversity
    256x512x28x28) in float32 and bfloat16 (float16 once), each layout and direction kind the
    launchers treat apart, both float32 matmul precisions, int64 offsets, and all sizes 1."""
    import torch
    f32, bf16, f16 = torch.float32, torch.bfloat16, torch.float16
    names = {f32: "float32", bf16: "bfloat16", f16: "float16"}

    def channels_last(shape, dtype, flatten=False):
        def make(new):
            t = new(shape, dtype).to(memory_format=torch.channels_last)
            return t.flatten(2) if flatten else t
        return make

    out = [Case("total_variation", "float16 64x3x512x512",
                lambda new: (new((64, 3, 512, 512), f16),))]
    for dt in (f32, bf16):
        out += [
            Case("total_variation", f"{names[dt]} 64x3x512x512",
                 lambda new, dt=dt: (new((64, 3, 512, 512), dt),)),
            Case("total_variation", f"{names[dt]} 64x3x512x512 channels-last",
                 lambda new, dt=dt: (channels_last((64, 3, 512, 512), dt)(new),)),
            Case("total_variation", f"{names[dt]} 64x3x512x512 [..., ::2]",
                 lambda new, dt=dt: (new((64, 3, 512, 1024), dt)[..., ::2],)),
        ]
    out += [
        Case("total_variation", "float32 16x3x224x224 int64 offsets",
             lambda new: (new((16, 3, 224, 224), f32),), int32_limit=1),
        Case("total_variation", "float32 16x3x224x224 channels-last int64 offsets",
             lambda new: (channels_last((16, 3, 224, 224), f32)(new),), int32_limit=1),
        Case("total_variation", "float32 1x1: every integer 1", lambda new: (new((1, 1), f32),)),
    ]

    def direction(acts_shape, vec_shape, dt, layout=None):
        return lambda new: ((channels_last(acts_shape, dt, True)(new) if layout
                             else new(acts_shape, dt).flatten(2)), new(vec_shape, dt))

    out.append(Case("dot_cossim", "float16 256x512x14x14 shared direction",
                    direction((256, 512, 14, 14), (1, 512, 1), f16), scalars=(2.0, False, True)))
    for dt in (f32, bf16):
        for c in (512, 1024, 2048):  # the backward keeps C resident up to 1024, loops beyond
            out += [
                Case("dot_cossim", f"{names[dt]} 256x{c}x14x14 shared direction",
                     direction((256, c, 14, 14), (1, c, 1), dt), scalars=(2.0, False, True)),
                Case("dot_cossim", f"{names[dt]} 256x{c}x14x14 per-sample tensor direction, "
                     "angled", direction((256, c, 14, 14), (256, c, 196), dt),
                     scalars=(4.0, True, True)),
            ]
        out += [
            Case("dot_cossim", f"{names[dt]} 256x512x14x14 per-sample direction, pow 0",
                 direction((256, 512, 14, 14), (256, 512, 1), dt), scalars=(0.0, False, True)),
            Case("dot_cossim", f"{names[dt]} 256x512x14x14 shared tensor direction",
                 direction((256, 512, 14, 14), (1, 512, 196), dt), scalars=(2.0, False, True)),
            Case("dot_cossim", f"{names[dt]} 256x512x14x14 channels-last",
                 direction((256, 512, 14, 14), (1, 512, 1), dt, "channels_last"),
                 scalars=(2.0, False, True)),
            Case("dot_cossim", f"{names[dt]} 256x512x14x14 direction without grad",
                 direction((256, 512, 14, 14), (1, 512, 1), dt), scalars=(2.0, False, False)),
        ]
    out += [
        Case("dot_cossim", "float32 16x512x14x14 int64 offsets",
             direction((16, 512, 14, 14), (16, 512, 196), f32), int32_limit=1,
             scalars=(4.0, True, True)),
        Case("dot_cossim", "float32 1x1x1: every integer 1",
             lambda new: (new((1, 1, 1), f32), new((1, 1, 1), f32)), scalars=(2.0, True, True)),
    ]

    def feats(shape, dt, layout=None):
        return lambda new: ((channels_last(shape, dt, True)(new) if layout
                             else new(shape, dt).flatten(2)),)

    out += [Case("diversity", f"{label} 256x512x28x28", feats((256, 512, 28, 28), dt),
                 precision=precision)
            for label, dt, precision in (("float32 (highest: IEEE dots)", f32, "highest"),
                                         ("float32 (high: tf32 dots)", f32, "high"),
                                         ("bfloat16", bf16, "highest"),
                                         ("float16", f16, "highest"))]
    out += [
        Case("diversity", "float32 (highest) 64x512x7x7: rows not 16-aligned",
             feats((64, 512, 7, 7), f32)),
        Case("diversity", "float32 (high) 64x512x7x7: rows not 16-aligned",
             feats((64, 512, 7, 7), f32), precision="high"),
        Case("diversity", "float32 (highest) 64x200x7x7 channels-last",
             feats((64, 200, 7, 7), f32, "channels_last")),
        Case("diversity", "bfloat16 64x200x7x7 channels-last",
             feats((64, 200, 7, 7), bf16, "channels_last")),
        Case("diversity", "float32 1x1x1: every integer 1", feats((1, 1, 1, 1), f32)),
    ]
    return out


GROUPS = ("total_variation", "dot_cossim", "diversity")


def meta_tensor(shape, dtype):
    """An input for recording: a meta tensor (shape, strides and offset, no storage)."""
    import torch
    return torch.empty(shape, dtype=dtype, device="meta")
# The bench ops that run a kernel: op -> (group, inputs from (dims, dtype)).
_VIT_PREFIX = 1  # benchmarks/vit_ops.py: the class token before the patches


def _bench_inputs(op: str, dims, dtype):
    """(group, inputs(new)) of a ``fastobj bench`` op at dims, as its fastobj provider calls
    the launchers (benchmarks/ops.py and vit_ops.py build the same views), or None."""
    if op == "diversity":
        return "diversity", lambda new: (new(dims, dtype).flatten(2),)
    if op == "total_variation":
        return "total_variation", lambda new: (new(dims, dtype),)
    if op in ("direction", "direction_per_sample"):
        vec = (dims[0] if op == "direction_per_sample" else 1, dims[1], 1)
        return "dot_cossim", lambda new: (new(dims, dtype).flatten(2), new(vec, dtype))

    def tokens(new):  # the (B, C, patches) view of (B, tokens, C) that fastobj.Tokens gives
        return new(dims, dtype)[:, _VIT_PREFIX:, :].transpose(1, 2)
    if op == "vit_diversity":
        return "diversity", lambda new: (tokens(new),)
    if op == "vit_direction":
        return "dot_cossim", lambda new: (tokens(new), new((1, dims[2], 1), dtype))
    return None


def bench_cases(preset: str = "gpu") -> List[Case]:
    """One case per kernel point of a ``fastobj bench`` preset (fwd+bwd launches, as the
    library's float32 default precision runs them), its headline points first."""
    import torch

    from .ops import DIRECTION_COSSIM_POW, DTYPES
    from .presets import PRESETS, plan
    chosen = PRESETS[preset]
    out, seen = [], set()
    for part in ("headline", "rest"):
        for point in plan(chosen.part(part)):
            found = _bench_inputs(point.op, point.dims, DTYPES[point.dtype])
            key = (point.op, point.dims, point.dtype)
            if found is None or key in seen or DTYPES[point.dtype] == torch.float64:
                continue
            seen.add(key)
            group, inputs = found
            label = f"bench {point.op} {'x'.join(map(str, point.dims))} {point.dtype}"
            out.append(Case(group, label, inputs,
                            scalars=(DIRECTION_COSSIM_POW, False, True)))
    return out


def record(groups=GROUPS, sm_count: int = H200_SMS, preset: Optional[str] = "gpu"):
    """{group: [(case label, [records])]}: the launches each case of each group makes, on
    meta tensors (no memory, and a data pointer that keeps a view's offset, which is what
    Triton specialises on), with grids for sm_count SMs; the points of the bench preset first
    (none when preset is None), then :func:`cases`."""
    out = {group: [] for group in groups}
    for case in (bench_cases(preset) if preset else []) + cases():
        if case.group in groups:
            with recording(sm_count) as records:
                case.launch(meta_tensor)
            out[case.group].append((case.label, list(records)))
            if case.label == WF_POINT:  # the GPU check's profile phase times these
                record = wf_record(records)
                out["diversity"].append(("W·F tiles " + case.label,
                                         [with_tiles(record, config)
                                          for config in wf_configs(record)[1:]]))
    return out


# --------------------------------------------------------------------------------------------
# From a record to the compiler's input, as JITFunction.run builds it.
# --------------------------------------------------------------------------------------------

def compile_input(record, capability: int):
    """(variant key, ASTSource, options dict) of one recorded launch for a CUDA target of
    this compute capability: Triton's binder specialises the arguments, and
    JITFunction._pack_args (Triton 3.6 to 3.9) builds the signature, constexprs and attributes
    from them."""
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    kernel, _, args, kwargs = record
    backend = make_backend(GPUTarget("cuda", capability, 32))
    kwargs = dict(kwargs)
    kwargs["debug"] = kwargs.get("debug", kernel.debug) or knobs.runtime.debug
    kwargs["instrumentation_mode"] = knobs.compilation.instrumentation_mode
    if hasattr(knobs.compilation, "fpsan_homomorphic_casts"):  # Triton 3.9
        kwargs["fpsan_homomorphic_casts"] = knobs.compilation.fpsan_homomorphic_casts
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound,
                                                              specialization, options)
    key = f"{kernel.__name__}|{specialization}|{sorted(options.__dict__.items())}"
    src = ASTSource(kernel, signature, constexprs, attrs)
    return key, src, options.__dict__


def variants(recorded, capability: int = 90):
    """{group: {variant key: (kernel name, first case label, record)}} over recorded
    launches; a variant is one distinct compilation."""
    out = {}
    for group, cases in recorded.items():
        found = {}
        for label, records in cases:
            for rec in records:
                key = compile_input(rec, capability)[0]
                found.setdefault(key, (rec[0].__name__, label, rec))
        out[group] = found
    return out


# --------------------------------------------------------------------------------------------
# Compiling and reading ptxas' report.
# --------------------------------------------------------------------------------------------

_PTXAS_CACHE = os.path.join(tempfile.gettempdir(), "fastobj-ptxas-report-cache")


def _ptxas_report(ptx: str, capability: int) -> dict:
    """Registers, spills and static shared memory from ``ptxas -v`` on Triton's PTX, with the
    ptxas and flags Triton itself uses for this target; cached by PTX content."""
    from triton.backends.nvidia.compiler import get_ptxas
    arch = re.search(r"^\.target\s+(sm_\w+)", ptx, re.M).group(1)
    tool = get_ptxas(capability).path
    key = hashlib.sha256((tool + arch + ptx).encode()).hexdigest()
    cached = os.path.join(_PTXAS_CACHE, key + ".json")
    if os.path.exists(cached):
        with open(cached) as fh:
            return json.load(fh)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as fh:
            fh.write(ptx)
        run = subprocess.run([tool, "-lineinfo", "-v", "--regAllocOptLevel=2", "--gpu-name",
                              arch, src, "-o", os.path.join(tmp, "k.cubin")],
                             capture_output=True, text=True)
    log = run.stdout + run.stderr
    if run.returncode != 0:
        raise RuntimeError(f"ptxas failed ({run.returncode}): {log}")

    def number(pattern):
        found = re.search(pattern, log)
        return int(found.group(1)) if found else None
    info = {"arch": arch, "registers": number(r"Used (\d+) registers"),
            "spill_stores": number(r"(\d+) bytes spill stores") or 0,
            "spill_loads": number(r"(\d+) bytes spill loads") or 0,
            "static_smem": number(r"(\d+) bytes smem") or 0}
    os.makedirs(_PTXAS_CACHE, exist_ok=True)
    with open(cached + f".{os.getpid()}", "w") as fh:
        json.dump(info, fh)
    os.replace(cached + f".{os.getpid()}", cached)
    return info


def _compile_one(job):
    """Compile one (group, key, capability, report) job; a row of the report."""
    group, key, capability, with_report = job
    name, label, rec = _JOBS[group][key]
    row = {"group": group, "kernel": name, "case": label, "cc": capability,
           "grid": list(rec[1]), "key": key}
    try:
        import triton
        from triton.backends.compiler import GPUTarget
        _, src, options = compile_input(rec, capability)
        compiled = triton.compile(src, target=GPUTarget("cuda", capability, 32),
                                  options=options)
        row.update(num_warps=compiled.metadata.num_warps, shared=compiled.metadata.shared,
                   constexprs={rec[0].arg_names[path[0]]: value
                               for path, value in src.constants.items()})
        if with_report:
            row.update(_ptxas_report(compiled.asm["ptx"], capability))
    except Exception:
        row["error"] = traceback.format_exc()
    return row


_JOBS: dict = {}


def _jobs(capabilities, with_report, recorded):
    """One compile job per distinct variant and capability, in recording order."""
    global _JOBS
    _JOBS = variants(recorded)
    seen = set()
    jobs = []
    for group, found in _JOBS.items():
        for key in found:
            if key not in seen:  # a variant two groups share (the sum kernel) compiles once
                seen.add(key)
                jobs += [(group, key, cc, with_report) for cc in capabilities]
    return jobs


def compile_all(capabilities, with_report=True, workers=None, recorded=None, limit=None):
    """Compile every variant of every group for each capability (in forked worker
    processes, one per CPU core), yielding each report row as it finishes (the first
    `limit` variants only, when given)."""
    jobs = _jobs(capabilities, with_report, recorded or record())[:limit]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    if workers > 1:
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            yield from pool.imap_unordered(_compile_one, jobs)
    else:
        yield from map(_compile_one, jobs)


# --------------------------------------------------------------------------------------------
# Occupancy of the W·F kernel under other tile configurations.
# --------------------------------------------------------------------------------------------

# (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) of the W·F kernel weighed against the
# launcher's own (128, 128, 64, 8, 3 for bfloat16 at C = 512): shorter K steps, fewer stages,
# half tiles.
WF_CONFIGS = ((128, 128, 64, 8, 2), (128, 128, 32, 8, 3), (128, 128, 32, 8, 2),
              (128, 64, 32, 4, 3), (64, 128, 64, 4, 3), (64, 128, 32, 4, 3))
# The bench point whose W·F kernel they are weighed at (the `gpu` preset's headline): the
# GPU check's warm phase compiles its W·F launch under each, and its profile phase times them.
WF_POINT = "bench diversity 1024x512x28x28 bfloat16"
# Per SM of sm_90 (H100, H200): 32-bit registers, shared memory in bytes, resident warps.
_SM90 = {"registers": 65536, "shared": 233472, "warps": 64, "programs": 32}


def resident_programs(registers: int, shared: int, num_warps: int) -> int:
    """Programs of one kernel an sm_90 SM holds at once: registers are allocated per warp in
    units of 256, and each program has 1 KiB of shared memory reserved besides its own."""
    per_warp = -(-registers * 32 // 256) * 256
    return min(_SM90["registers"] // (per_warp * num_warps),
               _SM90["shared"] // (shared + 1024), _SM90["warps"] // num_warps,
               _SM90["programs"])


def wf_case() -> "Case":
    """The bench case of WF_POINT (its inputs: the (B, C, H·W) view the bench op passes)."""
    return next(c for c in bench_cases("gpu") if c.label == WF_POINT)


def wf_record(records: list):
    """The W·F launch among a Diversity case's records: the last (the eager objective's
    backward, A formed from S)."""
    return [r for r in records if r[0].__name__ == "_w_times_f_kernel"][-1]


def wf_configs(record) -> List[tuple]:
    """The launcher's (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages) of a W·F record, then
    every other one of WF_CONFIGS."""
    kwargs = record[3]
    own = (kwargs["BLOCK_M"], kwargs["BLOCK_N"], kwargs["BLOCK_K"], kwargs["num_warps"],
           kwargs["num_stages"])
    return [own] + [config for config in WF_CONFIGS if config != own]


def with_tiles(record, config: tuple):
    """A W·F record under another tile configuration (one of WF_CONFIGS): the constexprs and
    options replaced, and its row- and column-block counts (NM, NP) and grid recomputed.
    BLOCK_M and BLOCK_K must divide the storage tile SB."""
    from fastobj.kernels._common import cdiv
    kernel, grid, args, kwargs = record
    block_m, block_n, block_k, warps, stages = config
    names = kernel.arg_names[:len(args)]
    values = dict(zip(names, args))
    if kwargs["SB"] % block_m or kwargs["SB"] % block_k:
        raise ValueError(f"W·F tiles {config} do not divide the storage tile {kwargs['SB']}")
    samples = grid[0] // (values["NM"] * values["NP"])
    values["NM"], values["NP"] = cdiv(values["C"], block_m), cdiv(values["P"], block_n)
    kwargs = dict(kwargs, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps,
                  num_stages=stages)
    return (kernel, (samples * values["NM"] * values["NP"],), tuple(values[n] for n in names),
            kwargs)


def occupancy(capability: int, limit: Optional[int] = None):
    """Rows of registers, spills, shared memory and resident programs per SM of the W·F kernel
    at the headline Diversity point (bfloat16, 1024x512x28x28, the eager objective's backward):
    first under the launcher's configuration ("launcher": true), then under each other one of
    WF_CONFIGS (the first `limit` rows only, when given)."""
    import triton
    from triton.backends.compiler import GPUTarget
    with recording() as records:
        wf_case().launch(meta_tensor)
    record = wf_record(records)
    configs = wf_configs(record)
    for config in configs[:limit]:
        _, src, options = compile_input(with_tiles(record, config), capability)
        compiled = triton.compile(src, target=GPUTarget("cuda", capability, 32), options=options)
        info = _ptxas_report(compiled.asm["ptx"], capability)
        shared = compiled.metadata.shared + info["static_smem"]
        yield dict(info, config=list(config), launcher=config == configs[0], shared=shared,
                   resident=resident_programs(info["registers"], shared, config[3]))


def _options(args):
    """(--sms, --preset, --limit, the rest) of the command line."""
    values = {"--sms": str(H200_SMS), "--preset": "gpu", "--limit": None}
    rest = []
    while args:
        head = args.pop(0)
        if head in values:
            values[head] = args.pop(0)
        else:
            rest.append(head)
    limit, preset = values["--limit"], values["--preset"]
    return (int(values["--sms"]), None if preset == "none" else preset,
            None if limit is None else int(limit), rest)


def main(argv):
    os.environ.pop("TRITON_INTERPRET", None)
    sms, preset, limit, rest = _options(list(argv))
    command, capabilities = rest[0], [int(c) for c in rest[1:]]
    if command == "report":  # warm keeps the environment (part of Triton's cache key)
        os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # 3.9's default, unwarned
    import triton
    recorded = record(sm_count=sms, preset=preset)
    if command == "count":
        found = variants(recorded)
        print(json.dumps({"triton": triton.__version__, "sms": sms,
                          "variants": {g: len(v) for g, v in found.items()}}))
    elif command == "report":
        rows = list(compile_all(capabilities, recorded=recorded, limit=limit))
        print(json.dumps({"triton": triton.__version__, "rows": rows}))
    elif command == "warm":  # one line per variant as it finishes; failures set the status
        failed = 0
        for row in compile_all(capabilities, with_report=False, recorded=recorded,
                               limit=limit):
            failed += "error" in row
            print(json.dumps(row), flush=True)
        if failed:
            print(f"{failed} kernel variant(s) failed to compile", file=sys.stderr)
            raise SystemExit(1)
    elif command == "occupancy":  # the W·F kernel under WF_CONFIGS, one JSON line each
        for row in occupancy(capabilities[0], limit):
            print(json.dumps(row), flush=True)
    else:
        raise SystemExit(f"unknown command {command!r}: count, report CC..., warm CC..., "
                         "occupancy CC")


if __name__ == "__main__":
    main(sys.argv[1:])
