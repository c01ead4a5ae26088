"""Anisotropic L1 total variation over the last two dims: Triton forward and backward.

The value is ``Σ|x[..., i+1, :] - x[..., i, :]| + Σ|x[..., :, j+1] - x[..., :, j]|`` summed over
every leading index, accumulated in float32 (``fastobj.functional.total_variation_ref``).

Logical view
------------
Both kernels see the input as ``N`` planes of ``H`` rows, each row a run of ``L`` elements, with
element strides ``(stride_n, stride_h, stride_l)``. The *column neighbour* of row element ``k``
is element ``k + K`` (it exists when ``k + K < L``). Two layouts map onto this view without a
copy:

* planes (``K = 1``): ``x`` is ``(*lead, H, W)`` whose leading dims collapse into one
  (contiguous NCHW, batch slices, channel slices, ...): ``N = prod(lead)``, ``L = W``.
* channels-last (``K = C``): ``x`` is ``(*lead, C, H, W)`` with ``stride(W) == C*stride(C)``
  (``torch.channels_last``): a row is the interleaved run of ``W*C`` elements ``(w, c)``,
  ``L = W*C``, and the column neighbour of ``(w, c)`` is ``K = C`` elements further on. Loads
  then run along the memory-contiguous axis.

A tensor whose last dim is strided but whose second-to-last is unit-stride (a transpose) goes
through ``x.mT``: total variation is symmetric in its last two dims. Any other layout (leading
dims that do not collapse into one stride) is copied to contiguous once, a documented fallback
that costs one extra read and write.

Tiling and grid
---------------
A tile is ``BLOCK_N x BLOCK_L`` (plane, row-element) positions; a *tile row* is one row ``h`` of
a tile, and the work is the ``n_tiles * H`` tile rows numbered tile-major. Each program takes
an equal contiguous span of them (``rows_per_prog``, possibly running across tile boundaries)
and walks down its rows carrying in registers the rows it still needs (the forward the previous
row; the backward, which writes two rows per loop step, rows h-1 and h, kept in x's dtype), so
each row is read from memory once. The horizontal neighbours are shifted loads of the same
row, served from L1. Each tile segment of a span re-reads one halo row above it (the backward
also one below, two after a segment of odd length): at most ``3/_MIN_ROWS`` extra reads,
mostly L2 hits since neighbouring spans run at the same time. The 1-D grid holds as many
programs as stay resident on the GPU at once (registers capped with ``maxnreg`` where that
costs no spill): one full wave, equal work per program, no tail. A forward planes row step is
``TILE_BYTES`` of x over 8 warps (two 16-byte loads per thread, whatever the dtype); a
backward row is ``TILE_BYTES`` of float32 whatever the dtype (``_tile_elements``); the
variants are listed in ``_launch_config``.

Launch arithmetic, PREDICTIONS for an H200 (132 SMs, ~4.3 TB/s copy bandwidth counting read +
write bytes, ~0.8 us loaded latency), not measured, at 64x3x512x512 (registers: ptxas on
sm_90a, Triton 3.9 and 3.6):

* forward: 391 programs (float32, 4x512 tiles) or 384 (16-bit, 8x512) of the 396 resident
  slots (132 SMs x 3 programs of 8 warps at the 72-register cap; 60-72 registers, no spill):
  one wave. Each program keeps one 8 KiB row in flight, 24 KiB per SM, which by Little's law
  is 132 x 24 KiB / 0.8 us ~ 4.0 TB/s of reads, over 90% of copy bandwidth.
* backward: 391 programs in every dtype (4x512 tiles) of the same 396 slots (80-register cap;
  76-80 registers, no spill). Each step has two rows in flight (h+1 and h+2: 2 x 4 KiB in
  16-bit, 2 x 8 KiB in float32), 24 or 48 KiB per SM: >= 4.0 TB/s of reads by Little's law.
  It writes as many bytes as it reads, so copy bandwidth binds first: ~4.3 TB/s of traffic,
  reads at ~2.15 TB/s, which need only ~13 KiB in flight per SM (24 KiB still suffice at a
  loaded latency of ~1.5 us).
* forward + backward moves 3n bytes (n = x's bytes, see ``cost``): n at ~4.0 TB/s, then 2n at
  ~4.3 TB/s, 3n / (n/4.0 + 2n/4.3) ~ 4.2 TB/s, ~97% of copy bandwidth (goal: >= 85%). Only
  latency and the copy ceiling are modelled: expect less.

Offsets: the tile's base offset is a 64-bit scalar; in-tile offsets are int32 unless the
launcher finds they could reach 2**31 (``WIDE``), so tensors beyond 2**31 elements are safe.

Determinism: the forward writes one float32 partial per program; ``_common.sum_rows`` then
sums the partials in a fixed order and writes the result in the caller's dtype. No atomics;
repeats are bitwise equal.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
import triton
import triton.language as tl

from . import _common
from ._common import (
    Launch,
    cdiv,
    contiguous_strides,
    needs_int64,
    next_power_of_2,
    on_input_device,
    plan_cache,
    plan_key,
    resident_grid,
    sum_rows,
    tile_offsets,
)

_MIN_ROWS = 16  # shortest span of rows per program (bounds the halo re-reads to 3/16)
_INTERPRETER_PROGRAMS = 4
# variant -> (num_warps, resident programs per SM, register caps (forward, backward)); None
# leaves the count to ptxas. 3 programs of 8 warps fit an SM's 65536 registers at up to 80
# registers a thread (allocated in steps of 8), 2 at up to 128. See _launch_config.
_VARIANTS = {"planes": (8, 3, (72, 80)), "channels_last": (8, 3, (None, 80)),
             "general": (8, 2, (None, 128))}


@triton.jit
def _sign(d):
    return (d > 0).to(tl.float32) - (d < 0).to(tl.float32)


@triton.jit
def _span_segment(r, end, H, N, L, K, n_tiles_l, rn, rl,
                  BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr):
    """The segment of a span that starts at tile row r and stays in r's tile: rows [h0, h1)
    of the tile whose origin is (plane n0, row element l0), the tile's mask and the mask of the
    elements whose column neighbour (k + K) exists. Shared by the forward and backward."""
    tile = r // H
    h0 = r - tile * H
    h1 = tl.minimum(H, h0 + (end - r))
    n0 = (tile // n_tiles_l) * BLOCK_N
    l0 = (tile % n_tiles_l) * BLOCK_L
    mask = (n0 + rn < N)[:, None] & (l0 + rl < L)[None, :]
    mask_right = mask & (l0 + rl + K < L)[None, :]
    return h0, h1, n0, l0, mask, mask_right


@triton.jit
def _tv_forward_kernel(x_ptr, partial_ptr, N, H, L, K, stride_n, stride_h, stride_l,
                       n_tiles_l, total_rows, rows_per_prog,
                       BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr, WIDE: tl.constexpr):
    """Partial total variation of one program's span of tile rows.

    Work is numbered as tile rows r = tile * H + h (tile-major); program pid takes the span
    [pid * rows_per_prog, (pid + 1) * rows_per_prog), which may run across tile boundaries.

    Buffers:
      x_ptr        input, logical (N, H, L) with element strides (stride_n, stride_h, stride_l);
                   float32, float16 or bfloat16. The column neighbour of element k is k + K.
      partial_ptr  float32 (num_programs,): this program's sum of |vertical differences| over
                   the row pairs (h-1, h), h in its span, plus |horizontal differences| of
                   those rows.
    Cost: reads N*H*L elements once from DRAM (plus one halo row per tile segment; the shifted
    horizontal loads hit L1) and writes 4 bytes per program. FLOPs: 2 subtractions,
    2 absolute values and 2 additions per element, ~6*N*H*L.
    """
    pid = tl.program_id(0)
    rn = tl.arange(0, BLOCK_N)
    rl = tl.arange(0, BLOCK_L)
    offsets = tile_offsets(rn, rl, stride_n, stride_l, WIDE)
    right_offsets = offsets + K * stride_l
    step = tl.cast(stride_h, tl.int64)
    acc = tl.zeros((BLOCK_N, BLOCK_L), dtype=tl.float32)

    r = pid * rows_per_prog
    end = tl.minimum(r + rows_per_prog, total_rows)
    while r < end:  # one iteration per tile the span touches
        h0, h1, n0, l0, mask, mask_right = _span_segment(r, end, H, N, L, K, n_tiles_l, rn, rl,
                                                         BLOCK_N, BLOCK_L)
        base = x_ptr + (n0.to(tl.int64) * stride_n + l0.to(tl.int64) * stride_l)
        # The row above the segment (row 0 itself at the top: that difference is zero).
        prev = tl.load(base + tl.maximum(h0 - 1, 0).to(tl.int64) * step + offsets, mask=mask,
                       other=0.0).to(tl.float32)
        row_offset = h0.to(tl.int64) * step  # a 64-bit scalar carried down the rows
        for _ in range(h0, h1):
            row = base + row_offset
            cur = tl.load(row + offsets, mask=mask, other=0.0).to(tl.float32)
            right = tl.load(row + right_offsets, mask=mask_right, other=0.0).to(tl.float32)
            acc += tl.abs(cur - prev) + tl.where(mask_right, tl.abs(right - cur), 0.0)
            prev = cur
            row_offset += step
        r += h1 - h0
    tl.store(partial_ptr + pid, tl.sum(tl.sum(acc, axis=1), axis=0))


@triton.jit
def _store_row_grad(up, row, down, x_row, o_row, x_offsets, o_offsets, shift, g,
                    mask, mask_left, mask_right):
    """Write one row's gradient, g * (sign(row - up) - sign(down - row)
    + sign(row - left) - sign(right - row)), in out's dtype.

    up, row, down: rows h-1, h, h+1 as loaded (x's dtype), the row itself where that
    neighbour is missing (the difference is then zero); x_row / o_row: pointers to row h of
    the tile in x and out. The shifted rows left/right (k -+ K) are loaded here, from L1.
    """
    cur = row.to(tl.float32)
    left = tl.load(x_row - shift + x_offsets, mask=mask_left, other=0.0).to(tl.float32)
    right = tl.load(x_row + shift + x_offsets, mask=mask_right, other=0.0).to(tl.float32)
    s_up = _sign(cur - up.to(tl.float32))
    s_down = _sign(down.to(tl.float32) - cur)
    s_left = tl.where(mask_left, _sign(cur - left), 0.0)
    s_right = tl.where(mask_right, _sign(right - cur), 0.0)
    grad = g * (s_up - s_down + s_left - s_right)
    tl.store(o_row + o_offsets, grad.to(o_row.dtype.element_ty), mask=mask)


@triton.jit
def _tv_backward_kernel(x_ptr, grad_ptr, out_ptr, N, H, L, K,
                        sx_n, sx_h, sx_l, so_n, so_h, so_l,
                        n_tiles_l, total_rows, rows_per_prog,
                        BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr, WIDE: tl.constexpr,
                        SAME_LAYOUT: tl.constexpr):
    """Gradient of the total variation over one program's span of tile rows (as the forward).

    out[h, k] = g * (sign(x[h,k] - x[h-1,k]) - sign(x[h+1,k] - x[h,k])
                     + sign(x[h,k] - x[h,k-K]) - sign(x[h,k+K] - x[h,k]))
    with sign(0) = 0 (as torch's abs backward) and missing neighbours contributing nothing.

    Each loop step writes two rows, h and h+1, from rows h-1 .. h+2: rows h-1 and h are
    carried from the previous step, rows h+1 and h+2 are loaded (two independent row loads in
    flight), all kept in x's dtype until used. A segment of odd length ends with a step that
    writes row h only; rows past the plane's last are read as that last row (their difference
    is zero, and row H-1's neighbour below is missing).

    Buffers:
      x_ptr     input, logical (N, H, L), strides (sx_n, sx_h, sx_l); float32/float16/bfloat16.
      grad_ptr  0-dim upstream gradient g (any float dtype), read on the device.
      out_ptr   gradient, logical (N, H, L), strides (so_n, so_h, so_l), x's dtype.
    Cost: reads N*H*L elements once from DRAM (per tile segment the halo row above and one
    or two below, mostly L2 hits; the shifted loads come from L1) and writes N*H*L elements.
    FLOPs: ~15 per element (4 differences, 4 signs, 4 additions, 1 multiplication).
    """
    pid = tl.program_id(0)
    rn = tl.arange(0, BLOCK_N)
    rl = tl.arange(0, BLOCK_L)
    x_offsets = tile_offsets(rn, rl, sx_n, sx_l, WIDE)
    if SAME_LAYOUT:  # out has x's strides (the usual case): one offset tile fewer in registers
        o_offsets = x_offsets
    else:
        o_offsets = tile_offsets(rn, rl, so_n, so_l, WIDE)
    shift = K * sx_l
    x_step = tl.cast(sx_h, tl.int64)
    o_step = tl.cast(so_h, tl.int64)
    g = tl.load(grad_ptr).to(tl.float32)

    r = pid * rows_per_prog
    end = tl.minimum(r + rows_per_prog, total_rows)
    while r < end:  # one iteration per tile the span touches
        h0, h1, n0, l0, mask, mask_right = _span_segment(r, end, H, N, L, K, n_tiles_l, rn, rl,
                                                         BLOCK_N, BLOCK_L)
        mask_left = mask & (l0 + rl >= K)[None, :]
        x_base = x_ptr + (n0.to(tl.int64) * sx_n + l0.to(tl.int64) * sx_l)
        o_base = out_ptr + (n0.to(tl.int64) * so_n + l0.to(tl.int64) * so_l)
        # Rows h0-1 (row 0 itself at the top: that difference is zero) and h0.
        prev = tl.load(x_base + tl.maximum(h0 - 1, 0).to(tl.int64) * x_step + x_offsets,
                       mask=mask, other=0.0)
        x_row_offset = h0.to(tl.int64) * x_step  # 64-bit scalars carried down the rows
        o_row_offset = h0.to(tl.int64) * o_step
        cur = tl.load(x_base + x_row_offset + x_offsets, mask=mask, other=0.0)
        for h in range(h0, h1, 2):
            row = x_base + x_row_offset
            # Rows h+1 and h+2, each the row above it again past the plane's last row.
            below = row + tl.where(h + 1 < H, x_step, 0)
            below2 = below + tl.where(h + 2 < H, x_step, 0)
            nxt = tl.load(below + x_offsets, mask=mask, other=0.0)
            nxt2 = tl.load(below2 + x_offsets, mask=mask, other=0.0)
            _store_row_grad(prev, cur, nxt, row, o_base + o_row_offset, x_offsets, o_offsets,
                            shift, g, mask, mask_left, mask_right)
            if h + 1 < h1:
                _store_row_grad(cur, nxt, nxt2, below, o_base + o_row_offset + o_step,
                                x_offsets, o_offsets, shift, g, mask, mask_left, mask_right)
            prev = nxt
            cur = nxt2
            x_row_offset += 2 * x_step
            o_row_offset += 2 * o_step
        r += h1 - h0


# --------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------

class _View(NamedTuple):
    """x as N planes of H rows of L elements, column neighbour K elements on (module docstring)."""
    N: int
    H: int
    L: int
    K: int
    stride_n: int
    stride_h: int
    stride_l: int


def _collapse(shape, strides) -> Optional[Tuple[int, int]]:
    """(size, stride) of dims merged into one, or None when they do not form a single stride."""
    dims = [(s, st) for s, st in zip(shape, strides) if s != 1]
    if not dims:
        return 1, 0
    size, stride = dims[-1]
    for s, st in reversed(dims[:-1]):
        if st != stride * size:
            return None
        size *= s
    return size, stride


def _view(shape, strides, channels_last: bool):
    """The _View of a tensor of this shape and these strides in the requested layout, or
    None."""
    if not channels_last:
        lead = _collapse(shape[:-2], strides[:-2])
        if lead is None:
            return None
        return _View(lead[0], shape[-2], shape[-1], 1, lead[1], strides[-2], strides[-1])
    if len(shape) < 3:
        return None
    c, w = shape[-3], shape[-1]
    if w > 1 and strides[-1] != c * strides[-3]:
        return None
    lead = _collapse(shape[:-3], strides[:-3])
    if lead is None:
        return None
    return _View(lead[0], shape[-2], w * c, c, lead[1], strides[-2], strides[-3])


def _is_channels_last(shape, strides) -> bool:
    return len(shape) >= 3 and shape[-3] > 1 and strides[-3] == 1 and strides[-1] != 1


def _swap_last(seq):
    return (*seq[:-2], seq[-1], seq[-2])


def _layout(shape, strides, out_strides=None):
    """How the kernels see x (shape, strides) and out (out_strides, the gradient buffer, or
    None in the forward), without copying when a view fits.

    Returns (how, view_x, view_out): how is "as_is", "transposed" (both seen through .mT: TV
    is symmetric in its last two dims) or "copy" (no view fits: the kernels take a contiguous
    copy of x and a fresh contiguous buffer, which the caller copies into out).
    """
    original = shape
    layouts = [strides] if out_strides is None else [strides, out_strides]
    if _is_channels_last(shape, strides):
        views = [_view(shape, st, True) for st in layouts]
        if all(v is not None for v in views) and len({v[:4] for v in views}) == 1:
            return "as_is", views[0], views[-1]
    how = "as_is"
    if shape[-1] > 1 and strides[-1] != 1 and strides[-2] == 1:
        how, shape, layouts = "transposed", _swap_last(shape), [_swap_last(st) for st in layouts]
    views = [_view(shape, st, False) for st in layouts]
    if all(v is not None for v in views):
        return how, views[0], views[-1]
    v = _view(original, contiguous_strides(original), False)
    return "copy", v, v


def _wide(block_n: int, block_l: int, k: int, views) -> bool:
    """Whether the largest in-tile offset (shifted neighbour loads included) of any view can
    reach 2**31, so that in-tile offsets need int64."""
    return needs_int64(*[((block_n, v.stride_n), (block_l + k, v.stride_l)) for v in views])


def _tile_elements(dtype: torch.dtype, variant: str, backward: bool) -> int:
    """Elements of one row of a tile. The forward streams TILE_BYTES of x per row step (16-bit
    tiles hold twice the elements of float32 ones: the same bytes in flight). The backward's
    rows are TILE_BYTES of float32 for every dtype: a step holds rows h-1 .. h+2 and a row's two
    shifted loads (a 32-bit register per shifted element), and 16-bit rows of TILE_BYTES (16
    elements a thread) spill at the 80-register cap (sm_90a spill stores: 80-88 bytes on Triton
    3.9, 156-208 on 3.6). With two rows per step its 16-bit tiles keep as many bytes in flight
    as the forward's. Other variants than "planes" take half (see _launch_config)."""
    elements = _common.TILE_BYTES // (4 if backward else dtype.itemsize)
    return elements if variant == "planes" else elements // 2


def _launch_config(dtype: torch.dtype, device: torch.device, view: _View,
                   out_view: Optional[_View] = None):
    """(Launch, rows per program, tiles along L, tile rows) of the forward for x (dtype, on
    device) seen through `view`, or of the backward when the gradient buffer's out_view is
    given.

    Variants, by the registers they need (sm_90a, Triton 3.9 and 3.6, from the AOT compile
    report), each with as many programs per SM as stay resident:

    * "planes" (unit stride along L, K = 1, x and out alike, int32 offsets): the tiles of
      _tile_elements, 8 warps, registers capped at 72 in the forward (60-72 used; at a cap of
      64 Triton 3.6 spills 8-12 bytes in 16-bit) and 80 in the backward (76-80 used): 3
      programs per SM;
    * "channels_last" (the same with K > 1: the shifted loads are unaligned): half those tiles,
      8 warps, the forward uncapped (32-57 registers; caps of 64-80 spill on 3.6), the
      backward capped at 80 (79-80 used; uncapped, 3.6 takes 101 in bfloat16, room for only 2
      programs per SM; at 72 it spills): 3 per SM;
    * "general" (strided rows, int64 offsets, x and out laid out differently): half the tiles,
      8 warps, the forward uncapped (32-80 registers), the backward capped at 128 (85-128
      used): 2 programs per SM.

    The tile rows (n_tiles * H of them) are dealt out in equal contiguous spans to a grid of
    resident programs (one wave, _common.resident_grid), so every program does the same work,
    give or take one row: no tail wave. Spans are at least _MIN_ROWS rows, which bounds the
    halo re-reads. In the interpreter (CPU tensors, unless FASTOBJ_SM_COUNT is set) the grid
    is _INTERPRETER_PROGRAMS programs, enough to cross tile boundaries inside a span.
    """
    views = (view,) if out_view is None else (view, out_view)
    unit = all(v.stride_l == 1 for v in views)
    same = all(v[4:] == view[4:] for v in views)
    variant = ("planes" if view.K == 1 else "channels_last") if unit and same else "general"
    backward = out_view is not None
    tile = _tile_elements(dtype, variant, backward)
    block_l = min(next_power_of_2(view.L), tile)
    block_n = min(next_power_of_2(view.N), max(1, tile // block_l))
    wide = _wide(block_n, block_l, view.K, views)
    if wide:
        variant = "general"
    num_warps, per_sm, caps = _VARIANTS[variant]
    n_tiles_l = cdiv(view.L, block_l)
    total_rows = cdiv(view.N, block_n) * n_tiles_l * view.H
    programs = resident_grid(device, per_sm, _INTERPRETER_PROGRAMS, total_rows)
    rows = max(_MIN_ROWS, cdiv(total_rows, programs))
    launch = Launch((cdiv(total_rows, rows),),
                    dict(BLOCK_N=block_n, BLOCK_L=block_l, WIDE=wide),
                    num_warps=num_warps, maxnreg=caps[backward])
    return launch, rows, n_tiles_l, total_rows


@plan_cache
def _forward_plan(shape, strides, dtype: torch.dtype, device: torch.device, _grid_key):
    """(how, launch, kernel arguments after the pointers) of the forward for x of
    this shape, strides and dtype (see _layout; cached per plan_key)."""
    how, view, _ = _layout(shape, strides)
    launch, rows, n_tiles_l, total_rows = _launch_config(dtype, device, view)
    return how, launch, (*view, n_tiles_l, total_rows, rows)


@plan_cache
def _backward_plan(shape, strides, out_strides, dtype: torch.dtype, device: torch.device,
                   _grid_key):
    """(how, launch, kernel arguments after the pointers) of the backward writing into a
    gradient buffer with out_strides (see _layout; cached per plan_key)."""
    how, view_x, view_o = _layout(shape, strides, out_strides)
    launch, rows, n_tiles_l, total_rows = _launch_config(dtype, device, view_x, view_o)
    launch = launch.with_constexprs(SAME_LAYOUT=view_x[4:] == view_o[4:])
    return how, launch, (*view_x, *view_o[4:], n_tiles_l, total_rows, rows)


def _seen(t: torch.Tensor, how: str) -> torch.Tensor:
    return t.mT if how == "transposed" else t


@on_input_device
def total_variation_forward(x: torch.Tensor,
                            out_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Total variation of x (rank >= 2) as a 0-dim tensor of out_dtype, summed in float32
    and rounded once; see the module docstring. Two launches: the partials and their sum,
    which writes the result in out_dtype (no fill, no cast)."""
    if x.dim() < 2:
        raise ValueError(f"total_variation needs rank >= 2, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        return torch.zeros((), dtype=out_dtype, device=x.device)
    how, launch, args = _forward_plan(x.shape, x.stride(), x.dtype, x.device, plan_key())
    x = x.contiguous() if how == "copy" else _seen(x, how)
    partial = torch.empty((1, launch.grid[0], 1), dtype=torch.float32, device=x.device)
    launch(_tv_forward_kernel, x, partial, *args)
    out = torch.empty((), dtype=out_dtype, device=x.device)
    sum_rows(partial, out)
    return out


@on_input_device
def total_variation_backward(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Gradient of the total variation w.r.t. x for a 0-dim upstream gradient (read on device).

    Returns a tensor of x's shape and dtype with ``torch.empty_like(x)``'s strides, as the op's
    fake implementation promises.
    """
    if x.dim() < 2:
        raise ValueError(f"total_variation needs rank >= 2, got shape {tuple(x.shape)}")
    result = torch.empty_like(x)
    if x.numel() == 0:
        return result
    how, launch, args = _backward_plan(x.shape, x.stride(), result.stride(), x.dtype, x.device,
                                       plan_key())
    if how == "copy":  # rare layouts: the kernel writes a contiguous buffer, copied back
        xv = x.contiguous()
        ov = torch.empty_like(xv)
    else:
        xv, ov = _seen(x, how), _seen(result, how)
    launch(_tv_backward_kernel, xv, grad, ov, *args)
    if how == "copy":
        result.copy_(ov)
    return result

# --------------------------------------------------------------------------------------------
# Cost model: the roofline floor that `fastobj bench` rates each measurement against.
# --------------------------------------------------------------------------------------------

def cost(shape: tuple, dtype: torch.dtype, mode: str) -> tuple:
    """``(bytes, flops)`` a total-variation call must at least move and do, for ``mode`` "fwd"
    or "fwd+bwd" on an input of ``shape`` (..., H, W) in ``dtype``, n elements.

    Bytes: the forward reads x once, n·elt; the backward reads x again (the gradient needs the
    signs of the differences) and writes the gradient, so fwd+bwd moves 3·n·elt. The float32
    partial sums are negligible. FLOPs, for reference only (memory-bound: judge it against the
    copy bandwidth): per element two differences, two absolute values and two adds forward
    (6·n), and as many backward (12·n for fwd+bwd).
    """
    if mode not in ("fwd", "fwd+bwd"):
        raise ValueError(f"total_variation cost: mode must be 'fwd' or 'fwd+bwd', got {mode!r}")
    elements = torch.Size(shape).numel()
    passes = 3 if mode == "fwd+bwd" else 1
    return elements * dtype.itemsize * passes, 6 * elements * (2 if mode == "fwd+bwd" else 1)
