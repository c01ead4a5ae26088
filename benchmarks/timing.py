"""Timing: the one sampling loop behind every figure of ``fastobj bench``, and, on CUDA, the
time of an op's kernels alone.

A *sample* is a group of back-to-back calls timed between two synchronisations (in process CPU
time on a one-thread CPU run, see :func:`uses_cpu_clock`; in wall time otherwise); a *round*
takes samples of one callable for about ``round_s`` (at least one) and keeps the fastest:
other work on a shared machine only ever slows a sample down. The sweep interleaves providers
round by round, so a burst of other work weighs on all of them alike, and reports the median
of the rounds with their spread (interquartile range / median): rounds that disagree mark a
figure as rough.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable, Optional, Sequence, Tuple

import torch

WIDE_SPREAD = 0.2  # rounds whose IQR exceeds this fraction of their median mark a rough figure
MIN_ROUNDS = 3  # fewer rounds than this also mark a rough figure (no spread to judge by)
CPU_GROUP_BELOW_S = 20e-6  # CPU calls faster than this are grouped into samples of ...
CPU_SAMPLE_S = 50e-6  # ... about this long
CUDA_SAMPLE_S = 1e-3  # CUDA samples last about this long (launch and sync latency amortised)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def uses_cpu_clock(device: torch.device) -> bool:
    """Whether calls on ``device`` are timed in process CPU time rather than wall time.

    On a CPU with torch at one thread the process's CPU time is the call's own cost: it does
    not count the turns other jobs take on a shared CPU, which wall time does (on a loaded
    2-core machine, several times over). With more threads CPU time adds up the threads, and a
    GPU works while the host waits, so those are timed on the wall clock.
    """
    return device.type == "cpu" and torch.get_num_threads() == 1


def time_calls(fn: Callable[[], object], device: torch.device, calls: int = 1) -> float:
    """Seconds per call of ``calls`` back-to-back calls, synchronised before and after, on
    the clock :func:`uses_cpu_clock` chooses."""
    clock = time.process_time if uses_cpu_clock(device) else time.perf_counter
    sync(device)
    start = clock()
    for _ in range(calls):
        fn()
    sync(device)
    return (clock() - start) / calls


class Runner:
    """One provider on one case: ``step()`` runs one forward (and backward) without syncing."""

    def __init__(self, fn: Callable, args: Tuple[torch.Tensor, ...], n_diff: int, mode: str,
                 device: torch.device, seed: int = 0):
        self.fn, self.mode, self.device, self.seed, self.n_diff = fn, mode, device, seed, n_diff
        if mode == "fwd+bwd":
            args = tuple(a.detach().requires_grad_(i < n_diff) for i, a in enumerate(args))
        self.args = args
        self.upstream: Optional[torch.Tensor] = None

    def step(self):
        out = self.fn(*self.args)
        if self.mode == "fwd":
            return out
        if self.upstream is None:  # a fixed random upstream gradient, made on the first call
            gen = torch.Generator(device=out.device).manual_seed(self.seed + 1)
            self.upstream = torch.randn(out.shape, device=out.device, generator=gen).to(out.dtype)
        return torch.autograd.grad(out, self.args[:self.n_diff], self.upstream)

    def time_call(self) -> float:
        """Seconds of one synchronised call."""
        return time_calls(self.step, self.device)


def calls_per_sample(call_s: float, device: torch.device) -> int:
    """Calls grouped into one sample: on CPU single calls (the median of single calls shrugs
    off the stalls a shared machine inflicts on some), except calls too short to time alone;
    on CUDA enough calls to last about a millisecond."""
    if device.type == "cuda":
        target = CUDA_SAMPLE_S
    else:
        target = CPU_SAMPLE_S if call_s < CPU_GROUP_BELOW_S else 0.0
    return max(1, int(target / max(call_s, 1e-7)))


def take_round(fn: Callable[[], object], device: torch.device, round_s: float,
               call_s: float) -> float:
    """One round: samples of ``fn`` for about ``round_s`` (at least one); the fastest."""
    calls = calls_per_sample(call_s, device)
    samples = []
    start = time.perf_counter()
    while not samples or time.perf_counter() - start < round_s:
        samples.append(time_calls(fn, device, calls))
    return min(samples)


@dataclasses.dataclass(frozen=True)
class Stats:
    median_s: float
    min_s: float
    rounds: int
    spread: Optional[float]  # IQR / median of the rounds; None with a single round

    @property
    def rough(self) -> bool:
        """Too few rounds, or rounds too far apart, to print the median as fact."""
        return self.rounds < MIN_ROUNDS or (self.spread is not None
                                            and self.spread > WIDE_SPREAD)


def summarize(rounds: Sequence[float]) -> Stats:
    """Median, minimum and spread of per-round times."""
    median = statistics.median(rounds)
    spread = None
    if len(rounds) > 1:
        q1, _, q3 = statistics.quantiles(rounds, n=4, method="inclusive")
        spread = (q3 - q1) / median if median > 0 else 0.0
    return Stats(median, min(rounds), len(rounds), spread)


def measure(fn: Callable[[], object], device: torch.device, rounds: int,
            round_s: float) -> Stats:
    """A warm-up call, then ``rounds`` rounds of ``fn`` alone (the device ceilings)."""
    call_s = time_calls(fn, device)
    return summarize([take_round(fn, device, round_s, call_s) for _ in range(rounds)])


# --------------------------------------------------------------------------------------------
# CUDA: the kernels alone. On a GPU, back-to-back eager calls can measure the host (Python and
# launch overhead) rather than the kernels; the sweep reports both, and their difference as
# the host overhead per call.
# --------------------------------------------------------------------------------------------

KERNEL_TIME_MIN_S = 0.02  # graph replays are timed in one batch lasting about this long
PROFILED_CALLS = 5


def graph_replay_time(step: Callable[[], object], device: torch.device) -> float:
    """Seconds per replay of ``step`` captured once in a CUDA graph (no host work between
    kernels). ``step`` must have run eagerly before (Triton compiled, upstream made)."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # warm the capture stream, as torch.cuda.graph requires
        step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    try:
        once = time_calls(graph.replay, device)
        replays = max(3, int(KERNEL_TIME_MIN_S / max(once, 1e-6)))
        start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        start.record()
        for _ in range(replays):
            graph.replay()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / replays
    finally:
        del graph
        torch.cuda.empty_cache()


def profiler_kernel_time(step: Callable[[], object], device: torch.device) -> float:
    """Seconds per call of the device activity (kernels, copies, fills) that
    ``torch.profiler`` records over a few eager calls of ``step``."""
    from torch.profiler import ProfilerActivity, profile

    sync(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(PROFILED_CALLS):
            step()
        sync(device)
    device_ns = sum(e.duration_ns() for e in prof.profiler.kineto_results.events()
                    if e.device_type() == torch.autograd.DeviceType.CUDA)
    return device_ns / 1e9 / PROFILED_CALLS


def kernel_time(step: Callable[[], object], device: torch.device
                ) -> Tuple[Optional[float], str]:
    """(seconds per call of ``step``'s kernels alone, how it was measured): CUDA-graph replay,
    else per-kernel durations from the profiler where capture fails, else (None, why)."""
    try:
        return graph_replay_time(step, device), "cuda_graph"
    except Exception as graph_error:  # e.g. a host sync or an uncapturable op in the step
        reason = f"graph capture failed ({type(graph_error).__name__})"
    try:
        return profiler_kernel_time(step, device), f"profiler; {reason}"
    except Exception as exc:
        return None, f"{reason}; profiler failed ({type(exc).__name__})"
