"""``fastobj bench``: its options, and a run from parsed options to the run's folder."""
from __future__ import annotations

import argparse
import datetime
import math
import os
import signal
import sys
import threading
import time
from typing import List, Optional, Sequence, Tuple

import torch

import fastobj
from fastobj.backend import default_device, interpreter_enabled

from . import report
from .ceilings import measure_ceilings
from .machine import allowed_cpus, choose_threads, device_name, load_average
from .ops import DTYPE_ALIASES, DTYPES, MODES, OPS, PROVIDERS, canonical_dtype
from .presets import PRESETS, Preset, plan
from .sweep import Settings, Sweeper
from .timing import uses_cpu_clock

PLOT_INTERVAL_S = 20.0


class BenchError(Exception):
    """A usage error: reported on stderr, exit code 2."""


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
        "Time fastobj's hot computations and a render step against the PyTorch reference, the "
        "classic Lucid/Lucent/Captum algorithms and torch.compile. Each run writes its own "
        "folder <out>/<run id>/ with a CSV row per measurement, a table and a plot of "
        "Diversity time vs batch size, rewritten as the run goes.")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="named sweep (default: 'gpu' on a CUDA device, 'cpu' otherwise); "
                             + "; ".join(f"{p.name}: {p.help}" for p in PRESETS.values()))
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke sweep (the 'quick' preset): seconds, no torch.compile")
    parser.add_argument("--part", choices=("all", "headline", "rest"), default="all",
                        help="run the preset's headline points only, the others only, or all "
                             "(default); parts have no torch.compile points")
    parser.add_argument("--ops", type=_comma_list, default=None,
                        help="comma list of ops to run (default: all of the preset): "
                             + ", ".join(OPS))
    parser.add_argument("--providers", type=_comma_list, default=None,
                        help="comma list of providers (default: all): " + ", ".join(PROVIDERS))
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    parser.add_argument("--modes", type=_comma_list, default=None,
                        help="comma list of modes overriding the preset's: fwd, fwd+bwd")
    parser.add_argument("--dtype", type=_comma_list, default=None,
                        help="comma list of dtypes overriding the preset's: "
                             + ", ".join(DTYPES) + " (or " + ", ".join(DTYPE_ALIASES) + ")")
    parser.add_argument("--batch-sizes", type=_positive_ints, default=None,
                        help="comma list of batch sizes replacing every op's batch sweep")
    parser.add_argument("--out", default="bench-out",
                        help="parent folder of the run's own folder (default: ./bench-out)")
    parser.add_argument("--run-id", default=None,
                        help="name of the run's folder and CSV run_id (default: UTC date-time "
                             "and preset, e.g. 20261201-071500-cpu)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds per call beyond which the classic loops stop escalating "
                             "the batch size (default: the preset's)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds per point when time allows (default: preset's)")
    parser.add_argument("--round-time", type=float, default=None,
                        help="seconds each provider samples a point per round (default: "
                             "preset's)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="time budget of the whole run: further rounds, then points, are "
                             "given up evenly to meet it (default: the preset's: cpu 2 min, "
                             "gpu 5.5 min, quick none)")
    parser.add_argument("--cold-compile", action="store_true",
                        help="disable Inductor's caches so compile_s is a cold compile")
    parser.add_argument("--no-memory", action="store_true", help="do not measure peak memory")
    parser.add_argument("--no-ceilings", action="store_true",
                        help="do not measure the device's copy bandwidth and matmul rate")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: from the CPUs allowed and the "
                             "load: 1 on a busy machine)")
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


def _resolve(args: argparse.Namespace) -> Tuple[Preset, torch.device, Tuple[str, ...],
                                                  Optional[List[str]]]:
    preset_name = args.preset
    if args.quick:
        if preset_name not in (None, "quick"):
            raise BenchError(f"--quick conflicts with --preset {preset_name}")
        preset_name = "quick"
    device = _parse_device(args.device or default_device().type)
    preset = PRESETS[preset_name or ("gpu" if device.type == "cuda" else "cpu")].part(args.part)
    _check_names("op", args.ops, list(OPS))
    _check_names("provider", args.providers, PROVIDERS)
    _check_names("dtype", args.dtype, list(DTYPES) + list(DTYPE_ALIASES))
    _check_names("mode", args.modes, MODES)
    dtypes = None if args.dtype is None else list(dict.fromkeys(map(canonical_dtype, args.dtype)))
    providers = tuple(args.providers) if args.providers is not None else PROVIDERS
    if preset.name == "quick" and args.providers is None:
        providers = tuple(p for p in providers if p != "compile")
    for name in ("budget", "rounds", "round_time", "max_minutes", "threads"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise BenchError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.run_id is not None and (not args.run_id or os.sep in args.run_id
                                    or args.run_id in (".", "..")):
        raise BenchError(f"--run-id must be a plain folder name, got {args.run_id!r}")
    return preset, device, providers, dtypes


def _threads(args: argparse.Namespace, device: torch.device) -> str:
    """Set torch's CPU threads; return the line that says how many and why."""
    if args.threads is not None:
        threads, why = args.threads, "as --threads asks"
    elif device.type == "cpu":
        threads, why = choose_threads(allowed_cpus(), load_average())
        why += "; --threads N overrides"
    else:
        return f"threads: {torch.get_num_threads()} (torch's default; the GPU does the work)"
    torch.set_num_threads(threads)
    clock = ("times in process CPU time (one thread: other jobs' turns on the CPU do not count)"
             if uses_cpu_clock(device) else "times in wall time")
    return f"threads: {threads} ({why}); {clock}"


def run(args: argparse.Namespace) -> int:
    """Run ``fastobj bench``. Returns 0, 1 when a provider failed, 2 on a usage error."""
    try:
        resolved = _resolve(args)
    except BenchError as exc:
        print(f"fastobj bench: error: {exc}", file=sys.stderr)
        return 2
    threads = torch.get_num_threads()
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        return _run(args, *resolved)
    except Terminated:
        return 143
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        torch.set_num_threads(threads)  # the caller's setting comes back


class Terminated(BaseException):
    """SIGTERM (``timeout``'s signal) arrived: the run writes what it has and exits 143 (a
    BaseException, so no provider guard takes it for a failed call)."""


def _terminated(signum, frame):
    raise Terminated()


def _run(args: argparse.Namespace, preset: Preset, device: torch.device,
         providers: Tuple[str, ...], dtypes: Optional[List[str]]) -> int:
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if args.cold_compile:
        import torch._inductor.config as inductor_config
        inductor_config.force_disable_caches = True
    started = time.monotonic()
    threads_line = _threads(args, device)
    limit = 60 * args.max_minutes if args.max_minutes is not None else preset.time_limit_s
    cases = plan(preset, args.ops, args.batch_sizes, dtypes, args.modes)
    sweeper = Sweeper(Settings(
        device=device, providers=providers,
        budget_s=args.budget or preset.budget_s, rounds=args.rounds or preset.rounds,
        round_s=args.round_time or preset.round_s,
        memory=preset.memory and not args.no_memory, seed=args.seed,
        deadline=None if limit is None else started + limit))
    run_dir = report.new_run_dir(args.out, preset.name, args.run_id)
    run_id = os.path.basename(run_dir)
    dev_name = device_name(device)
    version = getattr(fastobj, "__version__", "unknown")
    date = datetime.date.today().isoformat()
    base = {"run_id": run_id, "device": device.type, "device_name": dev_name,
            "threads": torch.get_num_threads(),
            "clock": "cpu" if uses_cpu_clock(device) else "wall", "fastobj_version": version,
            "torch_version": torch.__version__, "date": date, "preset": preset.name}
    header = [f"fastobj {version} bench: run {run_id}, preset {preset.name}, device {device} "
              f"({dev_name}), torch {torch.__version__}, float32 matmul precision "
              f"{torch.get_float32_matmul_precision()}, {date}", threads_line]
    print("\n".join(header))
    if device.type == "cpu" and interpreter_enabled():
        sweeper.note("TRITON_INTERPRET is set, so the fastobj provider may run Triton's "
                     "interpreter on CPU: its times then measure the interpreter")
    if preset.ceilings and not args.no_ceilings:
        sweeper.ceilings = measure_ceilings(device, sorted({c.dtype for c in cases}))
        ceil = sweeper.ceilings
        header.append(f"ceilings: copy {ceil.copy_gbs:.1f} GB/s; matmul " + ", ".join(
            f"{k} {v:.2f} TFLOP/s" for k, v in ceil.matmul_tflops.items()))
        print(header[-1])

    paths = {name: os.path.join(run_dir, name)
             for name in (report.CSV_NAME, report.TABLE_NAME, report.PLOT_NAME)}
    plotted: List[str] = []
    table: List[str] = [""]
    last_plot = [-math.inf]

    def written(round_done: bool, done: bool = False) -> None:
        """Rewrite the run's CSV and table; the plot after a round (at most every
        PLOT_INTERVAL_S) and at the end."""
        rows = sweeper.rows(base)
        measured = [r for r in rows if not r["op"].startswith("ceiling")]
        if done or (round_done and time.monotonic() - last_plot[0] >= PLOT_INTERVAL_S):
            last_plot[0] = time.monotonic()
            try:
                if report.plot_diversity(measured, paths[report.PLOT_NAME],
                                         f"fastobj {version}, {dev_name}, run {run_id}"):
                    plotted[:] = [paths[report.PLOT_NAME]]
            except ImportError as exc:  # matplotlib is optional (the "bench" extra)
                sweeper.note(f"no plot: matplotlib does not import ({exc}); "
                             "pip install matplotlib")
        report.write_csv(paths[report.CSV_NAME], rows)
        table[0] = "\n".join([report.format_table(measured)] + report.legend_notes(measured)
                             + [f"note: {t}" for t in sweeper.notes]
                             + [f"FAILED: {t}" for t in sweeper.failures]) + "\n"
        state = "finished" if done else "in progress"
        report.write_text(paths[report.TABLE_NAME],
                          "\n".join(header) + f"\n{state}: {sweeper.rounds_done} round(s), "
                          f"wall {time.monotonic() - started:.1f} s\n{table[0]}")

    progress = None
    if not args.no_progress:
        from tqdm import tqdm
        progress = tqdm(total=len(cases) * sweeper.s.rounds, desc="fastobj bench", unit="pt",
                        file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
    try:
        written(False)  # the run's folder holds its header from the start
        sweeper.run(cases, written, progress)
    except (KeyboardInterrupt, Terminated) as exc:
        if isinstance(exc, Terminated):  # a second SIGTERM must not cut the writing short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sweeper.note(f"interrupted ({'SIGTERM' if isinstance(exc, Terminated) else 'Ctrl-C'})"
                     ": the figures are those of the points and rounds done")
        raise
    finally:
        if progress is not None:
            progress.close()
        written(round_done=True, done=True)
        print(table[0], end="")
    wall = time.monotonic() - started
    print(f"wrote {', '.join([paths[report.CSV_NAME], paths[report.TABLE_NAME]] + plotted)}; "
          f"wall time {wall:.1f} s")
    return 1 if sweeper.failures else 0
