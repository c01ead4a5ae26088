"""Objectives over a batch sharded across the ranks of a torch.distributed process group.

Every rank computes the value of the whole batch. The gradient that reaches each rank's
activations is that of the global value with respect to them: the cross-rank sum below is
differentiated as the identity (each rank already holds the full value, so summing gradients
over ranks would count it once per rank), and the samples a rank borrows from its successors
(for Alignment) send their gradients back to their owners.
"""
from __future__ import annotations

from typing import Any, List, Sequence

import torch
import torch.distributed as dist

from . import functional as Fn


class _AllReduceReplicated(torch.autograd.Function):
    """Sum over ranks forward; identity backward (the summed value is replicated)."""

    @staticmethod
    def forward(ctx, group: Any, *tensors: torch.Tensor):
        outputs = [t.clone() for t in tensors]
        for t in outputs:
            dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
        return tuple(outputs)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        return (None,) + grads


def all_reduce_replicated(tensors: Sequence[torch.Tensor], group: Any) -> List[torch.Tensor]:
    """Cross-rank sums of ``tensors`` whose backward passes each rank's gradient through."""
    return list(_AllReduceReplicated.apply(group, *tensors))


class _GatherHeads(torch.autograd.Function):
    """All-gather equal-shaped tensors; backward returns to each rank the sum of the gradients
    that all ranks computed for its tensor."""

    @staticmethod
    def forward(ctx, group: Any, tensor: torch.Tensor):
        ctx.group = group
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, tensor.contiguous(), group=group)
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return None, grad[dist.get_rank(ctx.group)]


def alignment_distributed(s: torch.Tensor, decay_ratio: float, group: Any) -> torch.Tensor:
    """Alignment of the batch formed by concatenating every rank's ``s`` in rank order.

    Each rank shares its first (up to) four samples; a rank pairs its own samples with each
    other and with the shared samples of the ranks after it, then the pair sums are added
    across ranks. Shape (1,), in s's dtype.
    """
    reach = Fn.ALIGNMENT_MAX_DISTANCE
    rank = dist.get_rank(group)
    count = s.shape[0]
    counts = torch.tensor([count], device=s.device)
    all_counts = [torch.empty_like(counts) for _ in range(dist.get_world_size(group))]
    dist.all_gather(all_counts, counts, group=group)
    head = s[:reach]
    if head.shape[0] < reach:
        head = torch.cat([head, head.new_zeros((reach - head.shape[0],) + head.shape[1:])])
    heads = _GatherHeads.apply(group, head)
    following = [heads[r, :min(int(all_counts[r]), reach)]
                 for r in range(rank + 1, len(all_counts))]
    extended = torch.cat([s] + following)[:count + reach]
    acc = Fn.accumulation_dtype(s.dtype)
    # Start from an empty sum over the gathered heads (0, in their graph): every rank's
    # backward must reach _GatherHeads, whose all-reduce the other ranks wait for, even where
    # no pair uses a later rank's samples (the last rank, or a rank of one sample).
    local = heads.reshape(-1)[:0].sum().to(acc)
    for d in range(1, reach + 1):
        pairs = min(count, extended.shape[0] - d)
        if pairs > 0:
            local = local + Fn.alignment_pairs_ref(extended[:pairs], extended[d:d + pairs], d,
                                                   decay_ratio)
    (total,) = all_reduce_replicated([local], group)
    return (-total).reshape(1).to(s.dtype)
