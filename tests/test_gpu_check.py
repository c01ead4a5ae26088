"""benchmarks/gpu_check.sh without a GPU: ``--plan`` lists its phases and budgets (9 minutes in
all), and ``--rehearse`` runs every phase on CPU (Triton's interpreter, tiny shapes), so an
error in the script or in what it calls shows here first, not on a lent GPU."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
PHASES = ["setup", "warm", "headline", "compile", "classic", "rest", "profile", "tier"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRITON_INTERPRET", "FASTOBJ_BACKEND", "FASTOBJ_SM_COUNT")}
    return dict(env, PYTHON=sys.executable, **extra)


def test_plan_lists_phases_budgets_and_variants():
    run = subprocess.run(["bash", str(SCRIPT), "--plan"], capture_output=True, text=True,
                         env=_env(), timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = dict(re.findall(r"^(\w+)\s+(\d+)s\b", run.stdout, re.M))
    assert list(lines) == PHASES + ["total"], run.stdout
    assert sum(int(lines[p]) for p in PHASES) == int(lines["total"]) <= 540
    warm = re.search(r"^warm\s+\d+s\s+(\d+) kernel variants", run.stdout, re.M)
    assert warm and int(warm.group(1)) > 50, run.stdout


@pytest.mark.slow
def test_rehearsal_runs_every_phase(tmp_path):
    out = tmp_path / "out"
    run = subprocess.run(["bash", str(SCRIPT), "--rehearse"], capture_output=True, text=True,
                         env=_env(OUT=str(out), TMPDIR=str(tmp_path),
                                  TRITON_CACHE_DIR=str(tmp_path / "triton")),
                         timeout=600, cwd=str(tmp_path))
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-6000:]
    for phase in PHASES:
        assert re.search(rf"^== {phase}: exit status 0 after", log, re.M), (phase, log[-4000:])
    files = sorted(p.name for p in out.iterdir())
    assert files == ["archive.tar.gz", "bench.csv", "diversity.png", "gpu_check.log",
                     "profile.txt", "summary.txt", "warm.jsonl"]
    warm = [json.loads(line) for line in (out / "warm.jsonl").read_text().splitlines()]
    assert len(warm) == 3 and not any("error" in row for row in warm)
    summary = (out / "summary.txt").read_text()
    assert [s for s in re.findall(r"^=== (\w+) ===", summary, re.M)] == PHASES[2:6]
    assert re.search(r"^diversity\s+fwd\+bwd\s+4x16x4x4\s+bfloat16\s+fastobj\s+"
                     r"triton-interpreter", summary, re.M), summary
    profile = (out / "profile.txt").read_text()
    assert "tensor-core instructions {'HMMA'" in profile, profile
    assert "_w_times_f_kernel" in profile and "eager" in profile
    # the W·F kernel timed under the launcher's tiles and each other configuration
    from fastobj.benchmarks.kernel_variants import WF_CONFIGS
    rows = re.findall(r"^  \((\d+), (\d+), (\d+), (\d+), (\d+)\) .* TFLOP/s .*difference "
                      r"(\S+)", profile, re.M)
    assert len(rows) == 1 + len(WF_CONFIGS), profile
    assert {tuple(map(int, r[:5])) for r in rows[1:]} == set(WF_CONFIGS)
    assert all(float(r[5]) <= 5e-2 for r in rows), profile


def test_bench_writes_its_table_on_sigterm(tmp_path):
    """`timeout` ends a phase with SIGTERM: fastobj bench then writes the points it has and
    exits 143 (the check's evidence when a phase is cut)."""
    proc = subprocess.Popen([sys.executable, "-m", "fastobj", "bench", "--quick", "--rounds",
                             "1000", "--out", str(tmp_path), "--run-id", "cut",
                             "--no-progress"], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    table = tmp_path / "cut" / "table.txt"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (
            table.exists() and "round(s)" in table.read_text()
            and "diversity" in table.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, output[-3000:]
    text = table.read_text()
    assert "finished" in text and "interrupted (SIGTERM)" in text, text
    assert (tmp_path / "cut" / "bench.csv").read_text().count("\n") > 1
