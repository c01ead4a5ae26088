"""fastobj: feature-visualization objectives for PyTorch, with fused Triton kernels.

Importing fastobj needs only PyTorch: Triton is imported the first time a kernel runs, and
CUDA is never queried at import time.
"""
from .backend import backend_for, get_backend, set_backend, use_backend
from .hooks import ActivationFetcher, ModuleOutputsHook, collect_activations
from .layout import Pooled, Tokens
from .loss import BaseLoss, CompositeLoss, Loss, default_loss_summarize, sum_loss_list
from .objectives import (ActivationInterpolation, ActivationWeights, Alignment,
                         AngledNeuronDirection, ChannelActivation, DeepDream, Direction,
                         Diversity, FacetLoss, L1, L2, L2Mean, LayerActivation,
                         NeuronActivation, NeuronDirection, TensorDirection, TotalVariation,
                         VectorLoss)

__version__ = "0.1.0"

__all__ = [
    "Loss", "BaseLoss", "CompositeLoss", "sum_loss_list", "default_loss_summarize",
    "LayerActivation", "ChannelActivation", "NeuronActivation", "DeepDream", "TotalVariation",
    "L1", "L2", "Diversity", "ActivationInterpolation", "Alignment", "Direction",
    "NeuronDirection", "AngledNeuronDirection", "TensorDirection", "ActivationWeights",
    "L2Mean", "VectorLoss", "FacetLoss",
    "ModuleOutputsHook", "ActivationFetcher", "collect_activations", "Tokens", "Pooled",
    "backend_for", "get_backend", "set_backend", "use_backend",
]
