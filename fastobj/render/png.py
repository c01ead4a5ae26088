"""Writing a batch of rendered images as one PNG grid, with no imaging library.

:func:`make_grid` tiles a ``(B, 3, H, W)`` batch into one image; :func:`save_png` writes a
``(3, H, W)`` image in ``[0, 1]`` as an 8-bit RGB PNG with a small encoder (zlib + the Paeth
filter).
"""
from __future__ import annotations

import math
import struct
import zlib
from typing import Optional

import numpy as np
import torch

__all__ = ["make_grid", "save_png"]


def make_grid(images: torch.Tensor, nrow: Optional[int] = None, padding: int = 2,
              pad_value: float = 1.0) -> torch.Tensor:
    """Tile ``(B, 3, H, W)`` images into one ``(3, H', W')`` image, ``nrow`` per row
    (default: about a square), separated by ``padding`` pixels of ``pad_value``."""
    if images.dim() != 4:
        raise ValueError(f"expected (B, C, H, W) images, got shape {tuple(images.shape)}")
    b, c, h, w = images.shape
    ncol = nrow or max(1, math.ceil(math.sqrt(b)))
    nrows = math.ceil(b / ncol)
    grid = images.new_full((c, nrows * (h + padding) + padding, ncol * (w + padding) + padding),
                           pad_value)
    for i in range(b):
        r, q = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, top:top + h, left:left + w] = images[i]
    return grid


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
