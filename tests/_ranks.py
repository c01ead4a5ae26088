"""Starting a group of test processes (ranks) and waiting for them, bounded in time."""
from __future__ import annotations

import multiprocessing
import time
from typing import Any, Callable, Sequence

import pytest
import torch.multiprocessing as mp


def run_ranks(worker: Callable[..., Any], args: Sequence[Any], world: int, timeout: float,
              preload: Sequence[str]) -> None:
    """Run ``worker(rank, *args)`` in ``world`` processes; fail the test past ``timeout`` s.

    The processes come from a fork server that has imported ``preload`` once, so each starts in
    a fraction of a second; spawning fresh interpreters would pay those imports (seconds, on a
    shared CPU) in every rank. Processes still alive at the end are killed.
    """
    multiprocessing.set_forkserver_preload(list(preload))
    ctx = mp.start_processes(worker, args=tuple(args), nprocs=world, join=False,
                             start_method="forkserver")
    deadline = time.monotonic() + timeout
    try:
        while not ctx.join(timeout=0.5):
            if time.monotonic() > deadline:
                pytest.fail(f"{world} processes did not finish within {timeout} s")
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.kill()
                proc.join(5)
