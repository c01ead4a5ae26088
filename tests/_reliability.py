"""Helpers shared by the reliability tests (validation, special values, properties,
determinism): the two backends, which objectives reach a kernel, error-message patterns and
evaluation of a value with its gradients.

The "triton" backend runs the kernels of ``kernels/`` (in Triton's interpreter on CPU, which
conftest switches on). A kernel module that is missing or does not import is a failure of
those cases, never a skip.
"""
from __future__ import annotations

import re

import torch

import fastobj as fo

BACKENDS = ("torch", "triton")

# The objectives whose forward or backward reaches a kernel (kernels/<name>.py).
WITH_KERNEL = {"Diversity", "TotalVariation", "Direction", "NeuronDirection",
               "AngledNeuronDirection", "TensorDirection", "VectorLoss", "FacetLoss"}


def named(owner: str, *words: str) -> str:
    """A regex matching a message that names ``owner`` and then each of ``words`` in order."""
    return re.escape(owner) + "".join(".*" + re.escape(w) for w in words)


def evaluate(loss, acts: dict, backend: str, weight_seed: int = 7):
    """Value and gradients (w.r.t. every tensor in ``acts`` that requires grad) on a backend.

    The upstream gradient is a fixed random tensor (not ones), so backward formulas that only
    hold for a unit upstream gradient are caught.
    """
    leaves = {k: v for k, v in acts.items() if isinstance(v, torch.Tensor) and v.requires_grad}
    for v in leaves.values():
        v.grad = None
    with fo.use_backend(backend):
        value = loss(acts)
        g = torch.Generator().manual_seed(weight_seed)
        upstream = (torch.rand(value.shape, generator=g, dtype=torch.float64) + 0.5)
        (value.double() * upstream).sum().backward()
    grads = {k: None if v.grad is None else v.grad.clone() for k, v in leaves.items()}
    return value.detach().clone(), grads
