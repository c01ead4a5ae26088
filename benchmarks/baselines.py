"""The classic algorithms, as Lucid, Lucent and Captum's optim module compute them.

These are benchmark baselines only: the library never calls them. Each one is written the way
those projects write it (Python loops over samples or sample pairs, eager expressions), so the
benchmarks can say how much the library's closed forms and fused kernels gain over what people
run today. ``tests/test_bench.py`` checks that each baseline agrees with the library's
reference in ``fastobj.functional`` (which also checks the baselines themselves).

Semantics follow fastobj's decisions where they differ from the originals on edge cases that
the benchmarks never hit (a channel index of 0 is channel 0; batches are at least 2).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = [
    "diversity", "total_variation", "dot_cossim", "direction", "alignment",
    "activation_interpolation",
]


def diversity(acts: torch.Tensor) -> torch.Tensor:
    """Classic Diversity: the O(B²) double loop over ordered sample pairs.

    acts: (B, C, ...). Each sample is flattened to F_i (C x P), its Gram matrix F_i F_iᵀ is
    divided by its Frobenius norm (``F.normalize`` over dims (1, 2), floor 1e-12), and the
    Frobenius inner products of every ordered pair i != j are summed one small op at a time.
    Returns ``-sum / B`` (0-dim). Each unordered pair is visited twice, as in the originals.
    """
    batch, channels = acts.shape[0], acts.shape[1]
    flat = acts.reshape(batch, channels, -1)
    grams = F.normalize(torch.matmul(flat, flat.transpose(1, 2)), p=2, dim=(1, 2))
    total = sum(sum((grams[i] * grams[j]).sum() for j in range(batch) if j != i)
                for i in range(batch))
    return -total / batch


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Classic anisotropic L1 total variation over the last two dims, as one eager expression."""
    down = x[..., 1:, :] - x[..., :-1, :]
    right = x[..., :, 1:] - x[..., :, :-1]
    return torch.sum(torch.abs(down)) + torch.sum(torch.abs(right))


def dot_cossim(x: torch.Tensor, y: torch.Tensor, cossim_pow: float = 0.0,
               eps: float = 1e-8) -> torch.Tensor:
    """Classic helper: sum of x*y over dim 1 (broadcasting), times clamp(cos, 0.1)^cossim_pow.

    The cosine is ``torch.cosine_similarity`` along dim 1 on the broadcast pair.
    """
    dot = torch.sum(x * y, dim=1)
    if cossim_pow == 0:
        return dot
    cos = torch.cosine_similarity(x, y, dim=1, eps=eps)
    return dot * torch.clamp(cos, min=0.1) ** cossim_pow


def direction(acts: torch.Tensor, vec: torch.Tensor, cossim_pow: float = 0.0) -> torch.Tensor:
    """Classic Direction on (B, C, H, W) activations; vec (C,) or, one per sample, (B, C).

    The vector is reshaped to (1 or B, C, 1, 1) and broadcast against the activation, as the
    originals do. Returns (B, H, W).
    """
    v = vec.reshape(-1, acts.shape[1], 1, 1)
    return dot_cossim(v, acts, cossim_pow)


def alignment(acts: torch.Tensor, decay_ratio: float = 2.0) -> torch.Tensor:
    """Classic Alignment: a Python loop over distances 1..4 and over the samples at each.

    ``-Σ_d Σ_i mean((S_i - S_{i+d})²) / decay_ratio^d``; shape (1,).
    """
    batch = acts.shape[0]
    total = acts.new_zeros(1)
    for d in (1, 2, 3, 4):
        for i in range(batch - d):
            total = total + ((acts[i] - acts[i + d]) ** 2).mean() / decay_ratio ** float(d)
    return -total


def activation_interpolation(acts1: torch.Tensor, acts2: torch.Tensor,
                             channel_index1: Optional[int] = None,
                             channel_index2: Optional[int] = None) -> torch.Tensor:
    """Classic ActivationInterpolation: a Python loop over the batch.

    Sample n contributes ``(1 - w_n)·mean(A1[n]) + w_n·mean(A2[n])`` with ``w_n = n / (B-1)``;
    a channel index (None: all channels) selects that channel first. Shape (1,).
    """
    if channel_index1 is not None:
        acts1 = acts1[:, channel_index1]
    if channel_index2 is not None:
        acts2 = acts2[:, channel_index2]
    batch = acts1.shape[0]
    total = acts1.new_zeros(1)
    for n in range(batch):
        w = n / (batch - 1)
        total = total + (1 - w) * acts1[n].mean() + w * acts2[n].mean()
    return total
