"""Writing a batch of rendered images as one PNG grid, with no imaging library.

:func:`make_grid` tiles a ``(B, 3, H, W)`` batch into one image, optionally with a number
under each tile (drawn with a built-in 3x5 pixel digit font); :func:`upscale` enlarges an
image by nearest neighbour for viewing; :func:`save_png` writes a ``(3, H, W)`` image in
``[0, 1]`` as an 8-bit RGB PNG with a small encoder (zlib + the Paeth filter).
"""
from __future__ import annotations

import math
import struct
import zlib
from typing import Optional, Sequence

import numpy as np
import torch

__all__ = ["make_grid", "upscale", "save_png"]

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


def _paeth_filter(rows: np.ndarray) -> np.ndarray:
    """PNG filter type 4 applied to every scanline of ``rows`` ((H, W, 3) uint8)."""
    x = rows.astype(np.int16)
    a = np.zeros_like(x)
    a[:, 1:] = x[:, :-1]  # left pixel
    b = np.zeros_like(x)
    b[1:] = x[:-1]  # pixel above
    c = np.zeros_like(x)
    c[1:, 1:] = x[:-1, :-1]  # above-left
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    return ((x - pred) % 256).astype(np.uint8)


def save_png(image: torch.Tensor, path: str) -> None:
    """Write a ``(3, H, W)`` image with values in [0, 1] as an 8-bit RGB PNG."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {tuple(image.shape)}")
    pixels = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    rows = pixels.permute(1, 2, 0).contiguous().numpy()
    h, w, _ = rows.shape
    filtered = _paeth_filter(rows).reshape(h, w * 3)
    raw = np.concatenate([np.full((h, 1), 4, dtype=np.uint8), filtered], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
