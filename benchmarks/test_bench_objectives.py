"""The cheap objectives: Alignment and ActivationInterpolation vs the classic per-sample loops."""
import pytest
import torch

from .harness import MODES

CUDA = torch.cuda.is_available()
DIMS = (256, 512, 14, 14) if CUDA else (64, 64, 14, 14)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", ["fastobj", "reference", "classic"])
@pytest.mark.parametrize("op", ["alignment", "activation_interpolation"])
def test_objective(bench_op, op, provider, mode):
    bench_op(op, provider, DIMS, mode=mode)
