"""fastobj: feature-visualization objectives for PyTorch, with fused Triton kernels.

Importing fastobj needs only PyTorch: Triton is imported the first time a kernel runs, and
CUDA is never queried at import time.
"""
from .backend import backend_for, get_backend, set_backend, use_backend
from .hooks import ActivationFetcher, ModuleOutputsHook, collect_activations
from .loss import (BaseLoss, CompositeLoss, Loss, default_loss_summarize, module_op, rmodule_op,
                   sum_loss_list)
from . import objectives
from .objectives import *  # noqa: F401,F403 - the 18 objectives, named once in objectives.__all__
from .layout import Pooled, Tokens

__version__ = "0.1.0"

__all__ = [
    "Loss", "BaseLoss", "CompositeLoss", "module_op", "rmodule_op", "sum_loss_list",
    "default_loss_summarize",
    *objectives.__all__,
    "ModuleOutputsHook", "ActivationFetcher", "collect_activations", "Tokens", "Pooled",
    "backend_for", "get_backend", "set_backend", "use_backend",
]
