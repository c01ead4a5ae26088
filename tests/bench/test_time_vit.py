"""Diversity and Direction on ViT-B/16-sized tokens (B, 197, 768): fastobj's Tokens view
beside the reference on the same view and permute + contiguous + the classic loop, fwd+bwd."""
import pytest
import torch

from fastobj.benchmarks.presets import VIT_TOKENS

CUDA = torch.cuda.is_available()
BATCH = 256 if CUDA else 16


@pytest.mark.parametrize("provider", ["fastobj", "reference", "classic"])
@pytest.mark.parametrize("op", ["vit_diversity", "vit_direction"])
def test_vit_tokens(bench_op, op, provider):
    bench_op(op, provider, (BATCH,) + VIT_TOKENS, mode="fwd+bwd")
