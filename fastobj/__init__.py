"""fastobj: feature-visualization objectives for PyTorch, with fused Triton kernels."""
from .backend import backend_for, get_backend, set_backend, use_backend

__version__ = "0.1.0"
