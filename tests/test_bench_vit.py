"""The ViT token benchmark's providers (benchmarks/vit_ops.py) compute the same values and
gradients, on a small odd-sized token batch, and its cost model has the stated form."""
import pytest
import torch

from fastobj.benchmarks import vit_ops


@pytest.mark.parametrize("op", sorted(vit_ops.FUNCTIONS))
def test_providers_agree(op):
    gen = torch.Generator().manual_seed(3)
    args = vit_ops.MAKERS[op]((3, 1 + 5 * 5, 7), torch.float64, torch.device("cpu"), gen)
    tokens = args[0].requires_grad_()
    results = {}
    for provider, fn in vit_ops.FUNCTIONS[op].items():
        out = fn(*args)
        upstream = torch.linspace(-1.0, 2.0, out.numel(), dtype=torch.float64).reshape(out.shape)
        results[provider] = (out, torch.autograd.grad(out, tokens, upstream)[0])
    out, grad = results["classic"]
    assert grad[:, 0].abs().max() == 0  # the class token is not read
    for provider, (other, other_grad) in results.items():
        torch.testing.assert_close(other, out, rtol=1e-10, atol=1e-12, msg=provider)
        torch.testing.assert_close(other_grad, grad, rtol=1e-10, atol=1e-12, msg=provider)


def test_contiguous_grid_is_the_patch_layout():
    tokens = torch.arange(2 * 10 * 3.0).reshape(2, 10, 3)
    grid = vit_ops.contiguous_grid(tokens)
    assert grid.is_contiguous() and grid.shape == (2, 3, 3, 3)
    assert grid[1, 2, 1, 0] == tokens[1, 1 + 1 * 3 + 0, 2]


def test_token_ops_join_fastobj_bench_with_the_kernels_cost():
    """fastobj bench times the token ops and rates them by the kernels' cost on the view."""
    from fastobj.benchmarks.ops import OPS
    from fastobj.kernels import diversity, dot_cossim

    dims = (64, 197, 768)
    for mode in ("fwd", "fwd+bwd"):
        cost = OPS["vit_diversity"].cost(dims, torch.float32, mode)
        assert (cost.bytes, cost.flops) == diversity.cost((64, 768, 196), torch.float32, mode)
        cost = OPS["vit_direction"].cost(dims, torch.bfloat16, mode)
        assert (cost.bytes, cost.flops) == dot_cossim.cost((64, 768, 196), (1, 768, 1),
                                                           torch.bfloat16, mode)
    assert set(OPS["vit_diversity"].providers) == {"fastobj", "reference", "classic"}
