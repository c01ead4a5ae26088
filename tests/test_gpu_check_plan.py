"""benchmarks/gpu_check.sh --plan runs on a machine without a GPU: it lists the check's phases
with their budgets (7 minutes in all) and the kernel variants the warm phase compiles."""
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_plan_lists_phases_budgets_and_variants():
    env = dict(os.environ, PYTHON=sys.executable)
    run = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--plan"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = dict(re.findall(r"^(\w+)\s+(\d+)s\b", run.stdout, re.M))
    phases = ["setup", "warm", "variants", "bench", "tier"]
    assert list(lines) == phases + ["total"], run.stdout
    assert sum(int(lines[p]) for p in phases) == int(lines["total"]) <= 420
    warm = re.search(r"^warm\s+\d+s\s+(\d+), in parallel", run.stdout, re.M)
    assert warm and int(warm.group(1)) > 50, run.stdout
