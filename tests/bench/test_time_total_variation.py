"""Total variation: fastobj vs the reference vs the classic eager expression vs torch.compile."""
import pytest
import torch

from fastobj.benchmarks.ops import MODES

CUDA = torch.cuda.is_available()
SHAPES = ((64, 3, 512, 512),) if CUDA else ((1, 3, 224, 224), (16, 3, 224, 224))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims", SHAPES, ids=lambda d: "x".join(map(str, d)))
@pytest.mark.parametrize("provider", ["fastobj", "reference", "classic"])
def test_total_variation(bench_op, provider, dims, mode):
    bench_op("total_variation", provider, dims, mode=mode)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_total_variation_compiled(bench_op, mode):
    bench_op("total_variation", "compile", SHAPES[-1], mode=mode)
