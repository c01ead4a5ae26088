"""Triton helpers shared by the kernel modules of ``fastobj.kernels`` (inlined where called)."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def tile_offsets(rows, cols, stride_rows, stride_cols, WIDE: tl.constexpr):
    """Element offsets of a 2-D tile, relative to its base pointer.

    rows (R,) and cols (K,) are the tile's in-tile indices along its two axes, and
    stride_rows / stride_cols the element strides of those axes; the result is the (R, K)
    block rows[:, None] * stride_rows + cols[None, :] * stride_cols. It is computed in int64
    when WIDE (the launcher found that an offset could reach 2**31), in int32 otherwise, which
    keeps the address arithmetic narrow; the tile's base offset is the caller's, as a 64-bit
    scalar.
    """
    if WIDE:
        offsets = (rows.to(tl.int64)[:, None] * stride_rows
                   + cols.to(tl.int64)[None, :] * stride_cols)
    else:
        offsets = rows[:, None] * stride_rows + cols[None, :] * stride_cols
    return offsets
