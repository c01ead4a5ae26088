"""The direct launch path (kernels/_common.py, launch_compiled) passes the compiled kernel's
launcher exactly what Triton's JITFunction.run passes it, under the suite's Triton and under
Triton 3.6 (the GPU image's; set FASTOBJ_TRITON36_PYTHON, as .ci/run does).

The check runs in a fresh process without TRITON_INTERPRET (tests/_direct_launch_check.py):
kernels are compiled for sm_90 and launched through a fake driver that records each launch.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

REPO = Path(__file__).resolve().parents[1]
TRITON36_ENV = "FASTOBJ_TRITON36_PYTHON"


def check(python: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRITON_INTERPRET", "FASTOBJ_SM_COUNT")}
    run = subprocess.run([python, str(REPO / "tests" / "_direct_launch_check.py")],
                         capture_output=True, text=True, env=env, cwd=str(REPO), timeout=600)
    assert run.returncode == 0, f"direct launch check failed:\n{run.stderr[-4000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


def assert_same_launches(report: dict):
    results = report["results"]
    assert results.pop("alignment-blind key detected") is True
    assert len(results) == 6
    for case, result in results.items():
        assert result["launches"] >= 2, case
        # every launch of these cases (each a distinct kernel and specialization) was cached
        # for the direct path: none fell back to Triton's for good
        assert result["direct"] == result["launches"], (case, result)
        for mode in ("same", "same with a hook"):
            assert result[mode], (f"{case}: the direct launch differs from Triton's ({mode}, "
                                  f"Triton {report['triton']})")


@pytest.mark.slow
def test_direct_launch_matches_triton():
    assert_same_launches(check(sys.executable))


@pytest.mark.slow
def test_direct_launch_matches_triton_3_6():
    python = os.environ.get(TRITON36_ENV)
    if not python:
        pytest.skip(f"{TRITON36_ENV} is not set (a python with triton==3.6.0; .ci/run makes one)")
    report = check(python)
    assert report["triton"].startswith("3.6"), report["triton"]
    assert_same_launches(report)


def test_direct_launch_can_be_switched_off():
    """FASTOBJ_DIRECT_LAUNCH=0 sends every launch through Triton's own path."""
    env = dict(os.environ, FASTOBJ_DIRECT_LAUNCH="0")
    run = subprocess.run([sys.executable, "-c", "from fastobj.kernels import _common; "
                          "print(_common.DIRECT_LAUNCH)"],
                         capture_output=True, text=True, env=env, cwd=str(REPO), timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "False"


def test_direct_launch_setting_is_checked():
    """A value other than 0 or 1 is refused with an error that names the variable."""
    env = dict(os.environ, FASTOBJ_DIRECT_LAUNCH="off")
    run = subprocess.run([sys.executable, "-c", "import fastobj.kernels._common"],
                         capture_output=True, text=True, env=env, cwd=str(REPO), timeout=300)
    assert run.returncode != 0
    assert "ValueError: FASTOBJ_DIRECT_LAUNCH must be 0 or 1, got 'off'" in run.stderr
