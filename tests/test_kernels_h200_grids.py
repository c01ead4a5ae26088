"""The interpreter tier (tier 2, docs/testing.md) again with the grids an H200 gets
(FASTOBJ_SM_COUNT=132): the launchers' GPU tile and grid choices (many short TV spans, SM-count
batch splits in Diversity, the padding- and wave-aware BLOCK_P of dot_cossim) on CPU tensors,
against the references.

The kernel test modules run in a subprocess (the variable is read at every launch, so a
fresh process keeps it out of every other test), the slow, `gpu` and torch.compile tests
left out."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastobj.backend import interpreter_enabled

REPO = Path(__file__).resolve().parents[1]
MODULES = ["test_kernel_total_variation.py", "test_kernel_dot_cossim.py",
           "test_kernel_diversity.py"]


@pytest.mark.slow
@pytest.mark.skipif(not interpreter_enabled(), reason="runs the kernels in Triton's interpreter")
def test_kernel_tiers_pass_with_h200_grids():
    env = dict(os.environ, FASTOBJ_SM_COUNT="132", TRITON_INTERPRET="1")
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
               "-m", "not slow and not gpu", "-k", "not torch_compile",
               *[f"tests/{m}" for m in MODULES]]
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=str(REPO),
                         timeout=900)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
