"""What a run of ``fastobj bench`` leaves: its own folder with a CSV, a table and a plot.

Each run writes ``<out>/<run id>/`` (``bench.csv``, ``table.txt``, ``diversity.png``), so runs
never overwrite one another; the CSV's ``run_id`` column lets runs be compared. The files are
rewritten (atomically) as the sweep goes, so an interrupted run still leaves a readable result.
"""
from __future__ import annotations

import csv
import datetime
import os
from typing import List, Optional, Sequence

from .ops import MODES, PROVIDERS
from .timing import MIN_ROUNDS, WIDE_SPREAD

CSV_NAME = "bench.csv"
PLOT_NAME = "diversity.png"
TABLE_NAME = "table.txt"
CSV_COLUMNS = (
    "run_id", "op", "provider", "mode", "shape", "dtype", "device", "device_name", "threads",
    "clock", "median_s", "spread", "rounds", "rough", "min_s", "is_reference", "kernel_s",
    "kernel_method", "host_overhead_s", "objective_s", "objective_share", "peak_mem_bytes",
    "mem_method", "backend", "speedup_vs_classic", "x_bmm", "compile_s", "flops", "bytes", "bound",
    "tflops", "gbs", "pct_of_ceiling", "fastobj_version", "torch_version", "date", "preset",
    "note",
)
ROUGH_MARK = "~"


def new_run_dir(out: str, preset: str, run_id: Optional[str] = None) -> str:
    """Create ``<out>/<run id>`` (default id: UTC date-time and preset; made unique)."""
    run_id = run_id or f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S}-{preset}"
    path, n = os.path.join(out, run_id), 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(out, f"{run_id}-{n}")
    os.makedirs(path)
    return path


def _atomic_write(path: str, write) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        write(f)
    os.replace(tmp, path)


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_csv(path: str, rows: Sequence[dict]) -> None:
    """The run's rows, one per measurement, under :data:`CSV_COLUMNS`."""
    def write(f):
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([_csv_value(row.get(c)) for c in CSV_COLUMNS])
    _atomic_write(path, write)


def write_text(path: str, text: str) -> None:
    _atomic_write(path, lambda f: f.write(text))


def fmt_time(s: Optional[float]) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def fmt_bytes(n: Optional[int]) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def provider_label(row: dict) -> str:
    """"fastobj=ref" where fastobj's path is the reference (measured once)."""
    if row["provider"] == "fastobj" and row.get("is_reference"):
        return "fastobj=ref"
    return row["provider"]


def _cells(r: dict) -> dict:
    throughput = None
    if r.get("bound") == "compute":
        throughput = f"{r['tflops']:.3g} TFLOP/s"
    elif r.get("bound") == "memory":
        throughput = f"{r['gbs']:.3g} GB/s"
    spread = r.get("spread")
    speed = r.get("speedup_vs_classic")
    return {
        "op": r["op"], "mode": r["mode"], "shape": r["shape"], "dtype": r["dtype"],
        "provider": provider_label(r), "backend": r["backend"],
        "median": (ROUGH_MARK if r.get("rough") else "") + fmt_time(r["median_s"]),
        "spread": "-" if spread is None else f"{100 * spread:.0f}%",
        "rounds": str(r["rounds"]),
        "kernel": fmt_time(r.get("kernel_s")), "host": fmt_time(r.get("host_overhead_s")),
        "objective": fmt_time(r.get("objective_s")),
        "share": ("-" if r.get("objective_share") is None
                  else f"{100 * r['objective_share']:.0f}%"),
        "peak mem": fmt_bytes(r.get("peak_mem_bytes")),
        "vs classic": "-" if speed is None else f"{speed:.3g}x",
        "x bmm": "-" if r.get("x_bmm") is None else f"{r['x_bmm']:.2f}",
        "throughput": throughput or "-",
        "% ceiling": "-" if r.get("pct_of_ceiling") is None else f"{r['pct_of_ceiling']:.1f}%",
        "compile": "-" if r.get("compile_s") is None else f"{r['compile_s']:.1f} s",
    }


OPTIONAL_COLUMNS = {"kernel": "kernel_s", "host": "host_overhead_s", "objective": "objective_s",
                    "share": "objective_share", "x bmm": "x_bmm"}


def format_table(rows: Sequence[dict]) -> str:
    """An aligned text table; kernel/host and objective columns only where a row has them."""
    cells = [_cells(r) for r in rows]
    header = [c for c in ("op", "mode", "shape", "dtype", "provider", "backend", "median",
                          "spread", "rounds", "kernel", "host", "objective", "share",
                          "peak mem", "vs classic", "x bmm", "throughput", "% ceiling",
                          "compile")
              if c not in OPTIONAL_COLUMNS
              or any(r.get(OPTIONAL_COLUMNS[c]) is not None for r in rows)]
    lines = [header] + [[c[h] for h in header] for c in cells]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for k, line in enumerate(lines):
        out.append("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def legend_notes(rows: Sequence[dict]) -> List[str]:
    """The lines that explain the table's marks, for the marks it uses."""
    notes = []
    if any(r.get("rough") for r in rows):
        notes.append(f"{ROUGH_MARK}: a rough figure: fewer than {MIN_ROUNDS} rounds, or rounds "
                     f"that disagree by more than {100 * WIDE_SPREAD:.0f}% (spread = "
                     "interquartile range / median), for the median or the objective's share")
    if any(r.get("is_reference") and r["provider"] == "fastobj" for r in rows):
        notes.append("fastobj=ref: fastobj's path here is the PyTorch reference itself")
    if any(r.get("kernel_s") is not None for r in rows):
        notes.append("kernel: the op's kernels alone (CUDA graph replay, or profiler kernel "
                     "durations); host: median minus kernel, the GPU's wait on the host per "
                     "call; throughput uses the kernel time")
    if any(r.get("x_bmm") is not None for r in rows):
        notes.append("x bmm: time over that of torch.bmm for the same products (provider bmm: "
                     "the Grams, and in fwd+bwd one (B,C,C)x(B,C,P) product), kernel times "
                     "where measured; the aim for fastobj bf16 fwd+bwd is <= 1.3")
    if any(r.get("objective_s") is not None for r in rows):
        notes.append("objective: the objective alone (forward and backward from the "
                      "activations); share: its fraction of the step")
    return notes


def plot_diversity(rows: Sequence[dict], path: str, title: str) -> Optional[str]:
    """Time vs batch size of Diversity, log-log, one panel per mode; rough points hollow.
    Returns the path, or None without Diversity rows. Raises ImportError without matplotlib."""
    rows = [r for r in rows if r["op"] == "diversity"]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    fig, axes = plt.subplots(1, len(modes), figsize=(6.2 * len(modes), 4.6), squeeze=False)
    markers = {"fastobj": "o", "reference": "s", "classic": "^", "compile": "D", "bmm": "v"}
    styles = ["-", "--", ":", "-."]
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    rests = list(dict.fromkeys(r["shape"].split("x", 1)[1] for r in rows))
    for ax, mode in zip(axes[0], modes):
        for provider in PROVIDERS:
            for k, dtype in enumerate(dtypes):
                for rest in rests:
                    pts = sorted((int(r["shape"].split("x")[0]), r["median_s"], r.get("rough"),
                                  provider_label(r)) for r in rows
                                 if r["mode"] == mode and r["provider"] == provider
                                 and r["dtype"] == dtype and r["shape"].split("x", 1)[1] == rest)
                    if not pts:
                        continue
                    name = ("fastobj (= reference)" if pts[0][3] == "fastobj=ref" else provider)
                    label = (name + (f" {dtype}" if len(dtypes) > 1 else "")
                             + (f" CxHxW={rest}" if len(rests) > 1 else ""))
                    line, = ax.plot([p[0] for p in pts], [p[1] for p in pts],
                                    linestyle=styles[k % len(styles)], label=label)
                    marker = markers.get(provider, "x")
                    for filled in (True, False):
                        sel = [p for p in pts if bool(p[2]) != filled]
                        ax.scatter([p[0] for p in sel], [p[1] for p in sel], marker=marker,
                                   edgecolors=line.get_color(), zorder=3,
                                   facecolors=line.get_color() if filled else "none")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size B")
        ax.set_ylabel("median " + ("process CPU time" if rows[0].get("clock") == "cpu"
                                   else "time") + " per call (s)")
        ax.set_title(f"Diversity {mode}" + (f", CxHxW = {rests[0]}" if len(rests) == 1 else ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title + "\nhollow markers: rough figures (few rounds or wide spread)",
                 fontsize=9)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
