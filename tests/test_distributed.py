"""Diversity and Alignment over a batch sharded across processes (gloo, CPU).

2 and 3 processes are started (torch.multiprocessing, from a fork server that has imported
torch once, so the ranks start in well under a second); each holds a shard of one float64
batch (uneven shards, including shards of one sample and shards smaller than Alignment's reach
of 4, and a subgroup of the world), evaluates the objective with ``process_group``, and
back-propagates a non-unit upstream gradient. Every rank's value must equal the value of one
process holding the whole batch, and each rank's gradient the matching rows of that process's
gradient. Two cases wrap a model in DistributedDataParallel and check that its averaged
parameter gradients, with the objective scaled by the number of ranks, are the full-batch ones.

The fault cases give one rank (or two) bad input and check that every rank raises the same
ValueError at once, with no rank left inside a collective (the group stays usable), and show
what happens where no check can help: ranks calling on different groups wait for those groups'
(short) timeout; a rank whose process exits makes its peers fail at once.

Bounded: the collectives time out after GLOO_TIMEOUT s, and the launcher kills the processes
it started when they overrun.
"""
from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

import fastobj as fo
from _ranks import run_ranks
from fastobj.distributed import ShardHeader, _decode, _header

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


def init_gloo(rank, world, init_file, timeout):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=timeout))


def _worker(rank, world, init_file, out_dir):
    """One rank: every case of this world size, in the same order on every rank."""
    init_gloo(rank, world, init_file, GLOO_TIMEOUT)
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


def launch(worker, world, tmp_path, deadline=LAUNCH_TIMEOUT):
    init_file = tmp_path / "init"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    run_ranks(worker, (world, str(init_file), str(out_dir)), world, deadline,
              preload=["torch", "torch.distributed", "fastobj", __name__])
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(world)]


@pytest.mark.parametrize("world", sorted(CASES))
def test_sharded_equals_whole_batch(world, tmp_path):
    per_rank = launch(_worker, world, tmp_path)
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


# --------------------------------------------------------------------------------------------
# Faults: one rank's bad input must make every rank raise, at once.
# --------------------------------------------------------------------------------------------

def test_header_round_trip():
    """What a rank sends in the header decodes to what the others compare; sample dims past
    the eighth fold into one, so every header has the same length."""
    shard = torch.zeros(5, 3, 2, 1, 2, 1, 1, 2, 3, 2, 2, dtype=torch.bfloat16)
    header = _header("Alignment", shard)
    assert len(header) == len(_header("Diversity", None))
    assert _decode(header) == ShardHeader(True, 5, "Alignment", "bfloat16", "cpu",
                                          (3, 2, 1, 2, 1, 1, 2, 12))
    assert _decode(_header("Diversity", None)) == ShardHeader(False, 0, "Diversity", "", "", ())


FAULT_GLOO_TIMEOUT = 60  # the world group's timeout; no fault case may come near it
SHORT_TIMEOUT = 2  # seconds: timeout of the two groups of the "different-groups" case
FAULT_LAUNCH_TIMEOUT = 90
FAULT_COUNT = 4  # samples per rank in the fault cases


def fault_shard(rank, count=FAULT_COUNT, channels=C, width=W, dtype=torch.float64):
    g = torch.Generator().manual_seed(200 + rank)
    return torch.randn(count, channels, H, width, generator=g, dtype=dtype)


def ranks_text(ranks):
    ranks = list(ranks)
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))


def fault_cases(world):
    """(name, objective kind per rank, activations per rank, batch_index, expected message
    parts): the last rank (``bad``) differs from the others."""
    bad = world - 1
    good = ranks_text(range(bad))

    def with_bad(mapping):
        return [{T: fault_shard(r)} if r != bad else mapping for r in range(world)]

    div, align = ["diversity"] * world, ["alignment"] * world
    empty = f"rank {bad} raised ValueError: batch_index (None, None) selects no samples of a " \
            "batch of 0"
    cases = [
        ("empty-shard-diversity", div, with_bad({T: fault_shard(bad, count=0)}), None, [empty]),
        ("empty-shard-alignment", align, with_bad({T: fault_shard(bad, count=0)}), None,
         [empty]),
        ("empty-selection", div, with_bad({T: fault_shard(bad, count=3)}), (3, None),
         [f"rank {bad} raised ValueError: batch_index (3, None) selects no samples of a batch "
          "of 3"]),
        ("channels", div, with_bad({T: fault_shard(bad, channels=C + 1)}), None,
         [f"channel count differs ({C} on {good}; {C + 1} on rank {bad})"]),
        ("sample-shape", align, with_bad({T: fault_shard(bad, width=W + 1)}), None,
         [f"sample shape differs ({(C, H, W)} on {good}; {(C, H, W + 1)} on rank {bad})"]),
        ("dtype-diversity", div, with_bad({T: fault_shard(bad, dtype=torch.float32)}), None,
         [f"dtype differs (float64 on {good}; float32 on rank {bad})"]),
        ("dtype-alignment", align, with_bad({T: fault_shard(bad, dtype=torch.float32)}), None,
         [f"dtype differs (float64 on {good}; float32 on rank {bad})"]),
        ("missing-target", div, with_bad({"other": fault_shard(bad)}), None,
         [f"rank {bad} raised KeyError: no activation for target 'act'"]),
        ("integer", align, with_bad({T: fault_shard(bad).long()}), None,
         [f"rank {bad} raised TypeError: the activation of 'act' has dtype torch.int64"]),
        ("wrong-rank", div, with_bad({T: fault_shard(bad)[:, 0, 0, 0]}), None,
         [f"rank {bad} raised ValueError: the activation of 'act' must have rank 4"]),
        ("objective", div[:bad] + ["alignment"], with_bad({T: fault_shard(bad)}), None,
         [f"objective differs (Diversity on {good}; Alignment on rank {bad})"]),
    ]
    if world == 3:
        cases.append(("two-bad-ranks", div,
                      [{T: fault_shard(0)}, {T: fault_shard(1, count=0)},
                       {T: fault_shard(2, channels=C + 1)}], None,
                      ["rank 1 raised ValueError: batch_index (None, None) selects no samples",
                       f"channel count differs ({C} on rank 0; {C + 1} on rank 2)"]))
    return cases


def fault_objective(kind, group, batch_index=None):
    if kind == "diversity":
        return fo.Diversity(T, batch_index=batch_index, process_group=group)
    return fo.Alignment(T, decay_ratio=3.0, batch_index=batch_index, process_group=group)


def _timed(results, name, call):
    """results[name] = (outcome, value or message, seconds): outcome "ok" or the error type."""
    start = time.monotonic()
    try:
        outcome = ("ok", call())
    except Exception as error:  # every outcome is recorded for the test to judge
        outcome = (type(error).__name__, str(error))
    results[name] = outcome + (time.monotonic() - start,)


def _fault_worker(rank, world, init_file, out_dir):
    """One rank: every fault case in order, on one process group that must stay usable."""
    init_gloo(rank, world, init_file, FAULT_GLOO_TIMEOUT)
    bad = world - 1
    results = {}
    out_file = os.path.join(out_dir, f"rank{rank}.pt")
    firsts = dist.new_group(list(range(bad)))  # every rank but the last
    short = [dist.new_group(timeout=timedelta(seconds=SHORT_TIMEOUT)) for _ in range(2)]
    for name, kinds, activations, batch_index, _ in fault_cases(world):
        objective = fault_objective(kinds[rank], dist.group.WORLD, batch_index)
        _timed(results, name, lambda: objective(activations[rank]).detach())
    # Called on a group it is not in, the last rank is refused at once; the members go on.
    _timed(results, "non-member",
           lambda: fault_objective("diversity", firsts)({T: fault_shard(rank)}).detach())
    # Two groups of the same ranks: the collectives never meet, every rank waits for the
    # group's timeout (SHORT_TIMEOUT here) and torch raises.
    group = short[rank == bad]
    _timed(results, "different-groups",
           lambda: fault_objective("diversity", group)({T: fault_shard(rank)}).detach())

    def float32_upstream_on_last_rank():
        # Alignment's backward all-reduces the heads' gradient; autograd casts an upstream
        # gradient of another dtype, so its shape and dtype still agree across ranks.
        x = fault_shard(rank).requires_grad_()
        value = fault_objective("alignment", dist.group.WORLD)({T: x})
        value.backward(torch.full_like(value, UPSTREAM,
                                       dtype=torch.float32 if rank == bad else value.dtype))
        return x.grad

    _timed(results, "upstream-dtype", float32_upstream_on_last_rank)

    def healthy():
        x = fault_shard(rank).requires_grad_()
        value = fault_objective("diversity", dist.group.WORLD)({T: x}) \
            - fault_objective("alignment", dist.group.WORLD)({T: x}).sum()
        value.backward()
        return value.detach()

    _timed(results, "healthy-after", healthy)
    # Last: the last rank fails before calling the objective and its process ends; the
    # others, already or soon inside the first collective, fail when its connections close.
    if rank == bad:
        results["raise-before-call"] = ("exited", None, 0.0)
        torch.save(results, out_file)
        os._exit(0)
    _timed(results, "raise-before-call",
           lambda: fault_objective("diversity", dist.group.WORLD)({T: fault_shard(rank)}))
    torch.save(results, out_file)
    os._exit(0)  # the group lost a rank: no barrier or teardown


@pytest.mark.parametrize("world", [2, 3])
def test_faults_raise_on_every_rank(world, tmp_path):
    per_rank = launch(_fault_worker, world, tmp_path, FAULT_LAUNCH_TIMEOUT)
    bad = world - 1
    bound = FAULT_GLOO_TIMEOUT / 2  # a hang bound, far above the milliseconds expected
    for name, _, _, _, parts in fault_cases(world):
        outcomes = [per_rank[r][name] for r in range(world)]
        assert all(kind == "ValueError" for kind, _, _ in outcomes), (name, outcomes)
        message = outcomes[0][1]
        assert all(m == message for _, m, _ in outcomes), (name, outcomes)
        assert message.startswith(("Diversity across", "Alignment across",
                                   "Diversity / Alignment across")), message
        for part in parts:
            assert part in message, (name, part, message)
        assert all(seconds < bound for *_, seconds in outcomes), (name, outcomes)

    kind, message, seconds = per_rank[bad]["non-member"]
    assert kind == "ValueError" and seconds < bound
    assert f"Diversity: this process (global rank {bad}) is not a member" in message
    members = torch.cat([fault_shard(r) for r in range(bad)])
    expected = fo.Diversity(T)({T: members})
    for r in range(bad):
        kind, value, _ = per_rank[r]["non-member"]
        assert kind == "ok"
        torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)

    for r in range(world):
        kind, message, seconds = per_rank[r]["different-groups"]
        assert kind == "RuntimeError" and "Timed out" in message, (r, kind, message)
        assert SHORT_TIMEOUT <= seconds < bound

    x = torch.cat([fault_shard(r) for r in range(world)]).requires_grad_()
    (fault_objective("alignment", None)({T: x}) * UPSTREAM).sum().backward()
    for r in range(world):
        kind, grad, seconds = per_rank[r]["upstream-dtype"]
        assert kind == "ok" and seconds < bound, (r, kind, grad)
        rows = x.grad[FAULT_COUNT * r:FAULT_COUNT * (r + 1)]
        torch.testing.assert_close(grad, rows, rtol=1e-6, atol=1e-9)

    values = [per_rank[r]["healthy-after"] for r in range(world)]
    assert all(kind == "ok" for kind, *_ in values), values
    assert all(torch.equal(value, values[0][1]) for _, value, _ in values)

    assert per_rank[bad]["raise-before-call"][0] == "exited"
    for r in range(bad):
        kind, message, seconds = per_rank[r]["raise-before-call"]
        assert kind == "RuntimeError" and seconds < bound, (r, kind, message)
