"""The sweep: every point of a plan measured in interleaved rounds within a time budget.

Round 1 visits every point: each provider is warmed up (its first call timed on its own, as
``compile_s`` for ``compile``; a first call over :data:`WARM_UP_IS_NOISE_S` counts as the
round), its one-call memory peak and, on CUDA, its kernel time are taken, then one round of
samples. It visits the smallest batch of every op first, then the next batch of every op, and
so on, so a time limit reached in round 1 costs every op its largest points rather than whole
ops. Later rounds revisit every point, the providers of a
point one after the other (in alternating order), until the preset's number of rounds is
reached or the next full round would not fit the time left: every point then has the same
number of rounds. A provider whose call takes over :data:`SLOW_CALL_S` stops at
:data:`SLOW_ROUNDS` rounds.

The classic loops grow with B (the pairwise Diversity loop as B²); for each op, mode, dtype and
trailing shape the classic provider is run at increasing batch sizes only while the previous
point's fastest call stayed under the per-call budget (``--budget``), and a point predicted
(from the previous one and the op's growth in B) to take more than three budgets is skipped.
A classic call slower than the budget is measured once. The budget is wall time: on a
one-thread CPU run, timed in CPU time, calls are scaled by the CPU share the process gets.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch

from .ceilings import Ceilings
from .memory import peak_memory
from .ops import (
    DTYPES,
    OPS,
    PROVIDERS,
    Op,
    Unavailable,
    backend_label,
    build_provider,
    has_provider,
    make_args,
    shape_str,
)
from .presets import Case
from .timing import Runner, Stats, kernel_time, summarize, take_round, uses_cpu_clock

CLASSIC_SKIP_FACTOR = 3.0  # skip a classic point predicted to take more than this many budgets
CLASSIC_PROBE_BATCH = 16  # batch of the calibration call before a large first classic point
WARM_UP_IS_NOISE_S = 1.0  # a first call longer than this is taken as round 1 (not compile)
SLOW_CALL_S = 0.25  # providers slower than this per call ...
SLOW_ROUNDS = 3  # ... take at most this many rounds
ROUND_COST_MARGIN = 1.15  # a further round starts only if its estimated cost, times this, fits
MIN_CPU_SHARE = 0.05  # the least CPU share assumed when estimating a round's wall time


@dataclasses.dataclass
class Settings:
    device: torch.device
    providers: Tuple[str, ...]
    budget_s: float
    rounds: int
    round_s: float
    memory: bool
    seed: int = 0
    deadline: Optional[float] = None  # time.monotonic() after which no new work starts


@dataclasses.dataclass
class Measured:
    """One provider on one point: its runner, warm-up, per-round times and one-off figures."""
    runner: Runner
    first_s: float
    call_s: float
    max_rounds: int
    rounds: List[float] = dataclasses.field(default_factory=list)
    peak: Tuple[Optional[int], str] = (None, "off")
    kernel: Tuple[Optional[float], str] = (None, "")
    objective: Optional["Measured"] = None  # the objective alone, for ops with objective_part

    def wants_round(self) -> bool:
        return len(self.rounds) < self.max_rounds

    def round_cost(self, round_s: float) -> float:
        own = max(round_s, self.call_s) if self.wants_round() else 0.0
        return own + (self.objective.round_cost(round_s) if self.objective else 0.0)

    def stats(self) -> Stats:
        return summarize(self.rounds)

    def device_s(self) -> float:
        """The kernels' own time where it was measured (CUDA), else the median call."""
        return self.kernel[0] or self.stats().median_s


@dataclasses.dataclass
class Point:
    index: int  # position in the plan (the order of the output)
    case: Case
    measured: Dict[str, Measured] = dataclasses.field(default_factory=dict)

    def wants_round(self) -> bool:
        return any(m.wants_round() or (m.objective is not None and m.objective.wants_round())
                   for m in self.measured.values())


class _CpuShare:
    """The share of a CPU this process got since the last restart, to turn estimates in process
    CPU time (see :func:`.timing.uses_cpu_clock`) into the wall time the budget is kept in."""

    def __init__(self, device: torch.device):
        self.device = device
        self.restart()

    def restart(self) -> None:
        self.wall, self.cpu = time.monotonic(), time.process_time()

    def wall_s(self, seconds: float) -> float:
        if not uses_cpu_clock(self.device):
            return seconds
        wall = time.monotonic() - self.wall
        share = (time.process_time() - self.cpu) / wall if wall > 0 else 1.0
        return seconds / min(1.0, max(share, MIN_CPU_SHARE))


def round_one_order(cases: List[Case]) -> List[int]:
    """Plan indices in round-1 order: the first batch of every chain (op, dtype, mode, trailing
    shape), then the second of every chain, ...; increasing B within a chain."""
    rank: Dict[tuple, int] = {}
    keyed = []
    for index, case in enumerate(cases):
        chain = (case.op, case.dtype, case.mode, case.dims[1:])
        rank[chain] = rank.get(chain, -1) + 1
        keyed.append((rank[chain], index))
    return [index for _, index in sorted(keyed)]


class Sweeper:
    """Runs a plan; holds the points measured so far, notes and failures."""

    def __init__(self, settings: Settings):
        self.s = settings
        self.points: List[Point] = []
        self.notes: List[str] = []
        self.failures: List[str] = []
        self.ceilings = Ceilings()
        self.rounds_done = 0
        self._classic: Dict[tuple, Tuple[int, float]] = {}  # key -> (B, fastest call) last seen
        self._classic_stop: Dict[tuple, Tuple[int, float]] = {}  # key -> (B, wall time)
        self._compile_broken: Dict[str, str] = {}
        self._share = _CpuShare(settings.device)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _time_left(self) -> float:
        return math.inf if self.s.deadline is None else self.s.deadline - time.monotonic()

    # -- the whole run -----------------------------------------------------------------------
    def run(self, cases: List[Case], written: Callable[[bool], None],
            progress=None) -> None:
        """Measure ``cases``; call ``written(round_done)`` after every point of round 1
        and after every later round, so the caller can write the results as they grow."""
        skipped = 0
        share = self._share = _CpuShare(self.s.device)
        for index in round_one_order(cases):
            if self._time_left() <= 0:
                skipped += 1
                continue
            point = self._warm(index, cases[index])
            if point.measured:
                self.points.append(point)
                self.points.sort(key=lambda p: p.index)
            self._tick(progress)
            written(False)
        if skipped:
            self.note(f"time limit reached in round 1: {skipped} of {len(cases)} points (the "
                      "largest batches) were not measured; raise --max-minutes")
        self.rounds_done = 1
        written(True)
        for number in range(2, self.s.rounds + 1):
            pending = [p for p in self.points if p.wants_round()]
            if not pending:
                break
            cost = share.wall_s(sum(m.round_cost(self.s.round_s)
                                    for p in pending for m in p.measured.values()))
            if cost * ROUND_COST_MARGIN > self._time_left():
                self.note(f"time limit: {self.rounds_done} of {self.s.rounds} rounds fit, the same "
                          "for every point (a round would have taken about "
                          f"{cost:.0f} s more); raise --max-minutes for more")
                break
            share.restart()
            for point in pending:
                self._sample_round(point, reverse=number % 2 == 0, first=False)
                self._tick(progress)
            self.rounds_done = number
            written(True)

    @staticmethod
    def _tick(progress) -> None:
        if progress is not None:
            progress.update(1)

    # -- one point ---------------------------------------------------------------------------
    def providers_for(self, case: Case, args: Tuple[torch.Tensor, ...]) -> List[str]:
        """The requested providers the op has, classic first; the reference is left out where
        fastobj's path is the reference itself (it would be measured twice)."""
        op = OPS[case.op]
        chosen = [p for p in ("classic",) + tuple(p for p in PROVIDERS if p != "classic")
                  if p in self.s.providers and has_provider(op, p)]
        if not case.compile:
            chosen = [p for p in chosen if p != "compile"]
        if ("fastobj" in chosen and "reference" in chosen and op.has_kernel
                and backend_label(op, "fastobj", args) == "torch"):
            chosen.remove("reference")
            self.note(f"on {self.s.device.type} fastobj runs the PyTorch reference: measured "
                      "once, shown as 'fastobj=ref'")
        return chosen

    def _warm(self, index: int, case: Case) -> Point:
        point = Point(index, case)
        op = OPS[case.op]
        args = make_args(op, case.dims, case.dtype, self.s.device, self.s.seed)
        for provider in self.providers_for(case, args):
            with self._guard(case, provider):
                measured = self._warm_provider(op, case, provider, args)
                if measured is not None:
                    point.measured[provider] = measured
        self._sample_round(point, reverse=False, first=True)
        return point

    def _warm_provider(self, op: Op, case: Case, provider: str, args) -> Optional[Measured]:
        if provider == "compile" and case.op in self._compile_broken:
            raise Unavailable(f"torch.compile failed earlier: {self._compile_broken[case.op]}")
        if provider == "classic":
            blocked = self._classic_blocked(case)
            if blocked:
                self.note(blocked)
                return None
        measured = self._start(op, case, provider, args)
        if provider == "classic" and self._over_budget(measured.call_s):
            measured.rounds, measured.max_rounds = [measured.call_s], 1  # too slow to repeat
        if op.objective_part is not None:
            part = op.objective_part
            part_args = make_args(part, case.dims, case.dtype, self.s.device, self.s.seed)
            measured.objective = self._start(part, case, provider, part_args)
            measured.objective.max_rounds = measured.max_rounds
        if self.s.memory:
            measured.peak = peak_memory(measured.runner, measured.call_s)
        if self.s.device.type == "cuda" and provider != "classic":
            # (not the classic loops: a CUDA graph of their 10^5-10^6 launches costs minutes)
            measured.kernel = kernel_time(measured.runner.step, self.s.device)
        return measured

    def _start(self, op: Op, case: Case, provider: str, args) -> Measured:
        runner = Runner(build_provider(op, provider), args, op.n_diff, case.mode,
                        self.s.device, self.s.seed)
        first = runner.time_call()
        if provider != "compile" and first > WARM_UP_IS_NOISE_S:
            call = first  # warm-up effects are noise in a call this long: it serves as round 1
        else:
            call = runner.time_call()
        slow = call > SLOW_CALL_S
        return Measured(runner, first, call, SLOW_ROUNDS if slow else self.s.rounds)

    def _sample_round(self, point: Point, reverse: bool, first: bool) -> None:
        """One round of every provider of ``point`` that wants one (and of its objective)."""
        order = list(point.measured.items())
        for provider, measured in (reversed(order) if reverse else order):
            ok = False
            with self._guard(point.case, provider):
                for part in (measured, measured.objective):
                    if part is not None and part.wants_round():
                        part.rounds.append(part.call_s if first and part.call_s >= self.s.round_s
                                           else take_round(part.runner.step, self.s.device,
                                                           self.s.round_s, part.call_s))
                ok = True
            if not ok:
                del point.measured[provider]
            elif provider == "classic" and first:
                self._classic_done(point.case, min(measured.rounds))

    @contextlib.contextmanager
    def _guard(self, case: Case, provider: str) -> Iterator[None]:
        """Turn a provider's failure into a note (compile, unavailable) or a failure line."""
        try:
            yield
        except Unavailable as exc:
            self.note(f"{provider} skipped for {case.op}: {exc}")
        except Exception as exc:  # one failing provider must not end the sweep
            lines = str(exc).strip().splitlines()
            msg = f"{type(exc).__name__}: {lines[0] if lines else ''}"
            if provider == "compile":
                self._compile_broken[case.op] = msg
                self.note(f"compile skipped for {case.op} ({case.mode}, {case.dtype}): "
                          f"torch.compile failed on this machine: {msg}")
            else:
                self.failures.append(f"{provider} failed on {case.op} {case.mode} "
                                     f"{shape_str(case.dims)} {case.dtype}: {msg}")
            if self.s.device.type == "cuda":  # e.g. out of memory: leave room for the rest
                torch.cuda.empty_cache()

    # -- the classic escalation bound --------------------------------------------------------
    @staticmethod
    def _classic_key(case: Case) -> tuple:
        return (case.op, case.mode, case.dtype, case.dims[1:])

    def _classic_blocked(self, case: Case) -> Optional[str]:
        op = OPS[case.op]
        if op.classic_growth == 0:
            return None
        key = self._classic_key(case)
        batch = case.dims[0]
        if key in self._classic_stop:
            b0, wall = self._classic_stop[key]
            return (f"classic {case.op} {case.mode} {case.dtype} stopped escalating after "
                    f"B={b0}: its fastest call took {wall:.2f} s of wall time (budget "
                    f"{self.s.budget_s:g} s)")
        if key in self._classic:
            b0, t0 = self._classic[key]
        elif batch > CLASSIC_PROBE_BATCH:
            b0 = CLASSIC_PROBE_BATCH
            dims = (b0,) + case.dims[1:]
            probe = make_args(op, dims, case.dtype, self.s.device, self.s.seed)
            runner = Runner(build_provider(op, "classic"), probe, op.n_diff, case.mode,
                            self.s.device, self.s.seed)
            t0 = min(runner.time_call(), runner.time_call())  # the first call is cold
        else:
            return None
        predicted = t0 * (batch / b0) ** op.classic_growth
        if self._share.wall_s(predicted) > CLASSIC_SKIP_FACTOR * self.s.budget_s:
            return (f"classic {case.op} {case.mode} {case.dtype} B={batch} skipped: predicted "
                    f"{self._share.wall_s(predicted):.1f} s of wall time per call from B={b0} "
                    f"(budget {self.s.budget_s:g} s)")
        return None

    def _over_budget(self, seconds: float) -> bool:
        """Whether a call of ``seconds`` (on the timing clock) takes over the per-call budget
        of wall time at the CPU share this process gets."""
        return self._share.wall_s(seconds) > self.s.budget_s

    def _classic_done(self, case: Case, seconds: float) -> None:
        if OPS[case.op].classic_growth == 0:
            return
        key = self._classic_key(case)
        self._classic[key] = (case.dims[0], seconds)
        if self._over_budget(seconds):
            self._classic_stop[key] = (case.dims[0], self._share.wall_s(seconds))

    # -- results -----------------------------------------------------------------------------
    def rows(self, base: Dict[str, object]) -> List[dict]:
        """One row per measured provider and point (in plan order), then the ceilings."""
        out = []
        for point in self.points:
            case, op = point.case, OPS[point.case.op]
            cost = op.cost(case.dims, DTYPES[case.dtype], case.mode)
            classic = point.measured.get("classic")
            classic_s = classic.stats().median_s if classic and classic.rounds else None
            bmm = point.measured.get("bmm")
            bmm_s = bmm.device_s() if bmm and bmm.rounds else None
            for provider, measured in point.measured.items():
                if measured.rounds:
                    row = self._row(base, case, op, provider, measured, cost, classic_s)
                    if bmm_s:
                        row["x_bmm"] = measured.device_s() / bmm_s
                    out.append(row)
        return out + [dict(base, **row) for row in self.ceilings.rows]

    def _row(self, base, case: Case, op: Op, provider: str, measured: Measured, cost,
             classic_s: Optional[float]) -> dict:
        stats = measured.stats()
        backend = backend_label(op, provider, measured.runner.args)
        kernel_s, kernel_method = measured.kernel
        row = dict(base)
        row.update({
            "op": case.op, "provider": provider, "mode": case.mode,
            "shape": shape_str(case.dims), "dtype": case.dtype,
            "median_s": stats.median_s, "min_s": stats.min_s, "rounds": stats.rounds,
            "spread": stats.spread, "rough": int(stats.rough),
            "is_reference": int(provider == "reference" or (
                provider == "fastobj" and op.has_kernel and backend == "torch")),
            "kernel_s": kernel_s, "kernel_method": kernel_method or None,
            "host_overhead_s": (None if kernel_s is None
                                else max(0.0, stats.median_s - kernel_s)),
            "peak_mem_bytes": measured.peak[0], "mem_method": measured.peak[1],
            "backend": backend,
            "compile_s": measured.first_s if provider == "compile" else None,
            "speedup_vs_classic": None if classic_s is None else classic_s / stats.median_s,
        })
        if measured.objective is not None and measured.objective.rounds:
            objective = measured.objective.stats()
            row.update(objective_s=objective.median_s,
                       objective_share=objective.median_s / stats.median_s,
                       rough=int(stats.rough or objective.rough))
        if cost is not None:
            seconds = kernel_s or stats.median_s  # the kernels' own rate where it is known
            row.update(flops=cost.flops, bytes=cost.bytes, bound=cost.bound,
                       tflops=cost.flops / seconds / 1e12, gbs=cost.bytes / seconds / 1e9)
            if cost.bound == "compute" and case.dtype in self.ceilings.matmul_tflops:
                row["pct_of_ceiling"] = 100 * row["tflops"] / self.ceilings.matmul_tflops[case.dtype]
            elif cost.bound == "memory" and self.ceilings.copy_gbs:
                row["pct_of_ceiling"] = 100 * row["gbs"] / self.ceilings.copy_gbs
        return row
