"""Direction (dot product times clamped cosine): shared and per-sample vectors."""
import pytest
import torch

from fastobj.benchmarks.ops import MODES

CUDA = torch.cuda.is_available()
DIMS = (256, 1024, 14, 14) if CUDA else (16, 512, 14, 14)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op", ["direction", "direction_per_sample"])
@pytest.mark.parametrize("provider", ["fastobj", "reference", "classic"])
def test_direction(bench_op, provider, op, mode):
    bench_op(op, provider, DIMS, mode=mode)


@pytest.mark.slow
@pytest.mark.parametrize("op", ["direction", "direction_per_sample"])
def test_direction_compiled(bench_op, op):
    bench_op(op, "compile", DIMS, mode="fwd+bwd")
