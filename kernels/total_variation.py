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
and walks down its rows carrying the previous row (in the backward, the sign of the previous
vertical difference) in registers, so each row is read from memory once. The horizontal
neighbours are a second, shifted load of the same row, served from L1. Each tile segment of a
span re-reads one halo row above it (the backward also one below): at most ``2/_MIN_ROWS``
extra reads, mostly L2 hits since neighbouring spans run at the same time. The 1-D grid holds
as many programs as stay resident on the GPU at once (registers capped with ``maxnreg`` where
that costs no spill): one full wave, equal work per program, no tail. A planes tile holds ``_TILE`` elements
over 8 warps (8 per thread: two 16-byte loads in float32, one in 16-bit); the variants are
listed in ``_launch_config``.

Offsets: the tile's base offset is a 64-bit scalar; in-tile offsets are int32 unless the
launcher finds they could reach 2**31 (``WIDE``), so tensors beyond 2**31 elements are safe.

Determinism: the forward writes one float32 partial per program; a single-program kernel then
sums the partials in a fixed order. No atomics; repeats are bitwise equal.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from ._common import tile_offsets

_TILE = 2048  # elements per (plane, row-element) tile: 8 KiB per row step in float32
_SUM_BLOCK = 1024
_MIN_ROWS = 16  # shortest span of rows per program (bounds the halo re-reads to 1/16)
_INTERPRETER_PROGRAMS = 4
_MAX_REGISTERS = 64  # 4 programs of 256 threads (8 of 128) fit an SM's 64K registers
# variant -> (num_warps, resident programs per SM, register cap); see _launch_config.
_VARIANTS = {"planes": (8, 4, _MAX_REGISTERS), "channels_last": (4, 8, _MAX_REGISTERS),
             "general": (8, 2, None)}
_INT32_LIMIT = 2**31


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
def _tv_sum_kernel(partial_ptr, out_ptr, n, BLOCK: tl.constexpr):
    """Fixed-order sum of the forward partials (second stage, one program).

    Buffers: partial_ptr float32 (n,); out_ptr float32 (), the total variation.
    Cost: reads 4*n bytes, n additions.
    """
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for start in range(0, n, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        acc += tl.load(partial_ptr + offs, mask=offs < n, other=0.0)
    tl.store(out_ptr, tl.sum(acc, axis=0))


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

    Buffers:
      x_ptr     input, logical (N, H, L), strides (sx_n, sx_h, sx_l); float32/float16/bfloat16.
      grad_ptr  0-dim upstream gradient g (any float dtype), read on the device.
      out_ptr   gradient, logical (N, H, L), strides (so_n, so_h, so_l), x's dtype.
    Cost: reads N*H*L elements once from DRAM (two halo rows per tile segment; the shifted
    loads come from L1) and writes N*H*L elements. FLOPs: ~15 per element (4 differences,
    4 signs, 4 additions, 1 multiplication).
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
        prev = tl.load(x_base + tl.maximum(h0 - 1, 0).to(tl.int64) * x_step + x_offsets,
                       mask=mask, other=0.0).to(tl.float32)
        x_row_offset = h0.to(tl.int64) * x_step  # 64-bit scalars carried down the rows
        o_row_offset = h0.to(tl.int64) * o_step
        cur = tl.load(x_base + x_row_offset + x_offsets, mask=mask, other=0.0).to(tl.float32)
        s_up = _sign(cur - prev)  # zero on row 0, where prev is row 0 itself
        for h in range(h0, h1):
            row = x_base + x_row_offset
            # The next row, or this row again on the last one (that difference is then zero).
            below = tl.where(h + 1 < H, x_step, 0)
            nxt = tl.load(row + below + x_offsets, mask=mask, other=0.0).to(tl.float32)
            left = tl.load(row - shift + x_offsets, mask=mask_left, other=0.0).to(tl.float32)
            right = tl.load(row + shift + x_offsets, mask=mask_right, other=0.0).to(tl.float32)
            s_down = _sign(nxt - cur)
            s_left = tl.where(mask_left, _sign(cur - left), 0.0)
            s_right = tl.where(mask_right, _sign(right - cur), 0.0)
            grad = g * (s_up - s_down + s_left - s_right)
            tl.store(o_base + o_row_offset + o_offsets, grad.to(out_ptr.dtype.element_ty),
                     mask=mask)
            s_up = s_down
            cur = nxt
            x_row_offset += x_step
            o_row_offset += o_step
        r += h1 - h0


# --------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------

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


def _view(t: torch.Tensor, channels_last: bool):
    """(N, H, L, K, stride_n, stride_h, stride_l) of t in the requested layout, or None."""
    shape, strides = t.shape, t.stride()
    if not channels_last:
        lead = _collapse(shape[:-2], strides[:-2])
        if lead is None:
            return None
        return (lead[0], shape[-2], shape[-1], 1, lead[1], strides[-2], strides[-1])
    if t.dim() < 3:
        return None
    c, w = shape[-3], shape[-1]
    if w > 1 and strides[-1] != c * strides[-3]:
        return None
    lead = _collapse(shape[:-3], strides[:-3])
    if lead is None:
        return None
    return (lead[0], shape[-2], w * c, c, lead[1], strides[-2], strides[-3])


def _is_channels_last(t: torch.Tensor) -> bool:
    return t.dim() >= 3 and t.shape[-3] > 1 and t.stride(-3) == 1 and t.stride(-1) != 1


def _plan(x: torch.Tensor, out: Optional[torch.Tensor] = None):
    """Pick the copy-free view of x (and of out, the gradient buffer allocated like x).

    Returns (x_used, out_used, view_x, view_out, copied): x_used/out_used are x/out or their
    transposes (out_used then writes into out), or, when no view fits, a contiguous copy of x
    and a fresh contiguous buffer (copied=True: the caller copies that into out).
    """
    tensors = [x] if out is None else [x, out]
    if _is_channels_last(x):
        views = [_view(t, True) for t in tensors]
        if all(v is not None for v in views) and len({v[:4] for v in views}) == 1:
            return x, out, views[0], views[-1], False
    used = tensors
    if x.shape[-1] > 1 and x.stride(-1) != 1 and x.stride(-2) == 1:
        used = [t.mT for t in tensors]  # TV is symmetric in its last two dims
    views = [_view(t, False) for t in used]
    if all(v is not None for v in views):
        return used[0], (used[1] if out is not None else None), views[0], views[-1], False
    xc = x.contiguous()
    oc = None if out is None else torch.empty_like(xc)
    v = _view(xc, False)
    return xc, oc, v, v, True


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _wide(block_n: int, block_l: int, k: int, views) -> bool:
    """Whether the largest in-tile offset (shifted neighbour loads included) of any view can
    reach 2**31, so that in-tile offsets need int64."""
    return any((block_n - 1) * abs(v[4]) + (block_l - 1 + k) * abs(v[6]) >= _INT32_LIMIT
               for v in views)


def _launch_config(device: torch.device, view, *more_views):
    """Variant, tile sizes, rows per program and grid for (N, H, L, K, strides...) views.

    Variants, by the registers they need (see AOT_SPECS and the compile test's report), each
    with as many programs per SM as stay resident:

    * "planes" (unit stride along L, K = 1, x and out alike, int32 offsets): _TILE elements,
      8 warps, registers capped at _MAX_REGISTERS (no spill): 4 programs per SM;
    * "channels_last" (the same with K > 1: the shifted loads are unaligned): _TILE // 2
      elements, 4 warps, capped at _MAX_REGISTERS: 8 programs per SM;
    * "general" (strided rows, int64 offsets, x and out laid out differently): _TILE // 2
      elements, 8 warps, the registers it needs: 2 programs per SM (or two equal waves).

    The tile rows (n_tiles * H of them) are dealt out in equal contiguous spans to a grid of
    resident programs (one wave), so every program does the same work, give or take one row:
    no tail wave. Spans are at least _MIN_ROWS rows, which bounds the halo re-reads. In the
    interpreter (CPU tensors) the grid is _INTERPRETER_PROGRAMS programs, enough to cross tile
    boundaries inside a span.
    """
    views = (view,) + more_views
    n, h, length, k = view[:4]
    unit = all(v[6] == 1 for v in views)
    same = all(v[4:] == view[4:] for v in views)
    variant = ("planes" if k == 1 else "channels_last") if unit and same else "general"
    tile = _TILE if variant == "planes" else _TILE // 2
    block_l = min(triton.next_power_of_2(length), tile)
    block_n = min(triton.next_power_of_2(n), max(1, tile // block_l))
    wide = _wide(block_n, block_l, k, views)
    if wide:
        variant = "general"
    num_warps, per_sm, maxnreg = _VARIANTS[variant]
    n_tiles_l = triton.cdiv(length, block_l)
    total_rows = triton.cdiv(n, block_n) * n_tiles_l * h
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        programs = _sm_count(index) * per_sm
    else:
        programs = _INTERPRETER_PROGRAMS
    rows = max(_MIN_ROWS, triton.cdiv(total_rows, programs))
    return dict(block_n=block_n, block_l=block_l, n_tiles_l=n_tiles_l, total_rows=total_rows,
                rows=rows, grid=triton.cdiv(total_rows, rows), wide=wide, same_layout=same,
                num_warps=num_warps, maxnreg=maxnreg)


def total_variation_forward(x: torch.Tensor) -> torch.Tensor:
    """Total variation of x (rank >= 2) as a 0-dim float32 tensor; see the module docstring."""
    if x.dim() < 2:
        raise ValueError(f"total_variation needs rank >= 2, got shape {tuple(x.shape)}")
    out = torch.zeros((), dtype=torch.float32, device=x.device)
    if x.numel() == 0:
        return out
    x, _, view, _, _ = _plan(x)
    n, h, length, k, s_n, s_h, s_l = view
    cfg = _launch_config(x.device, view)
    partial = torch.empty(cfg["grid"], dtype=torch.float32, device=x.device)
    _tv_forward_kernel[(cfg["grid"],)](
        x, partial, n, h, length, k, s_n, s_h, s_l, cfg["n_tiles_l"], cfg["total_rows"],
        cfg["rows"], BLOCK_N=cfg["block_n"], BLOCK_L=cfg["block_l"], WIDE=cfg["wide"],
        num_warps=cfg["num_warps"], maxnreg=cfg["maxnreg"])
    _tv_sum_kernel[(1,)](partial, out, cfg["grid"], BLOCK=_SUM_BLOCK, num_warps=4)
    return out


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
    xv, ov, view_x, view_o, copied = _plan(x, result)
    n, h, length, k, sx_n, sx_h, sx_l = view_x
    so_n, so_h, so_l = view_o[4:]
    cfg = _launch_config(x.device, view_x, view_o)
    _tv_backward_kernel[(cfg["grid"],)](
        xv, grad, ov, n, h, length, k, sx_n, sx_h, sx_l, so_n, so_h, so_l, cfg["n_tiles_l"],
        cfg["total_rows"], cfg["rows"], BLOCK_N=cfg["block_n"], BLOCK_L=cfg["block_l"],
        WIDE=cfg["wide"], SAME_LAYOUT=cfg["same_layout"], num_warps=cfg["num_warps"],
        maxnreg=cfg["maxnreg"])
    if copied:  # rare layouts: keep empty_like(x)'s strides
        result.copy_(ov)
    return result


# --------------------------------------------------------------------------------------------
# Ahead-of-time compilation specs for tests/test_kernels_compile.py: (kernel, signature,
# constexprs, options) at the launch configurations of a 64x3x512x512 batch.
# As at run time, unit strides are constexpr 1 and ":16" marks the arguments Triton finds
# divisible by 16 (aligned pointers, strides of 512-wide rows).
# --------------------------------------------------------------------------------------------

def _layout_args(layout: str, k: str, strides_l):
    """Signature and constexprs of K and the row-element strides for a layout: "planes"
    (K = 1, unit stride), "channels_last" (K = C at run time, unit stride) or "strided"."""
    sig, consts = {}, {}
    if layout == "channels_last":
        sig[k] = "i32"
    else:
        sig[k], consts[k] = "constexpr", 1
    for name in strides_l:
        if layout == "strided":
            sig[name] = "i32"
        else:
            sig[name], consts[name] = "constexpr", 1
    return sig, consts


def _spec_variant(layout: str, wide: bool = False, same_layout: bool = True):
    """Tile constexprs and options the launcher picks for a 64x3x512x512 batch: 4 planes of
    512 (planes), one interleaved row of 1024 of the 1536 (channels-last), 4 planes of 256
    (strided, e.g. x[..., ::2])."""
    tile = {"planes": {"BLOCK_N": 4, "BLOCK_L": 512},
            "channels_last": {"BLOCK_N": 1, "BLOCK_L": 1024},
            "strided": {"BLOCK_N": 4, "BLOCK_L": 256}}[layout]
    variant = "general" if layout == "strided" or wide or not same_layout else layout
    num_warps, _, maxnreg = _VARIANTS[variant]
    return tile, {"num_warps": num_warps, "maxnreg": maxnreg}


def _fwd_spec(dtype: str, layout: str = "planes", wide: bool = False):
    sig = {"x_ptr": f"*{dtype}:16", "partial_ptr": "*fp32:16", "N": "i32", "H": "i32:16",
           "L": "i32:16", "K": None, "stride_n": "i32:16", "stride_h": "i32:16",
           "stride_l": None, "n_tiles_l": "i32", "total_rows": "i32:16", "rows_per_prog": "i32",
           "BLOCK_N": "constexpr", "BLOCK_L": "constexpr", "WIDE": "constexpr"}
    lsig, consts = _layout_args(layout, "K", ["stride_l"])
    sig.update(lsig)
    tile, options = _spec_variant(layout, wide)
    consts.update({"WIDE": wide, **tile})
    return _tv_forward_kernel, sig, consts, options


def _bwd_spec(dtype: str, layout: str = "planes", wide: bool = False, same_layout: bool = True):
    sig = {"x_ptr": f"*{dtype}:16", "grad_ptr": f"*{dtype}:16", "out_ptr": f"*{dtype}:16",
           "N": "i32", "H": "i32:16", "L": "i32:16", "K": None, "sx_n": "i32:16",
           "sx_h": "i32:16", "sx_l": None, "so_n": "i32:16", "so_h": "i32:16", "so_l": None,
           "n_tiles_l": "i32", "total_rows": "i32:16", "rows_per_prog": "i32",
           "BLOCK_N": "constexpr", "BLOCK_L": "constexpr", "WIDE": "constexpr",
           "SAME_LAYOUT": "constexpr"}
    lsig, consts = _layout_args(layout, "K", ["sx_l", "so_l"])
    sig.update(lsig)
    tile, options = _spec_variant(layout, wide, same_layout)
    consts.update({"WIDE": wide, "SAME_LAYOUT": same_layout, **tile})
    return _tv_backward_kernel, sig, consts, options


def _degenerate_spec(kernel, n_pointers: int):
    """Every integer argument that can be 1 specialized to constexpr 1 (a single 1-row plane,
    as Triton specializes such values at run time): the kernel must still compile."""
    names = kernel.arg_names
    sig = {a: "*fp32:16" for a in names[:n_pointers]}
    consts = {a: 1 for a in names[n_pointers:]
              if a not in ("BLOCK_N", "BLOCK_L", "WIDE", "SAME_LAYOUT")}
    consts.update({"BLOCK_N": 1, "BLOCK_L": 1024, "WIDE": False})
    if "SAME_LAYOUT" in names:
        consts["SAME_LAYOUT"] = False
    sig.update({a: "constexpr" for a in consts})
    return kernel, sig, consts, {"num_warps": 8}


AOT_SPECS = [
    _degenerate_spec(_tv_forward_kernel, 2),
    _degenerate_spec(_tv_backward_kernel, 3),
    _fwd_spec("fp32"),
    _fwd_spec("bf16"),
    _fwd_spec("bf16", layout="channels_last"),
    _fwd_spec("fp32", layout="strided", wide=True),
    _bwd_spec("fp32"),
    _bwd_spec("bf16"),
    _bwd_spec("fp32", layout="channels_last"),
    _bwd_spec("bf16", layout="strided"),
    _bwd_spec("fp32", layout="strided", wide=True, same_layout=False),
    (_tv_sum_kernel, {"partial_ptr": "*fp32:16", "out_ptr": "*fp32:16", "n": "i32",
                      "BLOCK": "constexpr"}, {"BLOCK": _SUM_BLOCK}, {"num_warps": 4}),
]


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
