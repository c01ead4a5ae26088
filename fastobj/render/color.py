"""The colour basis images are optimised in.

Natural images' RGB channels are strongly correlated. Image objects therefore optimise three
roughly decorrelated channels and map them to RGB with a fixed 3x3 matrix ``M``
(:func:`decorrelate_colors`), so the optimizer's steps are not dominated by the shared
brightness; MACO's magnitude spectrum is measured in the same basis
(:mod:`fastobj.render.spectrum`, which maps RGB back with ``M^-1``).
"""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["COLOR_CORRELATION_SVD_SQRT", "color_matrix", "decorrelate_colors"]

# Square root (via SVD) of the channel covariance of ImageNet RGB pixels, as estimated for Lucid.
# Column j is the RGB colour that raw channel j contributes.
COLOR_CORRELATION_SVD_SQRT = torch.tensor([
    [0.26, 0.09, 0.02],
    [0.27, 0.00, -0.05],
    [0.27, -0.09, 0.03],
])


def color_matrix() -> torch.Tensor:
    """``M``: the correlation matrix scaled so that its largest column has unit Euclidean norm."""
    m = COLOR_CORRELATION_SVD_SQRT
    return m / m.norm(dim=0).max()


def decorrelate_colors(raw: torch.Tensor, matrix: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Map raw channels to correlated RGB: ``rgb[b, :, y, x] = M @ raw[b, :, y, x]`` (or
    ``matrix`` instead of ``M``)."""
    m = color_matrix() if matrix is None else matrix
    return torch.einsum("ij,bjhw->bihw", m.to(device=raw.device, dtype=raw.dtype), raw)
