"""Objectives over a batch sharded across the ranks of a torch.distributed process group.

Every rank computes the value of the whole batch. The gradient that reaches each rank's
activations is that of the global value with respect to them: the cross-rank sum below is
differentiated as the identity (each rank already holds the full value, so summing gradients
over ranks would count it once per rank), and the samples a rank borrows from its successors
(for Alignment) send their gradients back to their owners.

Failure behaviour. The first collective of each objective is an all-gather of one fixed-size
int64 header per rank (:func:`agree`): ok flag, batch count, objective name, dtype, device type
and sample shape. A rank whose input is bad (no activation for the target, a non-floating or
wrongly ranked tensor, an empty batch selection, or Diversity's local sums raising) still
enters it, flagged. Every rank then checks all headers the same way, so either all go on or
all raise the same ValueError naming the objective, the ranks (global ranks) and what differs;
no rank is left inside a collective. Only when a rank is flagged does a second all-gather carry
the local error messages. Alignment's header replaces its all-gather of batch counts: no extra
round. Diversity must agree on the channel count before it can all-reduce the C x C sums, so
it pays the header round, but packs S and Σ‖ĝ_i‖² into one all-reduce and takes the batch
count from the header: two rounds where it had three all-reduces (S, sq, count).

What the header cannot catch: collectives only meet among ranks that call them on the same
group. A rank that never calls the objective (it raised earlier, skipped the call, or was given
``process_group=None``) or calls it on another group object leaves its peers waiting until the
group's timeout; torch then raises in them (gloo: "Timed out waiting ... for recv"), or at once
if the missing rank's process has exited (gloo: "Connection closed by peer"). A fingerprint of
the group in the header would add nothing: ranks whose headers meet share the group. A rank
that is not a member of ``process_group`` is refused at once, before any collective.

Backward: Diversity communicates nothing (its all-reduce is differentiated as the identity).
Alignment all-reduces the gradient of the gathered heads, whose shape and dtype were agreed in
the forward (autograd hands a backward the gradient in its output's shape and dtype), so it
cannot mismatch; non-finite gradients pass through as values, not errors. What can hang is a
rank that does not back-propagate through the value, or does so a different number of times:
its peers wait in that all-reduce until the timeout. That includes a rank whose ``backward``
call torch refuses: an upstream gradient of the wrong shape is refused before any node runs,
so no status can be sent from there (one of another dtype is cast, and runs).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

from . import functional as Fn

_TEXT_SLOTS = 4  # int64 slots per text field (objective, dtype, device): 32 ASCII bytes
_SAMPLE_DIMS = 8  # sample dims sent exactly; further dims are folded into the last slot
_MESSAGE_BYTES = 512  # bytes of each rank's error message sent when a rank is flagged


class ShardHeader(NamedTuple):
    """One rank's header, decoded."""
    ok: bool
    count: int
    objective: str
    dtype: str
    device: str
    sample_shape: Tuple[int, ...]


def _text_codes(text: str) -> List[int]:
    raw = text.encode("ascii", "replace")[:8 * _TEXT_SLOTS].ljust(8 * _TEXT_SLOTS, b"\0")
    return [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]


def _text(codes: Sequence[int]) -> str:
    return b"".join(c.to_bytes(8, "little") for c in codes).rstrip(b"\0").decode("ascii")


def _header(objective: str, shard: Optional[torch.Tensor]) -> List[int]:
    """[ok, count, number of sample dims, objective, dtype, device, sample dims] as int64s,
    the same length for every shard; only the objective for a failed one."""
    if shard is None:
        return [0, 0, 0] + _text_codes(objective) + [0] * (2 * _TEXT_SLOTS + _SAMPLE_DIMS)
    dims = list(shard.shape[1:])
    if len(dims) > _SAMPLE_DIMS:
        dims[_SAMPLE_DIMS - 1:] = [torch.Size(dims[_SAMPLE_DIMS - 1:]).numel()]
    return ([1, shard.shape[0], len(dims)] + _text_codes(objective)
            + _text_codes(str(shard.dtype).removeprefix("torch."))
            + _text_codes(shard.device.type) + dims + [0] * (_SAMPLE_DIMS - len(dims)))


def _decode(header: List[int]) -> ShardHeader:
    ok, count, ndim = header[:3]
    texts = [_text(header[3 + i * _TEXT_SLOTS:3 + (i + 1) * _TEXT_SLOTS]) for i in range(3)]
    dims = header[3 + 3 * _TEXT_SLOTS:]
    return ShardHeader(bool(ok), count, *texts, tuple(dims[:ndim]))


def _collective_device(group: Any, shard: Optional[torch.Tensor]) -> torch.device:
    """Where the header goes: CPU when the group's backend takes CPU tensors (gloo, mpi); else
    (NCCL takes only accelerator tensors) the shard's accelerator, or, on a rank without a
    usable shard, the current one (so NCCL users must call torch.cuda.set_device, as for
    torch's own object collectives)."""
    backend = str(dist.get_backend(group))
    accelerator = torch.accelerator.current_accelerator()
    if "gloo" in backend or "mpi" in backend or accelerator is None:
        return torch.device("cpu")
    if shard is not None and shard.device.type == accelerator.type:
        return shard.device
    return torch.device(accelerator.type, torch.accelerator.current_device_index())


def _all_gather_rows(row: torch.Tensor, group: Any) -> List[List[int]]:
    """Every rank's ``row``, in group rank order, read back to the host in one copy."""
    parts = [torch.empty_like(row) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, row, group=group)
    return torch.stack(parts).tolist()


def _ranks_text(ranks: List[int]) -> str:
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))


def _differences(label: str, values: Dict[int, Any]) -> List[str]:
    """'<label> differs (v1 on ranks a, b; v2 on rank c)' when the ranks disagree, else []."""
    by_value: Dict[Any, List[int]] = defaultdict(list)
    for rank, value in values.items():
        by_value[value].append(rank)
    if len(by_value) < 2:
        return []
    return [f"{label} differs (" + "; ".join(f"{value} on {_ranks_text(ranks)}"
                                             for value, ranks in by_value.items()) + ")"]


def _local_message(error: Exception, objective: str) -> str:
    text = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
    return f"{type(error).__name__}: {text.removeprefix(objective + ': ')}"


def agree(objective: str, group: Any, local: Callable[[], Tuple[torch.Tensor, ...]],
          compared: Tuple[str, Callable[[Tuple[int, ...]], Any]]
          ) -> Tuple[Tuple[torch.Tensor, ...], List[ShardHeader]]:
    """Run ``local()`` -> (shard, *more) on this rank and agree on it with every rank of
    ``group`` in one all-gather; returns local()'s outputs and every rank's decoded header.

    ``compared`` is (label, key): the part of the sample shape the ranks must share (key of
    shard.shape[1:]). Raises the same ValueError on every rank when any rank failed in
    ``local`` or the ranks differ in objective, dtype, device type or that key.
    """
    if dist.get_rank(group) < 0:
        raise ValueError(f"{objective}: this process (global rank {dist.get_rank()}) is not a "
                         "member of process_group")
    try:
        outputs, error = local(), None
    except Exception as caught:  # reported to every rank below, then re-raised from
        outputs, error = None, caught
    mine = None if outputs is None else outputs[0]
    device = _collective_device(group, mine)
    header = _header(objective, mine)
    rows = _all_gather_rows(torch.tensor(header, dtype=torch.int64, device=device), group)
    ranks = dist.get_process_group_ranks(group)
    shards = dict(zip(ranks, map(_decode, rows)))
    problems = []
    if not all(shard.ok for shard in shards.values()):
        text = b"" if error is None else _local_message(error, objective).encode()
        if len(text) > _MESSAGE_BYTES:
            text = text[:_MESSAGE_BYTES - 3] + b"..."
        buffer = torch.tensor(list(text.ljust(_MESSAGE_BYTES, b"\0")), dtype=torch.uint8,
                              device=device)
        messages = _all_gather_rows(buffer, group)
        problems += [f"rank {rank} raised " + bytes(message).rstrip(b"\0").decode(errors="ignore")
                     for rank, message in zip(ranks, messages) if not shards[rank].ok]
    problems += _differences("objective", {r: s.objective for r, s in shards.items()})
    healthy = {r: s for r, s in shards.items() if s.ok}
    label, key = compared
    problems += _differences("dtype", {r: s.dtype for r, s in healthy.items()})
    problems += _differences("device type", {r: s.device for r, s in healthy.items()})
    problems += _differences(label, {r: key(s.sample_shape) for r, s in healthy.items()})
    if problems:
        names = dict.fromkeys(s.objective for s in shards.values())
        owner = objective if len(names) == 1 else " / ".join(names)  # the same on every rank
        raise ValueError(f"{owner} across the {len(ranks)} ranks of process_group: "
                         + "; ".join(problems)) from error
    return outputs, list(shards.values())


CHANNELS = ("channel count", lambda sample_shape: sample_shape[0])
SAMPLE_SHAPE = ("sample shape", lambda sample_shape: sample_shape)


class _AllReduceReplicated(torch.autograd.Function):
    """Sum over ranks forward (one all-reduce of the tensors packed together); identity
    backward (the summed value is replicated)."""

    @staticmethod
    def forward(ctx, group: Any, *tensors: torch.Tensor):
        packed = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=group)
        parts = packed.split([t.numel() for t in tensors])
        return tuple(part.reshape(t.shape) for part, t in zip(parts, tensors))

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        return (None,) + grads


def all_reduce_replicated(tensors: Sequence[torch.Tensor], group: Any) -> List[torch.Tensor]:
    """Cross-rank sums of same-dtype ``tensors`` whose backward passes each rank's gradient
    through."""
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


def diversity_distributed(objective: str, select: Callable[[], torch.Tensor],
                          group: Any) -> torch.Tensor:
    """Diversity of the batch formed by every rank's ``select()`` (a (B, C, ...) shard), 0-dim.

    The local sums are computed before the header round, so a failure there is reported to
    every rank too. Ranks must share C and dtype; spatial sizes may differ.
    """
    def local():
        s = select()
        return (s,) + tuple(Fn.diversity_sums(s.reshape(s.shape[0], s.shape[1], -1)))

    (s, sums, sq), shards = agree(objective, group, local, CHANNELS)
    sums, sq = all_reduce_replicated([sums, sq], group)
    return Fn.diversity_value(sums, sq, sum(shard.count for shard in shards)).to(s.dtype)


def alignment_distributed(objective: str, select: Callable[[], torch.Tensor],
                          decay_ratio: float, group: Any) -> torch.Tensor:
    """Alignment of the batch formed by concatenating every rank's ``select()`` in rank order.

    Each rank shares its first (up to) four samples; a rank pairs its own samples with each
    other and with the shared samples of the ranks after it, then the pair sums are added
    across ranks. Ranks must share the sample shape and dtype. Shape (1,), in the dtype.
    """
    (s,), shards = agree(objective, group, lambda: (select(),), SAMPLE_SHAPE)
    reach = Fn.ALIGNMENT_MAX_DISTANCE
    rank = dist.get_rank(group)
    count = s.shape[0]
    head = s[:reach]
    if head.shape[0] < reach:
        head = torch.cat([head, head.new_zeros((reach - head.shape[0],) + head.shape[1:])])
    heads = _GatherHeads.apply(group, head)
    following = [heads[r, :min(shards[r].count, reach)] for r in range(rank + 1, len(shards))]
    extended = torch.cat([s] + following)[:count + reach]
    acc = Fn.accumulation_dtype(s.dtype)
    # Start from an empty sum over the gathered heads (0, in their graph): every rank's
    # backward must reach _GatherHeads, whose all-reduce the other ranks wait for, even where
    # no pair uses a later rank's samples (the last rank, or a rank of one sample).
    local = Fn.zero_in_graph(heads).to(acc)
    for d in range(1, reach + 1):
        pairs = min(count, extended.shape[0] - d)
        if pairs > 0:
            local = local + Fn.alignment_pairs_ref(extended[:pairs], extended[d:d + pairs], d,
                                                   decay_ratio)
    (total,) = all_reduce_replicated([local], group)
    return (-total).reshape(1).to(s.dtype)
