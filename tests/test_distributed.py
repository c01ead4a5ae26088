"""Diversity and Alignment over a batch sharded across processes (gloo, CPU).

2 and 3 processes are started (torch.multiprocessing, from a fork server that has imported
torch once, so the ranks start in well under a second); each holds a shard of one float64
batch (uneven shards, including shards of one sample and shards smaller than Alignment's reach
of 4, and a subgroup of the world), evaluates the objective with ``process_group``, and
back-propagates a non-unit upstream gradient. Every rank's value must equal the value of one
process holding the whole batch, and each rank's gradient the matching rows of that process's
gradient. Two cases wrap a model in DistributedDataParallel and check that its averaged
parameter gradients, with the objective scaled by the number of ranks, are the full-batch ones.

Bounded: the collectives time out after GLOO_TIMEOUT s, and the launcher kills the processes
it started when they overrun.
"""
from __future__ import annotations

import os
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

import fastobj as fo
from _ranks import run_ranks

T = "act"
C, H, W = 3, 2, 3
GLOO_TIMEOUT = 20  # seconds a collective may wait (a hang in backward shows as a timeout)
LAUNCH_TIMEOUT = 50  # seconds for one group of processes, start-up included
UPSTREAM = 1.7  # d(loss)/d(value): the gradients must scale with it

# world size -> cases (name, objective kind, shard sizes, group ranks or None for the world)
CASES = {
    2: [("div-3-5", "diversity", (3, 5), None),
        ("div-1-1", "diversity", (1, 1), None),
        ("align-1-6", "alignment", (1, 6), None),
        ("align-5-2", "alignment", (5, 2), None),
        ("align-1-1", "alignment", (1, 1), None),
        ("align-3-3", "alignment", (3, 3), None),
        ("combo-2-7", "combo", (2, 7), None),
        ("ddp-combo-3-2", "ddp-combo", (3, 2), None)],
    3: [("div-1-4-2", "diversity", (1, 4, 2), None),
        ("align-1-4-2", "alignment", (1, 4, 2), None),
        ("align-2-1-3", "alignment", (2, 1, 3), None),
        ("align-1-1-1", "alignment", (1, 1, 1), None),
        ("align-6-5-1", "alignment", (6, 5, 1), None),
        ("combo-3-1-2", "combo", (3, 1, 2), None),
        ("div-sub-2-3", "diversity", (2, 3), (0, 2)),
        ("align-sub-3-2", "alignment", (3, 2), (0, 2)),
        ("ddp-diversity-1-4-2", "ddp-diversity", (1, 4, 2), None)],
}


def make_objective(kind, group=None):
    if kind == "diversity":
        return fo.Diversity(T, process_group=group)
    if kind == "alignment":
        return fo.Alignment(T, decay_ratio=3.0, process_group=group)
    return 1.5 * fo.Diversity(T, process_group=group) - fo.Alignment(T, 2.0, process_group=group)


def make_model():
    """A small float64 network whose output is the activation (for the DDP cases)."""
    g = torch.Generator().manual_seed(7)
    model = nn.Sequential(nn.Conv2d(C, 4, 1), nn.Tanh()).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def full_batch(index, total):
    g = torch.Generator().manual_seed(100 + index)
    return torch.randn(total, C, H, W, generator=g, dtype=torch.float64)


def _worker(rank, world, init_file, out_dir):
    """One rank: every case of this world size, in the same order on every rank."""
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=GLOO_TIMEOUT))
    try:
        results = {}
        groups = {ranks: dist.new_group(list(ranks)) for ranks in
                  sorted({r for *_, r in CASES[world] if r is not None})}
        for index, (name, kind, shards, ranks) in enumerate(CASES[world]):
            group = dist.group.WORLD if ranks is None else groups[ranks]
            members = list(range(world)) if ranks is None else list(ranks)
            if rank not in members:
                continue
            position = members.index(rank)
            start = sum(shards[:position])
            x = full_batch(index, sum(shards))[start:start + shards[position]]
            if kind.startswith("ddp-"):
                # DDP averages parameter gradients over the ranks, while every rank's gradient
                # is already a share of the gradient of the one global value: scaling by the
                # number of ranks makes the averaged gradient that of the global value.
                model = make_model()
                ddp = DistributedDataParallel(model, process_group=group)  # alive in backward
                value = make_objective(kind[4:], group)({T: ddp(x)})
                (value.sum() * UPSTREAM * len(members)).backward()
                results[name] = (value.detach(), [p.grad.clone() for p in model.parameters()],
                                 start)
                continue
            x.requires_grad_()
            value = make_objective(kind, group)({T: x})
            (value.sum() * UPSTREAM).backward()
            results[name] = (value.detach(), x.grad.clone(), start)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    os._exit(0)  # skip the interpreter's slow teardown; the results are on disk


def launch(world, tmp_path):
    init_file = tmp_path / "init"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    run_ranks(_worker, (world, str(init_file), str(out_dir)), world, LAUNCH_TIMEOUT,
              preload=["torch", "torch.distributed", "fastobj", __name__])
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(world)]


@pytest.mark.parametrize("world", sorted(CASES))
def test_sharded_equals_whole_batch(world, tmp_path):
    per_rank = launch(world, tmp_path)
    for index, (name, kind, shards, ranks) in enumerate(CASES[world]):
        members = list(range(world)) if ranks is None else list(ranks)
        if kind.startswith("ddp-"):
            model = make_model()
            expected = make_objective(kind[4:])({T: model(full_batch(index, sum(shards)))})
            (expected.sum() * UPSTREAM).backward()
            for rank in members:
                value, grads = per_rank[rank][name][:2]
                torch.testing.assert_close(value, expected.detach(), rtol=1e-12, atol=1e-12)
                for got, p in zip(grads, model.parameters(), strict=True):
                    torch.testing.assert_close(got, p.grad, rtol=1e-10, atol=1e-12,
                                               msg=lambda m: f"{name}, rank {rank}: {m}")
            continue
        x = full_batch(index, sum(shards)).requires_grad_()
        expected = make_objective(kind)({T: x})
        (expected.sum() * UPSTREAM).backward()
        seen = 0
        for rank in members:
            value, grad, start = per_rank[rank][name]
            assert value.shape == expected.shape and value.dtype == expected.dtype, name
            torch.testing.assert_close(value, expected.detach(), rtol=1e-12, atol=1e-12,
                                       msg=lambda m: f"{name}, rank {rank} value: {m}")
            torch.testing.assert_close(grad, x.grad[start:start + grad.shape[0]], rtol=1e-10,
                                       atol=1e-12,
                                       msg=lambda m: f"{name}, rank {rank} gradient: {m}")
            seen += grad.shape[0]
        assert seen == x.shape[0]
        for rank in set(range(world)) - set(members):
            assert name not in per_rank[rank]
