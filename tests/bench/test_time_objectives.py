"""The cheap objectives (Alignment, ActivationInterpolation) vs the classic per-sample loops,
and one render step on the demo CNN with fastobj's objectives vs the classic ones."""
import pytest
import torch

from fastobj.benchmarks.ops import MODES

CUDA = torch.cuda.is_available()
DIMS = (256, 512, 14, 14) if CUDA else (64, 64, 14, 14)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", ["fastobj", "reference", "classic"])
@pytest.mark.parametrize("op", ["alignment", "activation_interpolation"])
def test_objective(bench_op, op, provider, mode):
    bench_op(op, provider, DIMS, mode=mode)


@pytest.mark.parametrize("provider", ["fastobj", "classic"])
def test_render_step(bench_op, provider):
    """One forward+backward of a render step on the demo CNN (64x64 images)."""
    bench_op("render_step", provider, (32, 3, 64, 64), mode="fwd+bwd")
