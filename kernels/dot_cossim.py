"""Channel dot product times a clamped cosine (the Direction family): Triton forward/backward.

For activations ``acts`` (B, C, P) and a direction ``vec`` (Bv, C, Pv), Bv in {1, B} and Pv in
{1, P} broadcast, at every (b, p) (``fastobj.functional.dot_cossim_ref``):

* ``angled=False``: ``dot = Σ_c v·a``, ``cos = dot / (max(‖v‖, eps) · max(‖a‖, eps))``
  (``torch.cosine_similarity``);
* ``angled=True``: ``dot = mean_c v·a``, ``cos = dot / (eps + ‖a‖)``;

and ``out = dot · clamp(cos, min=0.1) ** cossim_pow`` (just ``dot`` when ``cossim_pow == 0``).
Sums run in float32 whatever the input dtype; results come back in the input dtypes.

Gradients (upstream ``g`` (B, P)). With ``f = clamp(cos, 0.1)^pow`` and
``f' = pow·f/cos`` where ``cos >= 0.1`` (0 below: the clamp passes no gradient), let
``gdot = g·f`` and ``gcos = g·dot·f'``. Then ``grad_a = α·v + β·a`` and the contribution to
``grad_v`` is ``α·a + β_v·v`` at every (b, p), where

* ``angled=False``: ``α = gdot + gcos/(m_a m_v)``, ``β = -gcos·cos/(m_a ‖a‖)``,
  ``β_v = -gcos·cos/(m_v ‖v‖)`` with ``m = max(‖·‖, eps)``. This is the gradient of
  ``torch.cosine_similarity``, which clamps the norms *without* recording the clamp: its
  gradient flows through ``‖a‖`` even below ``eps`` (checked against autograd), and is zero
  only where a norm is exactly zero;
* ``angled=True``: ``α = (gdot + gcos/(eps + ‖a‖)) / C``, ``β = -gcos·cos/((eps + ‖a‖)‖a‖)``,
  ``β_v = 0``.

Tiling
------
A program owns one sample ``b`` and ``BLOCK_P`` positions (1-D grid ``B · cdiv(P, BLOCK_P)``) and
walks the channels in ``BLOCK_C`` chunks. Strides are passed in; the launcher shapes the tile
along the memory-contiguous axis: wide in P for (B, C, H·W) activations, wide in C for
channels-last ones (stride 1 along C). A shared direction (Pv = 1) is loaded once per chunk as a
``BLOCK_C`` vector and broadcast.

The backward needs the channel sums of a position before it can write that position's
gradient. When a position's whole channel column fits the tile (``RESIDENT``: at most 8192
elements, rows along P of 32 bytes or, where that does not fit, 16: C up to 2048 in float32
and 1024 in 16-bit for (B, C, H·W) layouts, up to 8192 channels-last) the program loads it
once, reduces, and writes the gradient from registers, so acts is read once. Larger C runs two
chunked loops (reduce, then write), which reads acts twice; the second read may come from
L2. The direction's gradient is reduced deterministically: per-program partial rows in float32,
then a fixed-order sum (``_common.sum_rows``). No atomics anywhere: repeats are bitwise equal.

Launch arithmetic (PREDICTIONS for an H200, 132 SMs; not measured): BLOCK_P is chosen by
padding and wave efficiency (_block_p). At 256x1024x14x14 (P = 196): float32 forward
256x8 tiles (rows of 32 bytes), 6400 programs of 8 warps (at most 64 registers, 4 per SM:
12.1 waves, <1% tail, 2% padding, against 4 blocks of 64 = 23% idle lanes before);
bfloat16 forward 128x16 tiles, 3328 programs (6.3 waves); bfloat16 backward resident
(1024 x 8: acts read once, not twice), 6400 programs of 16 warps (39-94 registers: 1-2
per SM), 16 KiB of acts in flight per program. Rows along P load as 16-byte (float32) or
8-byte (16-bit) vectors at P = 196 (ALIGN; the forward's PTX had only scalar loads). Cost floor: forward B·C·P·elt bytes read;
backward reads acts again and writes their gradient, so forward + backward moves
3·B·C·P·elt bytes (plus the direction and its gradient).

Offsets: per-program and per-chunk bases are 64-bit scalars; in-tile offsets are int32 unless
the launcher finds they can reach 2**31 (``WIDE``).
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

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
    sum_rows,
    tile_offsets,
    wave,
)

_RESIDENT_TILE = 8192  # the most elements a backward program keeps in registers
_NUM_WARPS = 8
# Resident programs per SM, predicted from the AOT report (sm_90a): 8-warp streaming programs
# at <= 64 registers, 4; the resident backward's 16 warps at 39-94 registers, 1 (2 at <= 64).
_PROGRAMS_PER_SM = 4
_RESIDENT_PROGRAMS_PER_SM = 1


@triton.jit
def _load_chunk(a_ptr, v_ptr, rc, rp, c_mask, p_mask, sa_c, sa_p, sv_c, sv_p,
                VEC_PER_POS: tl.constexpr, WIDE: tl.constexpr):
    """One channel chunk: acts (BLOCK_C, BLOCK_P) and vec (BLOCK_C, BLOCK_P) or (BLOCK_C, 1),
    both float32, zero outside the masks. a_ptr/v_ptr already point at the chunk's origin."""
    mask = c_mask[:, None] & p_mask[None, :]
    a = tl.load(a_ptr + tile_offsets(rc, rp, sa_c, sa_p, WIDE), mask=mask, other=0.0)
    if VEC_PER_POS:
        v = tl.load(v_ptr + tile_offsets(rc, rp, sv_c, sv_p, WIDE), mask=mask, other=0.0)
    else:
        if WIDE:
            v_offsets = rc.to(tl.int64) * sv_c
        else:
            v_offsets = rc * sv_c
        v = tl.load(v_ptr + v_offsets, mask=c_mask, other=0.0)[:, None]
    return a.to(tl.float32), v.to(tl.float32)


@triton.jit
def _position_block(pid, n_pblocks, P, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    """(b, p0, rc, rp, p_mask) of program pid = b·n_pblocks + block: sample b, positions
    p0 + rp (p_mask: those below P) and the channel lanes rc of a chunk."""
    b = pid // n_pblocks
    p0 = (pid % n_pblocks) * BLOCK_P
    rc = tl.arange(0, BLOCK_C)
    rp = tl.arange(0, BLOCK_P)
    p_mask = p0 + rp < P
    return b, p0, rc, rp, p_mask


@triton.jit
def _channel_sums(a_base, v_base, a_step, v_step, rc, rp, p_mask, C, sa_c, sa_p, sv_c, sv_p,
                  NORM_A: tl.constexpr, NORM_V: tl.constexpr, VEC_PER_POS: tl.constexpr,
                  BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, WIDE: tl.constexpr):
    """(Σ_c v·a, Σ_c a², Σ_c v²) over all C channels, walked in BLOCK_C chunks (a_step, v_step:
    the 64-bit pointer steps of one chunk), accumulated in float32 tiles and reduced at the end.
    Σa² is only accumulated when NORM_A and Σv² when NORM_V (zero otherwise). Shapes (BLOCK_P,),
    Σv² (1,) when the direction is shared (not VEC_PER_POS)."""
    prod_acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=tl.float32)
    na_acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=tl.float32)
    if VEC_PER_POS:
        nv_acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=tl.float32)
    else:
        nv_acc = tl.zeros((BLOCK_C, 1), dtype=tl.float32)
    a_off = tl.zeros((), dtype=tl.int64)
    v_off = tl.zeros((), dtype=tl.int64)
    for c0 in range(0, C, BLOCK_C):
        a, v = _load_chunk(a_base + a_off, v_base + v_off, rc, rp, c0 + rc < C, p_mask,
                           sa_c, sa_p, sv_c, sv_p, VEC_PER_POS, WIDE)
        prod_acc += a * v
        if NORM_A:
            na_acc += a * a
        if NORM_V:
            nv_acc += v * v
        a_off += a_step
        v_off += v_step
    return tl.sum(prod_acc, axis=0), tl.sum(na_acc, axis=0), tl.sum(nv_acc, axis=0)


@triton.jit
def _cosine(prod, na2, nv2, C, eps, ANGLED: tl.constexpr):
    """(dot, cos, norm of a, norm of v) from the channel sums Σv·a, Σa², Σv²."""
    na = tl.sqrt(na2)
    nv = tl.sqrt(nv2)
    if ANGLED:
        dot = prod / C
        cos = dot / (eps + na)
    else:
        dot = prod
        cos = dot / (tl.maximum(na, eps) * tl.maximum(nv, eps))
    return dot, cos, na, nv


@triton.jit
def _clamp_cos(cos):
    return tl.maximum(cos, 0.1, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _clamped_pow(cos, cossim_pow):
    """clamp(cos, min=0.1) ** cossim_pow (a NaN cosine stays NaN, as torch.clamp_min keeps it);
    the base is >= 0.1 > 0, so exp2(pow * log2(base)) is accurate to a few float32 ulps."""
    return tl.exp2(cossim_pow * tl.log2(_clamp_cos(cos)))


@triton.jit
def _dot_cossim_fwd_kernel(acts_ptr, vec_ptr, out_ptr, C, P, n_pblocks,
                           sa_b, sa_c, sa_p, sv_b, sv_c, sv_p, eps, cossim_pow,
                           ANGLED: tl.constexpr, HAS_POW: tl.constexpr,
                           VEC_PER_POS: tl.constexpr, BLOCK_C: tl.constexpr,
                           BLOCK_P: tl.constexpr, WIDE: tl.constexpr, ALIGN: tl.constexpr):
    """out[b, p] = dot · clamp(cos, 0.1)^cossim_pow for one sample b and BLOCK_P positions.

    ALIGN: P and the channel strides of the (B, C, P)-shaped operands (sa_c, and sv_c when
    VEC_PER_POS) arrive divided by it (see _alignment), so Triton knows that rows along P
    start, and their masks change, at multiples of it, and loads them as vectors.

    Buffers:
      acts_ptr  (B, C, P), strides (sa_b, sa_c, sa_p); float32/float16/bfloat16.
      vec_ptr   (Bv, C, Pv), strides (sv_b, sv_c, sv_p), sv_b = 0 when Bv = 1 and sv_p = 0 when
                Pv = 1 (then VEC_PER_POS is False and one BLOCK_C vector is loaded per chunk).
      out_ptr   (B, P) contiguous, acts' dtype.
    Cost: reads B·C·P acts elements once, the direction (Bv·C·Pv elements, re-read per program
    from L2 when shared) and writes B·P elements. FLOPs: 2·B·C·P for Σv·a, plus 2·B·C·P for
    Σa² (and for Σv² when per-position) when cossim_pow != 0; O(B·P) for the epilogue.
    """
    P = P * ALIGN
    sa_c = sa_c * ALIGN
    if VEC_PER_POS:
        sv_c = sv_c * ALIGN
    pid = tl.program_id(0)
    b, p0, rc, rp, p_mask = _position_block(pid, n_pblocks, P, BLOCK_C, BLOCK_P)
    a_base = acts_ptr + (b.to(tl.int64) * sa_b + p0.to(tl.int64) * sa_p)
    v_base = vec_ptr + (b.to(tl.int64) * sv_b + p0.to(tl.int64) * sv_p)
    a_step = tl.cast(sa_c, tl.int64) * BLOCK_C
    v_step = tl.cast(sv_c, tl.int64) * BLOCK_C

    prod, na2, nv2 = _channel_sums(a_base, v_base, a_step, v_step, rc, rp, p_mask, C,
                                   sa_c, sa_p, sv_c, sv_p, HAS_POW, HAS_POW and not ANGLED,
                                   VEC_PER_POS, BLOCK_C, BLOCK_P, WIDE)
    if HAS_POW:
        dot, cos, _na, _nv = _cosine(prod, na2, nv2, C, eps, ANGLED)
        out = dot * _clamped_pow(cos, cossim_pow)
    else:
        if ANGLED:
            out = prod / C
        else:
            out = prod
    tl.store(out_ptr + b.to(tl.int64) * P + p0 + rp, out.to(out_ptr.dtype.element_ty),
             mask=p_mask)


@triton.jit
def _emit_chunk(a, v, alpha, beta, beta_v, ga_ptr, gv_ptr, rc, rp, c_mask, p_mask,
                sga_c, sga_p, sgv_c, sgv_p, VEC_GRAD: tl.constexpr, WIDE: tl.constexpr):
    """Store one chunk of grad_acts = α·v + β·a, and of the direction's gradient α·a + β_v·v:
    per position (VEC_GRAD 1) or summed over this program's positions (VEC_GRAD 2)."""
    mask = c_mask[:, None] & p_mask[None, :]
    grad_a = alpha[None, :] * v + beta[None, :] * a
    tl.store(ga_ptr + tile_offsets(rc, rp, sga_c, sga_p, WIDE),
             grad_a.to(ga_ptr.dtype.element_ty), mask=mask)
    if VEC_GRAD == 1:
        grad_v = alpha[None, :] * a + beta_v[None, :] * v
        tl.store(gv_ptr + tile_offsets(rc, rp, sgv_c, sgv_p, WIDE),
                 grad_v.to(gv_ptr.dtype.element_ty), mask=mask)
    if VEC_GRAD == 2:
        grad_v = tl.sum(alpha[None, :] * a + beta_v[None, :] * v, axis=1)
        if WIDE:
            gv_offsets = rc.to(tl.int64) * sgv_c
        else:
            gv_offsets = rc * sgv_c
        tl.store(gv_ptr + gv_offsets, grad_v.to(gv_ptr.dtype.element_ty), mask=c_mask)


@triton.jit
def _dot_cossim_bwd_kernel(acts_ptr, vec_ptr, grad_ptr, ga_ptr, gv_ptr, C, P, n_pblocks,
                           sa_b, sa_c, sa_p, sv_b, sv_c, sv_p, sg_b, sg_p,
                           sga_b, sga_c, sga_p, sgv_b, sgv_c, sgv_p, eps, cossim_pow,
                           ANGLED: tl.constexpr, HAS_POW: tl.constexpr,
                           VEC_PER_POS: tl.constexpr, VEC_GRAD: tl.constexpr,
                           RESIDENT: tl.constexpr, BLOCK_C: tl.constexpr,
                           BLOCK_P: tl.constexpr, WIDE: tl.constexpr, ALIGN: tl.constexpr):
    """Gradients of out[b, p] (see the module docstring) for one sample b, BLOCK_P positions.

    ALIGN: as in the forward, for P, sa_c and sga_c, sv_c when VEC_PER_POS and sgv_c when
    VEC_GRAD is 1.

    Buffers:
      acts_ptr  (B, C, P), strides (sa_b, sa_c, sa_p); float32/float16/bfloat16.
      vec_ptr   (Bv, C, Pv), strides (sv_b, sv_c, sv_p), 0 along broadcast dims.
      grad_ptr  (B, P) upstream gradient, strides (sg_b, sg_p).
      ga_ptr    (B, C, P) gradient of acts, strides (sga_b, sga_c, sga_p), acts' dtype.
      gv_ptr    VEC_GRAD 0: unused. VEC_GRAD 1 (per-position direction): (B, C, P) with strides
                (sgv_b, sgv_c, sgv_p): the direction's gradient itself (Bv = B, vec's dtype) or
                float32 per-sample partials to be summed over b (Bv = 1). VEC_GRAD 2 (shared
                over P): float32 partial rows (B·n_pblocks, C), row pid at pid·sgv_b, stride
                sgv_c, summed afterwards over the programs of each direction row.
    Cost: RESIDENT: reads B·C·P acts elements once, writes B·C·P (plus the direction's
    gradient: B·C·P float32 when per-position, B·n_pblocks·C when shared); otherwise reads
    acts twice. FLOPs: ~4·B·C·P for the sums, ~4·B·C·P for the gradient, ~4·B·C·P more with a
    direction gradient.
    """
    P = P * ALIGN
    sa_c = sa_c * ALIGN
    sga_c = sga_c * ALIGN
    if VEC_PER_POS:
        sv_c = sv_c * ALIGN
    if VEC_GRAD == 1:
        sgv_c = sgv_c * ALIGN
    pid = tl.program_id(0)
    b, p0, rc, rp, p_mask = _position_block(pid, n_pblocks, P, BLOCK_C, BLOCK_P)
    b64 = b.to(tl.int64)
    p64 = p0.to(tl.int64)
    a_base = acts_ptr + (b64 * sa_b + p64 * sa_p)
    v_base = vec_ptr + (b64 * sv_b + p64 * sv_p)
    ga_base = ga_ptr + (b64 * sga_b + p64 * sga_p)
    if VEC_GRAD == 2:
        gv_base = gv_ptr + pid.to(tl.int64) * sgv_b
    else:
        gv_base = gv_ptr + (b64 * sgv_b + p64 * sgv_p)
    g = tl.load(grad_ptr + b64 * sg_b + (p0 + rp).to(tl.int64) * sg_p, mask=p_mask, other=0.0)
    g = g.to(tl.float32)
    a_step = tl.cast(sa_c, tl.int64) * BLOCK_C  # 64-bit per-chunk steps of the looping path
    v_step = tl.cast(sv_c, tl.int64) * BLOCK_C
    ga_step = tl.cast(sga_c, tl.int64) * BLOCK_C
    gv_step = tl.cast(sgv_c, tl.int64) * BLOCK_C

    # Pass 1: channel sums.
    if RESIDENT:
        a, v = _load_chunk(a_base, v_base, rc, rp, rc < C, p_mask, sa_c, sa_p, sv_c, sv_p,
                           VEC_PER_POS, WIDE)
        prod = tl.sum(a * v, axis=0)
        na2 = tl.sum(a * a, axis=0)
        nv2 = tl.sum(v * v, axis=0)
    else:
        prod, na2, nv2 = _channel_sums(a_base, v_base, a_step, v_step, rc, rp, p_mask, C,
                                       sa_c, sa_p, sv_c, sv_p, True, True, VEC_PER_POS,
                                       BLOCK_C, BLOCK_P, WIDE)

    # Per-position coefficients: grad_a = α·v + β·a, grad_v = α·a + β_v·v.
    zero = tl.zeros((BLOCK_P,), dtype=tl.float32)
    if HAS_POW:
        dot, cos, na, nv = _cosine(prod, na2, nv2, C, eps, ANGLED)
        base = _clamp_cos(cos)
        f = tl.exp2(cossim_pow * tl.log2(base))
        gdot = g * f
        gcos = tl.where(cos >= 0.1, g * dot * (cossim_pow * f / base), 0.0)
        # A zero norm has a zero gradient (as torch's vector_norm backward): β = 0 there.
        na_safe = tl.where(na > 0, na, 1.0)
        if ANGLED:
            d = eps + na
            alpha = (gdot + gcos / d) / C
            beta = tl.where(na > 0, -gcos * cos / (d * na_safe), 0.0)
            beta_v = zero
        else:
            ma = tl.maximum(na, eps)
            mv = tl.maximum(nv, eps)
            alpha = gdot + gcos / (ma * mv)
            beta = tl.where(na > 0, -gcos * cos / (ma * na_safe), 0.0)
            beta_v = tl.where(nv > 0, -gcos * cos / (mv * tl.where(nv > 0, nv, 1.0)), 0.0)
    else:
        if ANGLED:
            alpha = g / C
        else:
            alpha = g
        beta = zero
        beta_v = zero
    alpha = tl.where(p_mask, alpha, 0.0)
    beta = tl.where(p_mask, beta, 0.0)
    beta_v = tl.where(p_mask, beta_v, 0.0)

    # Pass 2: write the gradients.
    if RESIDENT:
        _emit_chunk(a, v, alpha, beta, beta_v, ga_base, gv_base, rc, rp, rc < C, p_mask,
                    sga_c, sga_p, sgv_c, sgv_p, VEC_GRAD, WIDE)
    else:
        a_off = tl.zeros((), dtype=tl.int64)
        v_off = tl.zeros((), dtype=tl.int64)
        ga_off = tl.zeros((), dtype=tl.int64)
        gv_off = tl.zeros((), dtype=tl.int64)
        for c0 in range(0, C, BLOCK_C):
            a, v = _load_chunk(a_base + a_off, v_base + v_off, rc, rp, c0 + rc < C, p_mask,
                               sa_c, sa_p, sv_c, sv_p, VEC_PER_POS, WIDE)
            _emit_chunk(a, v, alpha, beta, beta_v, ga_base + ga_off, gv_base + gv_off, rc, rp,
                        c0 + rc < C, p_mask, sga_c, sga_p, sgv_c, sgv_p, VEC_GRAD, WIDE)
            a_off += a_step
            v_off += v_step
            ga_off += ga_step
            gv_off += gv_step


# --------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------

class _Acts(NamedTuple):
    """What the launch plans read of the activations: (B, C, P) shape, strides, element size
    in bytes and device."""
    shape: Tuple[int, int, int]
    strides: Tuple[int, int, int]
    itemsize: int
    device: torch.device


def _c_contiguous(acts: _Acts) -> bool:
    """Channels-last activations: unit stride along C, not along P."""
    return (acts.shape[1] > 1 and acts.strides[1] == 1 and acts.shape[2] > 1
            and acts.strides[2] != 1)


def _block_p(batch: int, positions: int, low: int, high: int, device: torch.device,
             programs_per_sm: int) -> int:
    """BLOCK_P, a power of two in [low, high]: the one with the best predicted efficiency on the
    device (_common.wave), the fraction of lanes on real positions (P is padded up to
    whole blocks: P=196 in blocks of 64 leaves 60 of 256 lanes idle) times the fraction of
    the last wave that is busy (programs over whole waves of SMs x programs_per_sm). Ties go
    to the larger block. In the interpreter: the largest (fewest programs)."""
    size = wave(device, programs_per_sm)
    if size is None:
        return high
    best, best_block, block = -1.0, high, high
    while block >= low:
        blocks = cdiv(positions, block)
        programs = batch * blocks
        efficiency = (positions / (blocks * block)) * programs / (cdiv(programs, size)
                                                                   * size)
        if efficiency > best + 1e-9:
            best, best_block = efficiency, block
        block //= 2
    return best_block


def _tiles(acts: _Acts, resident_limit: int = 0):
    """(BLOCK_C, BLOCK_P, resident) for acts; resident_limit > 0 asks for a whole-C tile.

    Rows along P are at least 32 bytes (a DRAM sector), or 16 bytes in the resident backward
    when 32 would not fit _RESIDENT_TILE (so bfloat16 keeps C = 1024 resident: 1024 x 8
    elements, acts read once instead of twice).
    """
    batch, channels, positions = acts.shape
    c2 = next_power_of_2(channels)
    p2 = next_power_of_2(positions)
    tile = _common.TILE_BYTES // 4  # float32 elements of a chunk
    elt = acts.itemsize

    def pick(low, high, resident):
        high = max(1, min(p2, high))
        per_sm = _RESIDENT_PROGRAMS_PER_SM if resident else _PROGRAMS_PER_SM
        return _block_p(batch, positions, min(low, high), high, acts.device, per_sm)

    if _c_contiguous(acts):
        if resident_limit and c2 <= resident_limit:
            return c2, pick(1, resident_limit // c2, True), True
        block_c = min(c2, 256)
        return block_c, pick(1, tile // block_c, False), False
    # P contiguous (or neither).
    sector, half = max(1, 32 // elt), max(1, 16 // elt)
    min_p = sector if c2 * sector <= resident_limit else half
    if resident_limit and c2 * min_p <= resident_limit:
        return c2, pick(min_p, min(512, resident_limit // c2), True), True
    block_p = pick(sector, 128, False)
    return min(c2, max(1, tile // block_p)), block_p, False


def _launch(acts: _Acts, strides, backward: bool = False) -> Launch:
    """Grid, tiles and warps for acts (B, C, P); strides: the (stride_c, stride_p) pairs of
    every (B, C, P) operand, for the int64-offset test. backward: the backward's configuration
    (a whole-C tile up to _RESIDENT_TILE elements, RESIDENT, and its warps)."""
    block_c, block_p, resident = _tiles(acts, _RESIDENT_TILE if backward else 0)
    n_pblocks = cdiv(acts.shape[2], block_p)
    consts = dict(BLOCK_C=block_c, BLOCK_P=block_p,
                  WIDE=needs_int64(*[((block_c, sc), (block_p, sp)) for sc, sp in strides]))
    num_warps = _NUM_WARPS
    if backward:
        consts["RESIDENT"] = resident
        if resident:
            num_warps = max(4, min(16, block_c * block_p // 512))
    return Launch((acts.shape[0] * n_pblocks,), consts, num_warps=num_warps)


def _alignment(acts: _Acts, channel_strides) -> int:
    """ALIGN of the kernels: the largest of 8, 4 and 2 that divides P and every channel stride
    of the operands loaded along P (acts with unit stride along P: (B, C, H·W) activations),
    else 1; 1 as well when all are multiples of 16, which Triton's own specialisation sees.
    At P = 196 it is 4: float32 rows start on 16-byte boundaries, bfloat16 ones on 8, and
    the P mask is constant over 4 positions (without it the float32 forward's PTX has no
    vector load)."""
    values = [acts.shape[2], *channel_strides]
    if acts.strides[2] != 1 or all(v % 16 == 0 for v in values):
        return 1
    return next((unit for unit in (8, 4, 2) if all(v % unit == 0 for v in values)), 1)


def _divide_channel_stride(strides, unit: int):
    """(stride_b, stride_c // unit, stride_p): what the kernels take with ALIGN = unit."""
    return strides[0], strides[1] // unit, strides[2]


def _vec_strides(vec: torch.Tensor):
    """vec's strides with 0 along its broadcast (size-1) batch and position dims."""
    return (0 if vec.shape[0] == 1 else vec.stride(0), vec.stride(1),
            0 if vec.shape[2] == 1 else vec.stride(2))


def _check(acts: torch.Tensor, vec: torch.Tensor):
    if acts.dim() != 3 or vec.dim() != 3:
        raise ValueError(f"dot_cossim takes acts (B, C, P) and vec (Bv, C, Pv), got "
                         f"{tuple(acts.shape)} and {tuple(vec.shape)}")
    b, c, p = acts.shape
    if vec.shape[1] != c or vec.shape[0] not in (1, b) or vec.shape[2] not in (1, p):
        raise ValueError(f"vec {tuple(vec.shape)} does not broadcast against acts "
                         f"{tuple(acts.shape)}")


@plan_cache
def _forward_plan(acts: _Acts, vec_shape, sv, angled: bool, has_pow: bool, _grid_key):
    """(launch, kernel arguments between the pointers and eps) of the forward; sv: vec's
    strides from _vec_strides (cached per plan_key)."""
    channels, positions = acts.shape[1], acts.shape[2]
    per_pos = vec_shape[2] != 1
    launch = _launch(acts, [(acts.strides[1], acts.strides[2]), (sv[1], sv[2])])
    unit = _alignment(acts, [acts.strides[1]] + ([sv[1]] if per_pos else []))
    launch = launch.with_constexprs(VEC_PER_POS=per_pos, ALIGN=unit, ANGLED=angled,
                                    HAS_POW=has_pow)
    return launch, (channels, positions // unit, cdiv(positions, launch.constexprs["BLOCK_P"]),
                    *_divide_channel_stride(acts.strides, unit),
                    *_divide_channel_stride(sv, unit if per_pos else 1))


@on_input_device
def dot_cossim_forward(acts: torch.Tensor, vec: torch.Tensor, cossim_pow: float,
                       eps: float, angled: bool) -> torch.Tensor:
    """(B, P) values in acts' dtype; see the module docstring."""
    _check(acts, vec)
    batch, channels, positions = acts.shape
    out = torch.empty((batch, positions), dtype=acts.dtype, device=acts.device)
    if out.numel() == 0:
        return out
    if channels == 0:
        return out.zero_()
    launch, args = _forward_plan(_described(acts), vec.shape, _vec_strides(vec), bool(angled),
                                 cossim_pow != 0, plan_key())
    launch(_dot_cossim_fwd_kernel, acts, vec, out, *args, float(eps), float(cossim_pow))
    return out


def _described(acts: torch.Tensor) -> _Acts:
    return _Acts(acts.shape, acts.stride(), acts.element_size(), acts.device)


@plan_cache
def _backward_plan(acts: _Acts, vec_shape, sv, grad_strides, grad_acts_strides,
                   grad_vec_strides, angled: bool, has_pow: bool, _grid_key):
    """(launch, mode, shape of the float32 partial buffer or None, the kernel arguments
    between the pointers and eps, with None where the gradient buffer's strides go) of the
    backward (cached per plan_key). mode: 0 no direction gradient, 1 per position (into
    grad_vec or per-sample partial rows), 2 shared over positions (partial rows per
    program). grad_vec_strides: None when no direction gradient is asked for."""
    batch, channels, positions = acts.shape
    per_pos = vec_shape[2] != 1
    # The direction's gradient buffer depends on the grid, which depends on the strides of
    # acts, vec and grad_acts only when the buffer is (B, C, P)-shaped: size the grid first.
    launch = _launch(acts, [(acts.strides[1], acts.strides[2]), (sv[1], sv[2]),
                            (grad_acts_strides[1], grad_acts_strides[2])], backward=True)
    grid = launch.grid[0]
    partial = None
    if grad_vec_strides is None:
        mode, sgv = 0, (0, 0, 0)
    elif per_pos and vec_shape[0] == batch:
        mode, sgv = 1, grad_vec_strides
    elif per_pos:  # a (1, C, P) direction shared by the batch: float32 rows per sample
        partial = (batch, channels, positions)
        mode, sgv = 1, contiguous_strides(partial)
    else:  # shared over positions: one float32 row of C per program
        partial = (grid, channels)
        mode, sgv = 2, (channels, 1, 0)
    if needs_int64(((launch.constexprs["BLOCK_C"], sgv[1]),
                    (launch.constexprs["BLOCK_P"], sgv[2]))):
        launch = launch.with_constexprs(WIDE=True)
    unit = _alignment(acts, [acts.strides[1], grad_acts_strides[1]]
                      + ([sv[1]] if per_pos else []) + ([sgv[1]] if mode == 1 else []))
    launch = launch.with_constexprs(VEC_PER_POS=per_pos, VEC_GRAD=mode, ALIGN=unit,
                                    ANGLED=angled, HAS_POW=has_pow)
    args = (channels, positions // unit, cdiv(positions, launch.constexprs["BLOCK_P"]),
            *_divide_channel_stride(acts.strides, unit),
            *_divide_channel_stride(sv, unit if per_pos else 1), *grad_strides,
            *_divide_channel_stride(grad_acts_strides, unit),
            *_divide_channel_stride(sgv, unit if mode == 1 else 1))
    return launch, mode, partial, args


@on_input_device
def dot_cossim_backward(acts: torch.Tensor, vec: torch.Tensor, grad: torch.Tensor,
                        cossim_pow: float, eps: float, angled: bool, vec_grad: bool):
    """(grad_acts, grad_vec) for the upstream gradient grad (B, P).

    grad_acts has acts' shape, dtype and ``torch.empty_like(acts)``'s strides; grad_vec has
    vec's shape and dtype, or is an empty (0,) tensor unless vec_grad (nothing is written).
    """
    _check(acts, vec)
    batch, channels, positions = acts.shape
    grad_acts = torch.empty_like(acts)
    grad_vec = torch.empty_like(vec) if vec_grad else vec.new_empty((0,))
    if acts.numel() == 0:
        return grad_acts.zero_(), grad_vec.zero_()
    launch, mode, partial_shape, args = _backward_plan(
        _described(acts), vec.shape, _vec_strides(vec), grad.stride(), grad_acts.stride(),
        grad_vec.stride() if vec_grad else None, bool(angled), cossim_pow != 0,
        plan_key())
    partial = None
    if partial_shape is not None:
        partial = torch.empty(partial_shape, dtype=torch.float32, device=acts.device)
    gv = grad_acts if mode == 0 else grad_vec if partial is None else partial
    launch(_dot_cossim_bwd_kernel, acts, vec, grad, grad_acts, gv, *args, float(eps),
           float(cossim_pow))
    if partial is not None:
        if mode == 1:  # Σ over the batch of per-sample (C·P) rows
            sum_rows(partial.view(1, batch, channels * positions), grad_vec)
        else:  # Σ over the programs that share each direction row
            rows = vec.shape[0]
            sum_rows(partial.view(rows, partial.shape[0] // rows, channels), grad_vec)
    return grad_acts, grad_vec

# --------------------------------------------------------------------------------------------
# Cost model: the roofline floor that `fastobj bench` rates each measurement against.
# --------------------------------------------------------------------------------------------

def cost(acts_shape: tuple, vec_shape: tuple, dtype: torch.dtype, mode: str) -> tuple:
    """``(bytes, flops)`` a dot_cossim call must at least move and do, for ``mode`` "fwd" or
    "fwd+bwd" on ``acts`` of ``acts_shape`` (B, C, P) and ``vec`` of ``vec_shape`` (Bv, C, Pv),
    both in ``dtype``; the backward is taken with respect to ``acts`` only (n elements).

    Bytes: the forward reads acts and vec and writes the (B, P) result; the backward reads
    acts, vec and the (B, P) upstream gradient again and writes acts' gradient, so fwd+bwd
    moves (3·n + 2·vec + 2·B·P)·elt. FLOPs, for reference only (memory-bound: judge it
    against the copy bandwidth): the forward's dot product and squared norm, 4·n; the
    backward's α·v + β·a, 3·n more.
    """
    if mode not in ("fwd", "fwd+bwd"):
        raise ValueError(f"dot_cossim cost: mode must be 'fwd' or 'fwd+bwd', got {mode!r}")
    acts = torch.Size(acts_shape).numel()
    vec = torch.Size(vec_shape).numel()
    outputs = acts_shape[0] * torch.Size(acts_shape[2:]).numel()
    moved = acts + vec + outputs
    if mode == "fwd":
        return moved * dtype.itemsize, 4 * acts
    return (moved + 2 * acts + vec + outputs) * dtype.itemsize, 7 * acts
