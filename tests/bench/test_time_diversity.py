"""Diversity: fastobj vs the reference vs the classic O(B²) loop vs torch.compile."""
import pytest
import torch

from fastobj.benchmarks.ops import MODES

CUDA = torch.cuda.is_available()
REST = (512, 28, 28) if CUDA else (64, 14, 14)
BATCHES = (8, 128, 1024) if CUDA else (8, 32, 128, 512)
CLASSIC_MAX_BATCH = 128 if CUDA else 32  # the pairwise loop is O(B²): fastobj bench bounds it
COMPILE_BATCH = 128


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("provider", ["fastobj", "reference", "classic"])
def test_diversity(bench_op, provider, batch, mode):
    if provider == "classic" and batch > CLASSIC_MAX_BATCH:
        pytest.skip(f"classic pairwise loop above B={CLASSIC_MAX_BATCH} takes too long here; "
                    "`fastobj bench` escalates it under a time budget")
    bench_op("diversity", provider, (batch,) + REST, mode=mode)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_diversity_compiled(bench_op, mode):
    bench_op("diversity", "compile", (COMPILE_BATCH,) + REST, mode=mode)
