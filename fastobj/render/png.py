"""Laying out a batch of rendered images as one picture, ready for :func:`.imageio.save_png`.

:func:`make_grid` tiles a ``(B, 3, H, W)`` batch into one image, optionally with a number
under each tile (drawn with a built-in 3x5 pixel digit font); :func:`upscale` enlarges an
image by nearest neighbour for viewing.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

__all__ = ["make_grid", "upscale"]

# Digits (and "-") 3 pixels wide and 5 high, one string per row, "#" for ink.
_GLYPHS = {
    "0": ("###", "#.#", "#.#", "#.#", "###"), "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"), "3": ("###", "..#", "###", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"), "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"), "7": ("###", "..#", "..#", "..#", "..#"),
    "8": ("###", "#.#", "###", "#.#", "###"), "9": ("###", "#.#", "###", "..#", "###"),
    "-": ("...", "...", "###", "...", "..."),
}
_GLYPH_SCALE = 2  # each font pixel is 2x2 image pixels
LABEL_HEIGHT = 5 * _GLYPH_SCALE + 4  # a label row: the text and 2 px above and below


def _label_mask(text: str) -> torch.Tensor:
    """``(5 * s, width)`` bool mask of ``text`` in the digit font, one blank column between
    characters."""
    columns = []
    for i, char in enumerate(text):
        if char not in _GLYPHS:
            raise ValueError(f"make_grid: labels may hold only digits and '-', got {text!r}")
        if i:
            columns.append(torch.zeros(5, 1, dtype=torch.bool))
        columns.append(torch.tensor([[c == "#" for c in row] for row in _GLYPHS[char]]))
    mask = torch.cat(columns, dim=1) if columns else torch.zeros(5, 0, dtype=torch.bool)
    return mask.repeat_interleave(_GLYPH_SCALE, 0).repeat_interleave(_GLYPH_SCALE, 1)


def make_grid(images: torch.Tensor, nrow: Optional[int] = None, padding: int = 2,
              pad_value: float = 1.0, labels: Optional[Sequence[str]] = None) -> torch.Tensor:
    """Tile ``(B, 3, H, W)`` images into one ``(3, H', W')`` image, ``nrow`` per row
    (default: about a square), separated by ``padding`` pixels of ``pad_value``.

    ``labels`` (one string of digits per image, e.g. channel numbers) are written in black
    under their tiles, in a row of :data:`LABEL_HEIGHT` pixels, cut at the tile's width.
    """
    if images.dim() != 4:
        raise ValueError(f"expected (B, C, H, W) images, got shape {tuple(images.shape)}")
    b, c, h, w = images.shape
    if labels is not None and len(labels) != b:
        raise ValueError(f"make_grid: {len(labels)} labels for {b} images")
    label_h = 0 if labels is None else LABEL_HEIGHT
    cell_h = h + label_h + padding
    ncol = nrow or max(1, math.ceil(math.sqrt(b)))
    nrows = math.ceil(b / ncol)
    grid = images.new_full((c, nrows * cell_h + padding, ncol * (w + padding) + padding),
                           pad_value)
    for i in range(b):
        r, q = divmod(i, ncol)
        top, left = padding + r * cell_h, padding + q * (w + padding)
        grid[:, top:top + h, left:left + w] = images[i]
        if labels is not None:
            mask = _label_mask(str(labels[i]))[:, :w].to(images.device)
            region = grid[:, top + h + 2:top + h + 2 + mask.shape[0],
                          left:left + mask.shape[1]]
            region[:, mask] = 0.0
    return grid


def upscale(image: torch.Tensor, factor: int) -> torch.Tensor:
    """Enlarge a ``(..., H, W)`` image ``factor`` times by nearest neighbour (sharp pixels)."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"upscale: factor must be a positive int, got {factor!r}")
    if factor == 1:
        return image
    return image.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)

