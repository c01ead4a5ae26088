"""Tier 3 (docs/testing.md): every Triton kernel variant the launchers pick compiles ahead of
time, without a GPU and without a register spill, under the CPU suite's Triton and under the
H200 image's (3.6).

The variants are not listed by hand: benchmarks/kernel_variants.py runs the launchers themselves at
the shapes, dtypes, layouts and float32 matmul precisions the library meets, with grids sized
for an H200 (132 SMs) and every kernel swapped for a recorder, and turns each recorded launch
into the compiler input a CUDA launch would build (Triton's own binder and argument packing).
Each variant is compiled for sm_90a (and, under the suite's Triton, for sm_80) in a subprocess
without TRITON_INTERPRET (``triton.compile`` refuses to run under it), and ``ptxas -v`` (the
ptxas Triton bundles for that target, with Triton's flags) reports registers, spills and
static shared memory. The report is printed (``pytest -s`` shows it); any error or spill fails.

Triton 3.6: set FASTOBJ_TRITON36_PYTHON to the python of a virtual environment holding
triton==3.6.0, torch and fastobj (``.ci/run`` makes one); the test is skipped, with that
reason, where it is unset.
"""
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastobj.benchmarks.kernel_variants import MODULES

REPO = Path(__file__).resolve().parents[1]
GROUPS = ["total_variation", "dot_cossim", "diversity"]
TRITON36_ENV = "FASTOBJ_TRITON36_PYTHON"


def compile_report(python: str, capabilities) -> dict:
    """Run benchmarks/kernel_variants.py's report (the library's cases) under `python`; print
    and return it."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRITON_INTERPRET", "FASTOBJ_SM_COUNT")}
    run = subprocess.run([python, "-m", "fastobj.benchmarks.kernel_variants", "--preset", "none",
                          "report", *map(str, capabilities)],
                         capture_output=True, text=True, env=env, cwd=str(REPO), timeout=900)
    assert run.returncode == 0, f"AOT compile subprocess failed:\n{run.stderr[-4000:]}"
    report = json.loads(run.stdout)
    lines = ["", f"AOT compile report, Triton {report['triton']} (ptxas -v on Triton's PTX)",
             f"{'kernel':<28} {'arch':<7} {'warps':>5} {'regs':>4} {'smem':>6} "
             f"{'spill st/ld':>11} {'grid':<12} case"]
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"{r['kernel']:<28} cc{r['cc']} ERROR: "
                         f"{r['error'].strip().splitlines()[-1]}  ({r['case']})")
            continue
        smem = r["shared"] + r["static_smem"]
        lines.append(f"{r['kernel']:<28} {r['arch']:<7} {r['num_warps']:>5} {r['registers']:>4} "
                     f"{smem:>6} {r['spill_stores']:>5}/{r['spill_loads']:<5} "
                     f"{'x'.join(map(str, r['grid'])):<12} {r['group']}: {r['case']}")
    print("\n".join(lines))
    return report


def check_rows(rows, group, capabilities):
    """No compile error, every capability, float32 and bfloat16 operands, no spill."""
    failed = [f"{r['kernel']} cc{r['cc']} ({r['case']}):\n{r['error']}" for r in rows
              if "error" in r]
    assert not failed, "compilation failed:\n" + "\n".join(failed)
    assert rows, f"no variant recorded for {group}"
    assert {r["cc"] for r in rows} == set(capabilities)
    cases = " ".join(r["case"] for r in rows)
    assert "float32" in cases and "bfloat16" in cases, f"{group}: float32 and bfloat16 needed"
    spills = [f"{r['kernel']} ({r['arch']}, {r['case']}, {r['constexprs']}): "
              f"{r['spill_stores']} B spill stores, {r['spill_loads']} B spill loads"
              for r in rows if r["spill_stores"] or r["spill_loads"]]
    assert not spills, "register spills:\n" + "\n".join(spills)
    assert all(r["registers"] is not None for r in rows), "ptxas reported no register count"


@pytest.fixture(scope="module")
def report():
    return compile_report(sys.executable, (90, 80))


@pytest.mark.parametrize("group", GROUPS)
def test_kernels_compile_ahead_of_time(report, group):
    check_rows([r for r in report["rows"] if r["group"] == group], group, (90, 80))


def test_every_kernel_and_precision_is_compiled(report):
    """Each Triton kernel of the modules is among the variants, and Diversity's float32 dots
    are compiled with both precisions the launcher picks (IEEE for "highest", tf32 else)."""
    kernels = set()
    for name in MODULES:
        module = importlib.import_module(f"fastobj.kernels.{name}")
        kernels |= {attr for attr, value in vars(module).items()
                    if attr.endswith("_kernel") and hasattr(value, "fn")}
    assert kernels == {r["kernel"] for r in report["rows"]}
    precisions = {r["constexprs"].get("PRECISION") for r in report["rows"]
                  if r["group"] == "diversity" and "float32" in r["case"]}
    assert {"ieee", "tf32"} <= precisions


def test_kernels_compile_under_triton_3_6():
    """The H200 image's Triton (3.6) compiles every variant for sm_90a without a spill."""
    python = os.environ.get(TRITON36_ENV)
    if not python:
        pytest.skip(f"{TRITON36_ENV} is not set (a python with triton==3.6.0; .ci/run makes one)")
    report = compile_report(python, (90,))
    assert report["triton"].startswith("3.6"), report["triton"]
    for group in GROUPS:
        check_rows([r for r in report["rows"] if r["group"] == group], group, (90,))


def test_resident_programs_counts_registers_and_shared_memory():
    """sm_90's limits: registers per warp rounded up to 256, 1 KiB reserved per program."""
    from fastobj.benchmarks.kernel_variants import resident_programs
    assert resident_programs(179, 163840, 8) == 1  # registers and shared memory both bind
    assert resident_programs(128, 49152, 8) == 2   # 8 warps x 4096 registers: half the file
    assert resident_programs(129, 49152, 8) == 1   # 129 x 32 rounds up to 4352 per warp
    assert resident_programs(32, 114688, 4) == 2   # 2 x (112 + 1) KiB fit in 228 KiB
    assert resident_programs(32, 118784, 4) == 1   # 2 x (116 + 1) KiB do not
    assert resident_programs(16, 0, 1) == 32       # the cap on programs per SM


def test_occupancy_of_the_w_times_f_configurations():
    """The occupancy command compiles the headline W·F kernel under other tiles; its first row
    is the launcher's own configuration (apply_config's), which fits one program per SM
    without a spill."""
    from fastobj.kernels import diversity as kd
    own = kd.apply_config(512, 784, torch.bfloat16, (401408, 784, 1), "tf32", kd.MAX_BLOCK)
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRITON_INTERPRET", "FASTOBJ_SM_COUNT")}
    run = subprocess.run([sys.executable, "-m", "fastobj.benchmarks.kernel_variants",
                          "--limit", "2", "occupancy", "90"],
                         capture_output=True, text=True, env=env, cwd=str(REPO), timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    tiles = [own.constexprs[k] for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K")]
    assert rows[0]["config"] == tiles + [own.num_warps, own.num_stages]
    assert [row["launcher"] for row in rows] == [True, False]
    assert rows[0]["resident"] >= 1 and not rows[0]["spill_stores"]
    assert all(row["registers"] and row["shared"] > 0 for row in rows)
