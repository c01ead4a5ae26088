"""What the machine offers: the device's name, and how many CPU threads to use (the default
device is ``fastobj.backend.default_device``, shared with ``fastobj render``).

On a busy CPU a multi-threaded torch op stalls whenever one of its threads is descheduled, and
every figure swings with the other work; one thread then gives the steady figures. So the
default thread count comes from the CPUs this process may use and the load average: all of
them on an idle machine, the free ones on a busy one, at least one.
"""
from __future__ import annotations

import os
import platform
from typing import Optional, Tuple

import torch

IDLE_LOAD = 0.5  # below this 1-minute load average the machine counts as idle


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"{cpu_model()} ({threads} thread{'s' if threads != 1 else ''})"


def allowed_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS tells)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> Optional[float]:
    """The 1-minute load average, or None where the OS does not say."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def choose_threads(allowed: int, load: Optional[float]) -> Tuple[int, str]:
    """(torch threads, why): every allowed CPU when idle, else the CPUs left free, at least 1."""
    if load is None:
        return allowed, f"{allowed} CPUs allowed, load unknown"
    if load < IDLE_LOAD:
        return allowed, f"{allowed} CPUs allowed, load {load:.2f}: idle"
    threads = max(1, min(allowed, int(allowed - load)))
    return threads, (f"the machine is busy (load {load:.2f} on {allowed} allowed CPUs): "
                     f"{threads} thread{'s' if threads != 1 else ''} for steady figures")
