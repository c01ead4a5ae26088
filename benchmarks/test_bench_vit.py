"""Diversity and Direction on ViT-B/16-sized tokens (B, 197, 768): fastobj's Tokens view
beside permute + contiguous + the classic loop (see vit_ops.py), forward and backward."""
import pytest
import torch

from fastobj.backend import interpreter_enabled

from . import vit_ops

CUDA = torch.cuda.is_available()
BATCH = 256 if CUDA else 64


@pytest.mark.parametrize("provider", vit_ops.PROVIDERS)
@pytest.mark.parametrize("op", sorted(vit_ops.FUNCTIONS))
def test_vit_tokens(benchmark, op, provider):
    if not CUDA and interpreter_enabled():
        pytest.skip("TRITON_INTERPRET is set: unset it to benchmark the library")
    device = torch.device("cuda" if CUDA else "cpu")
    step = vit_ops.prepare(op, provider, BATCH, device=device)
    flops, moved, _ = vit_ops.cost_model(op, (BATCH, vit_ops.TOKENS, vit_ops.CHANNELS),
                                         torch.float32, "fwd+bwd")
    benchmark.group = f"{op} fwd+bwd B={BATCH}"
    benchmark.name = provider
    benchmark.extra_info.update({"op": op, "provider": provider, "flops": flops,
                                 "bytes": moved, "device": str(device)})
    step()  # warm-up
    benchmark.pedantic(step, rounds=3, iterations=1)
