"""The Python side of ``benchmarks/gpu_check.sh``: device facts, the merged summary of the
benchmark phases, and the profile phase.

``python -m fastobj.benchmarks.gpu_check COMMAND``:

``device``
    the device's name, SM count (what the warm phase sizes its grids for), compute capability
    and versions; on a machine without CUDA (the rehearsal) the CPU, 132 SMs and 9.0.
``merge RUNS OUT``
    every ``fastobj bench`` run folder under RUNS (one per benchmark phase) into OUT's
    ``bench.csv`` (all rows), ``summary.txt`` (one table per phase, in phase order, with "vs
    classic" filled across phases) and ``diversity.png``. Run after every phase, so a check
    cut short still leaves the tables of the phases done.
``profile``
    at the headline shapes (``--rehearsal``: the rehearsal preset's): per-kernel device time of
    one fwd+bwd call of Diversity, TV and Direction from ``torch.profiler``, the eager time
    per call against CUDA-graph replay (the host's share, measured), and the W·F kernel's
    time under each tile configuration of kernel_variants.WF_CONFIGS against the launcher's.
``sass CC``
    the Diversity kernels of the headline point (B=1024, bfloat16) compiled for compute
    capability CC as a launch on the device would compile them (benchmarks/kernel_variants.py):
    registers and spills (ptxas) of each, and the SASS of the Gram and W·F kernels with its
    count of tensor-core instructions (HGMMA on Hopper: wgmma; HMMA: the older mma.sync).
"""
from __future__ import annotations

import csv
import glob
import os
import re
import sys
from typing import Dict, List

CHECK_SMS = 132  # the SM count and compute capability the check assumes where no CUDA
CHECK_CC = 90    # device answers (the rehearsal): an H100's or H200's
# Benchmark phases in the order gpu_check.sh runs them (the run folder's name).
PHASES = ("headline", "compile", "classic", "rest")
_INT_COLUMNS = ("rounds", "rough", "is_reference", "threads")


# --------------------------------------------------------------------------------------------
# device
# --------------------------------------------------------------------------------------------

def device() -> None:
    import torch
    import triton
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        name, sms, cc = props.name, props.multi_processor_count, props.major * 10 + props.minor
    else:
        from .machine import cpu_model
        name, sms, cc = f"no CUDA device ({cpu_model()}): rehearsal", CHECK_SMS, CHECK_CC
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), triton {triton.__version__}, "
          f"{name}, {sms} SMs, compute capability {cc}")
    print(f"SMS={sms}\nCC={cc}")


# --------------------------------------------------------------------------------------------
# merge
# --------------------------------------------------------------------------------------------

def _typed(row: Dict[str, str]) -> dict:
    """A CSV row with numbers back as numbers and empty cells as None."""
    out: dict = {}
    for key, value in row.items():
        if value == "":
            out[key] = None
        elif key in _INT_COLUMNS:
            out[key] = int(float(value))
        else:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    return out


def _phase(run_dir: str) -> str:
    name = os.path.basename(run_dir.rstrip(os.sep))
    return next((p for p in PHASES if name.startswith(p)), name)


def merge(runs: str, out: str) -> None:
    from . import report
    runs_found = sorted(glob.glob(os.path.join(runs, "*", report.CSV_NAME)),
                        key=lambda p: (PHASES.index(_phase(os.path.dirname(p)))
                                       if _phase(os.path.dirname(p)) in PHASES else 99, p))
    rows: List[dict] = []
    sections = []
    for path in runs_found:
        run_dir = os.path.dirname(path)
        with open(path, newline="") as fh:
            phase_rows = [_typed(r) for r in csv.DictReader(fh)]
        rows += phase_rows
        table = os.path.join(run_dir, report.TABLE_NAME)
        header = ""
        if os.path.exists(table):
            with open(table) as fh:
                header = "".join(fh.readlines()[:4])
        sections.append((_phase(run_dir), header, phase_rows))
    classic = {(r["op"], r["mode"], r["shape"], r["dtype"]): r["median_s"] for r in rows
               if r["provider"] == "classic"}
    for r in rows:
        key = (r["op"], r["mode"], r["shape"], r["dtype"])
        if r.get("speedup_vs_classic") is None and key in classic and r.get("median_s"):
            r["speedup_vs_classic"] = classic[key] / r["median_s"]
    os.makedirs(out, exist_ok=True)
    report.write_csv(os.path.join(out, report.CSV_NAME), rows)
    text = []
    for phase, header, phase_rows in sections:
        measured = [r for r in phase_rows if not str(r["op"]).startswith("ceiling")]
        text += [f"=== {phase} ===", header.rstrip()]
        if measured:
            text += [report.format_table(measured), *report.legend_notes(measured)]
        text += ["", ""]
    report.write_text(os.path.join(out, "summary.txt"), "\n".join(text))
    measured = [r for r in rows if not str(r["op"]).startswith("ceiling")]
    try:
        report.plot_diversity(measured, os.path.join(out, report.PLOT_NAME),
                              "fastobj gpu_check: every benchmark phase")
    except ImportError as exc:
        print(f"no plot: matplotlib does not import ({exc})")
    print(f"merged {len(runs_found)} run(s), {len(measured)} row(s) into {out}")


# --------------------------------------------------------------------------------------------
# profile
# --------------------------------------------------------------------------------------------

def _profile_points(rehearsal: bool):
    """(op, dims, dtype) of the profile: the headline's largest Diversity point and TV and
    Direction, fwd+bwd."""
    from .presets import PRESETS, plan
    preset = PRESETS["rehearsal" if rehearsal else "gpu"].part("headline")
    points = {}
    for case in plan(preset, modes=["fwd+bwd"]):
        if case.op == "diversity" and case.dtype != "bfloat16":
            continue
        points[case.op] = (case.op, case.dims, case.dtype)  # the largest batch comes last
    return list(points.values())


def _kernel_table(step, device) -> List[str]:
    """Per-kernel device time of one call of step, from torch.profiler."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from .timing import sync
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda"
                                           else [])
    sync(device)
    with profile(activities=activities) as prof:
        step()
        sync(device)
    if device.type != "cuda":
        return ["  (no CUDA device: no kernel times; the CPU ops of one call follow)"] + [
            f"  {e.key[:60]:<60} {e.cpu_time_total:10.1f} us x{e.count}"
            for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]]
    lines = []
    kernels = [e for e in prof.profiler.kineto_results.events()
               if e.device_type() == torch.autograd.DeviceType.CUDA]
    total = sum(e.duration_ns() for e in kernels)
    for e in kernels:
        lines.append(f"  {e.name()[:70]:<70} {e.duration_ns() / 1e3:10.1f} us")
    lines.append(f"  {'device total (' + str(len(kernels)) + ' kernels, copies and fills)':<70} "
                 f"{total / 1e3:10.1f} us")
    return lines


def profile(rehearsal: bool) -> int:
    import torch

    from .ops import OPS, build_provider, make_args
    from .timing import Runner, graph_replay_time, time_calls
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for op_name, dims, dtype in _profile_points(rehearsal):
        op = OPS[op_name]
        runner = Runner(build_provider(op, "fastobj"), make_args(op, dims, dtype, device, 0),
                        op.n_diff, "fwd+bwd", device)
        runner.step()  # compiles, makes the upstream gradient
        shape = "x".join(map(str, dims))
        print(f"--- {op_name} fwd+bwd {shape} {dtype}: kernels of one call")
        print("\n".join(_kernel_table(runner.step, device)), flush=True)
        eager = min(time_calls(runner.step, device, 3) for _ in range(3))
        if device.type == "cuda":
            replay = graph_replay_time(runner.step, device)
            print(f"  eager {eager * 1e6:.1f} us per call, CUDA-graph replay "
                  f"{replay * 1e6:.1f} us: host share {max(0.0, 1 - replay / eager):.0%}",
                  flush=True)
        else:
            print(f"  eager {eager * 1e6:.1f} us per call; no CUDA graph without CUDA",
                  flush=True)
    return wf_tiles(rehearsal, device)


# (B, C, P) of the W·F tile comparison in the rehearsal: C = 128 makes the storage tile 128,
# which every configuration's BLOCK_M and BLOCK_K divide (the rehearsal preset's C = 16 does not).
_REHEARSAL_WF_DIMS = (2, 128, 16)


def wf_tiles(rehearsal: bool, device) -> int:
    """The W·F kernel at the headline Diversity point (bfloat16) under each tile configuration
    of kernel_variants.WF_CONFIGS against the launcher's own: device time per launch, the FLOP
    rate of its 2·B·C²·P, and the largest difference from the launcher's gradient relative to
    its largest entry (the same sums in another order: rounding only; the gradient buffer is
    filled with NaN before each, so a tile left unwritten shows). The warm phase compiled these
    launches. The backward's launches are recorded with real tensors (nothing launched), its
    first kernel (the cotangent partials) run once, then the W·F record under each tiling.
    1 when a configuration failed or differs by more than 5e-2, else 0."""
    import torch

    from ..kernels import diversity as kd
    from . import kernel_variants as kv
    from .timing import time_calls
    gen = torch.Generator(device=device).manual_seed(0)

    def new(shape, dtype):
        return torch.randn(shape, device=device, generator=gen).to(dtype)
    if rehearsal:
        feats = new(_REHEARSAL_WF_DIMS, torch.bfloat16)
    else:
        (feats,) = kv.wf_case().inputs(new)
    dims = tuple(feats.shape)
    sums, _, norms, grams = kd.diversity_sums_forward(feats, 1e-12)
    upstream = torch.tensor(0.7, dtype=torch.bfloat16, device=device)
    sms = torch.cuda.get_device_properties(device).multi_processor_count \
        if device.type == "cuda" else CHECK_SMS
    with kv.recording(sms) as records:
        kd.diversity_value_backward(feats, norms, grams, sums, upstream, 1e-12)
    cotangent, own = records

    def launch(record):
        kernel, grid, args, kwargs = record
        kernel[grid](*args, **kwargs)
    launch(cotangent)
    launch(own)
    grad = own[2][own[0].arg_names.index("out_ptr")]
    expected = grad.float()
    scale = expected.abs().max().clamp_min(1e-30)
    flops = 2 * dims[0] * dims[1] ** 2 * dims[2]
    configs = kv.wf_configs(own)
    print(f"--- W·F kernel, {'x'.join(map(str, dims))} bfloat16, by tile configuration "
          f"(M, N, K, warps, stages)")
    base, status = None, 0
    for config in configs:
        record = kv.with_tiles(own, config)
        try:
            grad.fill_(float("nan"))
            launch(record)
            error = ((grad.float() - expected).abs().max() / scale).item()
            calls = 20 if device.type == "cuda" else 1
            seconds = min(time_calls(lambda: launch(record), device, calls) for _ in range(3))
        except Exception as exc:  # a tiling the device refuses: say so, time the others
            print(f"  {str(config):<24} failed: {type(exc).__name__}: {exc}", flush=True)
            status = 1
            continue
        base = base or seconds
        status |= not error <= 5e-2
        note = "  (the launcher's)" if config == configs[0] else ""
        print(f"  {str(config):<24} {seconds * 1e6:10.1f} us  {flops / seconds / 1e12:7.1f} "
              f"TFLOP/s  {base / seconds:5.2f}x the launcher's speed  difference {error:.1e}"
              f"{note}", flush=True)
    return status


# --------------------------------------------------------------------------------------------
# sass
# --------------------------------------------------------------------------------------------

_SASS_KERNELS = ("_gram_packed_kernel", "_w_times_f_kernel")
_TENSOR_CORE = re.compile(r"\b(HGMMA|QGMMA|HMMA|IMMA)\b")


def sass(capability: int, rehearsal: bool) -> int:
    """Print the report; 1 when a Diversity kernel failed to compile, spilled, or a product
    kernel has no tensor-core instruction."""
    os.environ.pop("TRITON_INTERPRET", None)
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.tools.disasm import get_sass

    from . import kernel_variants as kv
    label = "bench diversity " + ("4x16x4x4" if rehearsal else "1024x512x28x28") + " bfloat16"
    case = next(c for c in kv.bench_cases("rehearsal" if rehearsal else "gpu")
                if c.label == label)
    with kv.recording(CHECK_SMS) as records:
        case.launch(kv.meta_tensor)
    status = 0
    seen = set()
    for rec in records:
        key, src, options = kv.compile_input(rec, capability)
        if key in seen:
            continue
        seen.add(key)
        name = rec[0].__name__
        compiled = triton.compile(src, target=GPUTarget("cuda", capability, 32), options=options)
        info = kv._ptxas_report(compiled.asm["ptx"], capability)
        spilled = info["spill_stores"] or info["spill_loads"]
        status |= bool(spilled)
        print(f"{name:<30} {info['arch']}: {info['registers']} registers, spills "
              f"{info['spill_stores']}/{info['spill_loads']} B, shared "
              f"{compiled.metadata.shared} B, {compiled.metadata.num_warps} warps", flush=True)
        if name in _SASS_KERNELS:
            code = get_sass(compiled.asm["cubin"])
            found = _TENSOR_CORE.findall(code)
            counts = {k: found.count(k) for k in sorted(set(found))}
            print(f"  SASS: {len(code.splitlines())} lines, tensor-core instructions {counts}")
            lines = [ln.strip() for ln in code.splitlines() if _TENSOR_CORE.search(ln)]
            print("\n".join("    " + ln for ln in lines[:6]), flush=True)
            if not found:
                status = 1
                print(f"  {name}: no tensor-core instruction in the SASS")
    return status


def main(argv: List[str]) -> int:
    command, rest = argv[0], argv[1:]
    rehearsal = "--rehearsal" in rest
    rest = [a for a in rest if a != "--rehearsal"]
    if command == "device":
        device()
    elif command == "merge":
        merge(*rest)
    elif command == "profile":
        return profile(rehearsal)
    elif command == "sass":
        return sass(int(rest[0]), rehearsal)
    else:
        raise SystemExit(f"unknown command {command!r}: device, merge, profile, sass")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
