"""fastobj: feature-visualization objectives for PyTorch, with fused Triton kernels.

Importing fastobj needs only PyTorch: Triton is imported the first time a kernel runs, and
CUDA is never queried at import time.
"""
import importlib.metadata

from . import objectives
from .backend import backend_for, get_backend, set_backend, use_backend
from .hooks import ActivationFetcher, ModuleOutputsHook, collect_activations
from .layout import Pooled, Tokens
from .loss import (
    BaseLoss,
    CompositeLoss,
    Loss,
    default_loss_summarize,
    module_op,
    rmodule_op,
    sum_loss_list,
)
from .objectives import *  # noqa: F401,F403 - the 18 objectives, named once in objectives.__all__

# The installed distribution's version: pyproject.toml is its one source (`fastobj --version`).
__version__ = importlib.metadata.version(__name__)

__all__ = [
    "Loss", "BaseLoss", "CompositeLoss", "module_op", "rmodule_op", "sum_loss_list",
    "default_loss_summarize",
    *objectives.__all__,
    "ModuleOutputsHook", "ActivationFetcher", "collect_activations", "Tokens", "Pooled",
    "backend_for", "get_backend", "set_backend", "use_backend",
]
