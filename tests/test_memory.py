"""Diversity's memory is linear in the batch: nothing of size B x B, ever.

Forward and backward of Diversity at B=512 (C=16, P=7x7=49, float32, CPU, reference path) run
under torch.profiler with memory profiling and shape recording. Checks:

1. No op sees a tensor with two dims of size B (the pairwise B x B Gram-of-Grams of the
   classic implementation, or anything like it).
2. No single allocation is larger than the input (B·C·P·4 bytes = 1.6 MB): the largest buffer
   the computation needs is the input's gradient. (A B x B float32 matrix is 1 MiB, smaller than
   the input at these sizes, so this check guards against larger blow-ups, e.g. B x C² x P;
   check 1 is the one that excludes B x B.)
3. The peak of live memory allocated during forward + backward, from the profiler's memory
   timeline, stays under 3·(B·C·P·4) + 4·(B·C²·4) bytes: three input-sized buffers (autograd of
   F Fᵀ produces one partial gradient per operand and then their sum, the input's gradient) and
   a few batches of C x C Grams (the Grams, their normalised copies and their gradients). At
   these sizes the bound is 4.8 MB + 2.1 MB = 6.9 MB (measured: 4.8 MB). A B x B intermediate
   would also break linear growth, which a run at half the batch checks: the peak at B is at
   most 2.2 times the peak at B/2.

The peak uses the profiler's memory timeline (``prof._memory_profile()``, the machinery behind
``export_memory_timeline``; CPU has no ``max_memory_allocated``). A self-check runs the shape
probe on a pairwise (B x B) implementation and sees it fire.
"""
from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import fastobj as fo

C, SIDE = 16, 7
P = SIDE * SIDE


def run_profiled(batch, loss=None):
    x = torch.randn(batch, C, SIDE, SIDE, requires_grad=True)
    loss = fo.Diversity("act") if loss is None else loss
    with fo.use_backend("torch"):
        loss({"act": x}).backward()  # warm-up: first-call allocations are not the objective's
        x.grad = None
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                     with_stack=True) as prof:
            value = loss({"act": x})
            value.backward()
    assert torch.isfinite(value) and x.grad is not None
    return prof


def shapes_seen(prof):
    shapes = set()
    for event in prof.events():
        for shape in event.input_shapes or ():
            if isinstance(shape, (list, tuple)) and all(isinstance(d, int) for d in shape):
                shapes.add(tuple(shape))
    return shapes


def timeline(prof):
    """(action, bytes) of every allocation and free inside the profiled region, in order."""
    from torch.profiler._memory_profiler import Action

    return [(action, size) for _, action, _, size in prof._memory_profile().timeline
            if action in (Action.CREATE, Action.DESTROY)]


def largest_allocation(prof):
    from torch.profiler._memory_profiler import Action

    return max((size for action, size in timeline(prof) if action == Action.CREATE), default=0)


def peak_allocated(prof):
    """Peak of live bytes allocated inside the profiled region."""
    from torch.profiler._memory_profiler import Action

    live = peak = 0
    for action, size in timeline(prof):
        live += size if action == Action.CREATE else -size
        peak = max(peak, live)
    return peak


def bound(batch):
    return 3 * batch * C * P * 4 + 4 * batch * C * C * 4


B = 512


@pytest.fixture(scope="module")
def profiled():
    return run_profiled(B)


def test_no_batch_by_batch_tensor(profiled):
    shapes = shapes_seen(profiled)
    assert (B, C, P) in shapes or (B, C, SIDE, SIDE) in shapes  # the profile saw the work
    square = sorted(s for s in shapes if sum(d == B for d in s) >= 2)
    assert square == [], f"B x B shaped tensors: {square}"


def test_largest_single_allocation(profiled):
    assert 0 < largest_allocation(profiled) <= B * C * P * 4


def test_peak_memory_bound(profiled):
    peak = peak_allocated(profiled)
    assert 0 < peak <= bound(B), f"peak {peak} B > bound {bound(B)} B"


def test_peak_memory_grows_linearly(profiled):
    small, large = peak_allocated(run_profiled(B // 2)), peak_allocated(profiled)
    assert large <= 2.2 * small, (small, large)


def pairwise_diversity(acts):
    """The classic form through a B x B matrix of Gram inner products (what must not happen)."""
    s = acts["act"]
    f = s.reshape(s.shape[0], s.shape[1], -1)
    grams = torch.nn.functional.normalize(f @ f.transpose(1, 2), dim=(1, 2)).flatten(1)
    k = grams @ grams.T
    return -(k.sum() - k.trace()) / s.shape[0]


def test_probes_detect_a_pairwise_implementation():
    prof = run_profiled(B, loss=pairwise_diversity)
    assert (B, B) in shapes_seen(prof)
