"""Peak memory of one call, beyond what existed before it (inputs excluded).

On CUDA: ``torch.cuda.max_memory_allocated`` over the call minus what was allocated before.
On CPU the allocations and frees of one call are traced with ``torch.profiler``
(``profile_memory=True``) and the running total's maximum is reported: measured, not computed
from shapes. Calls slower than :data:`CPU_TRACE_LIMIT_S` are not traced (the tracer's per-op
cost would dominate) and report no figure.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator, Optional, Tuple

import torch

from .timing import Runner, sync

CPU_TRACE_LIMIT_S = 0.25


@contextlib.contextmanager
def _quiet_stderr_fd() -> Iterator[None]:
    """Silence the C++ profiler's start/stop lines written straight to file descriptor 2."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_peak_bytes(runner: Runner) -> int:
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr_fd():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            result = runner.step()
            del result
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for e in events:
        if e.device_type() == torch.autograd.DeviceType.CPU:
            current += e.nbytes()
            peak = max(peak, current)
    return peak


def peak_memory(runner: Runner, call_s: float) -> Tuple[Optional[int], str]:
    """(peak bytes allocated during one call beyond what existed before, how it was measured)."""
    if runner.device.type == "cuda":
        sync(runner.device)
        torch.cuda.reset_peak_memory_stats(runner.device)
        before = torch.cuda.memory_allocated(runner.device)
        result = runner.step()  # kept alive until the peak is read, as a caller would
        sync(runner.device)
        peak = torch.cuda.max_memory_allocated(runner.device) - before
        del result
        return peak, "cuda_max_memory_allocated"
    if runner.device.type == "cpu":
        if call_s > CPU_TRACE_LIMIT_S:
            return None, "not traced (slow call)"
        return _cpu_peak_bytes(runner), "cpu_profiler_trace"
    return None, "unsupported device"
