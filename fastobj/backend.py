"""Which implementation a hot computation runs: the Triton kernels or the PyTorch reference.

The choice is made on every call from three things: the requested backend (the environment
variable ``FASTOBJ_BACKEND`` or :func:`use_backend`), whether Triton can run on the tensor
(CUDA tensor, or any tensor when ``TRITON_INTERPRET=1``), and whether the kernel supports the
dtype. ``auto`` takes Triton when it can and the reference otherwise; a forced ``triton`` that
cannot run raises instead of falling back. Nothing here queries CUDA or imports Triton at
import time.

The default device of the ``fastobj`` commands (:func:`default_device`) lives here too, so that
``fastobj render`` and ``fastobj bench`` share one rule.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator, Optional, Tuple

import torch

BACKENDS = ("auto", "torch", "triton")
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

_local = threading.local()


def _validate(name: str, where: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{where}: unknown backend {name!r}; expected one of {BACKENDS}")
    return name


def get_backend() -> str:
    """The requested backend: the innermost :func:`use_backend`, else ``FASTOBJ_BACKEND``, else auto."""
    override = getattr(_local, "backend", None)
    if override is not None:
        return override
    return _validate(os.environ.get("FASTOBJ_BACKEND", "auto").strip().lower() or "auto",
                     "FASTOBJ_BACKEND")


def set_backend(name: Optional[str]) -> None:
    """Set the backend for this thread (``None`` returns to ``FASTOBJ_BACKEND``)."""
    _local.backend = None if name is None else _validate(name, "set_backend")


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run the enclosed calls with backend ``name`` ("auto", "torch" or "triton")."""
    previous = getattr(_local, "backend", None)
    _local.backend = _validate(name, "use_backend")
    try:
        yield
    finally:
        _local.backend = previous


def default_device() -> torch.device:
    """The device the ``fastobj`` commands run on when none is given: CUDA (the current GPU)
    when PyTorch sees one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def interpreter_enabled() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


_triton_status: dict = {}


def triton_import_error() -> Optional[str]:
    """None when Triton imports, else the reason it does not (checked once, lazily)."""
    if "error" not in _triton_status:
        try:
            import triton  # noqa: F401
            import triton.language  # noqa: F401
            _triton_status["error"] = None
        except Exception as exc:  # ImportError, or a broken install raising something else
            _triton_status["error"] = f"{type(exc).__name__}: {exc}"
    return _triton_status["error"]


def _triton_obstacle(tensors: Tuple[torch.Tensor, ...], forced: bool) -> Optional[str]:
    """Why Triton cannot run on these tensors, or None when it can.

    CPU tensors run in Triton's interpreter only when the backend is forced to "triton": the
    interpreter is a testing tool, far slower than the reference.
    """
    for t in tensors:
        if t.dtype not in KERNEL_DTYPES:
            return f"the kernels take float32, float16 and bfloat16, not {t.dtype}"
        on_interpreter = forced and t.device.type == "cpu" and interpreter_enabled()
        if t.device.type != "cuda" and not on_interpreter:
            return (f"the tensor is on {t.device.type}; Triton runs on CUDA tensors, or on CPU "
                    "tensors when TRITON_INTERPRET=1 is set before Triton is imported")
    reason = triton_import_error()
    if reason is not None:
        return f"Triton does not import ({reason})"
    return None


def backend_for(*tensors: torch.Tensor) -> str:
    """The path ("triton" or "torch") a hot computation takes for these tensors now.

    Raises RuntimeError when the backend is forced to "triton" and Triton cannot run them.
    Under ``torch.compile`` the answer is taken once, when the graph is traced.
    """
    requested = get_backend()
    if requested == "torch":
        return "torch"
    obstacle = _triton_obstacle(tensors, forced=requested == "triton")
    if obstacle is None:
        return "triton"
    if requested == "triton":
        raise RuntimeError(f"fastobj backend 'triton' was forced but cannot run: {obstacle}")
    return "torch"
