"""Triton kernels for the Gram sums of the Diversity objective, forward and backward.

For a batch of flattened activations ``feats`` (B, C, P), sample i being F_i (C x P):

    G_i = F_i F_iᵀ (C x C),   norms_i = ‖G_i‖_F,   n_i = max(norms_i, eps),   g_i = G_i / n_i,
    S = Σ_i g_i (C x C),      sq = Σ_i ‖g_i‖²_F.

:func:`diversity_sums_forward` returns (S, sq, norms, grams); :func:`diversity_sums_backward`
returns the vector-Jacobian product of (S, sq) with respect to feats for cotangents (Γ, γ).
Writing A = Γ + Γᵀ, the gradient of sample i is

    ∂/∂F_i = W_i F_i,   W_i = (A - κ_i g_i) / n_i,
    κ_i = <A, G_i> / n_i       (= 2<Γ, g_i>; norms_i >= eps: the γ terms cancel as ‖g_i‖ = 1)
    κ_i = -4γ                  (norms_i < eps: the clamped norm is a constant).

Packed Gram storage. G_i and W_i are symmetric, so only the nt(nt+1)/2 = T tiles of the upper
triangle of the nt x nt grid of SB x SB tiles are computed and stored (nt = ceil(C / SB)),
each once, in row-major order over the upper triangle: ``grams`` is (B, T, SB, SB), entries
beyond C zero (see gram_storage_shape). It is stored in bfloat16 for float16 and bfloat16
inputs (float16 would overflow: Gram entries exceed 65504 for activations of a few tens) and
in float32 for float32 inputs (gram_storage_dtype). The forward returns it and autograd keeps
it for the backward, which reads it and never recomputes a Gram: B·T·SB² elements, 0.34 GB at
B = 1024, C = 512 in bfloat16 (SB = 128, T = 10), whatever the batch (no chunking, no budget).
SB depends only on C (and MAX_BLOCK), so the custom op's fake implementation computes the
same shape from (B, C, dtype) alone, whatever the strides or the matmul precision.

Error bound of bfloat16 storage: bfloat16 keeps 8 significant bits, so rounding to nearest
(what the GPU's conversion does) puts each stored entry within 2⁻⁸ ≈ 3.9e-3 of |G_i[j, k]|
(relative; Triton's interpreter truncates instead, within 2⁻⁷). The norms are those of the
stored Grams Ĝ_i (the rounded tile's squares summed in float32 in the Gram kernel's epilogue),
within u = 2⁻⁸ of ‖G_i‖: so each stored ĝ_i = Ĝ_i / n̂_i has unit norm, sq agrees with
Σ‖ĝ_i‖², and forward and backward are those of one function, Diversity of the Ĝ_i. With norms
from the unrounded accumulator, ‖ĝ_i‖ would differ from 1 by up to u and the backward's
projection A - κ_i ĝ_i would leave a residue of u·|A| / n_i where the exact gradient
cancels (C = 1: g_i = 1 and the gradient is 0; the kernel gave 0.04). Consequences: S[j, k]
moves by at most about u·Σ_i |g_i[j, k]| <= u·(S[j, j] + S[k, k]) / 2 (Cauchy-Schwarz on each
G_i), so by at most about u·max|S|; W_i by O(u)·(|A| + |κ_i|)/n_i entrywise, since the
direction of ĝ_i differs from g_i's by O(u): the order of the rounding of W to bfloat16 that
the backward does anyway when W is not itself the small difference of large terms, inside
the tests' 16-bit tolerance (1e-2 of the largest magnitude). float32 inputs store float32:
no added error.

Passes (SB x SB storage tiles; the Gram kernel may compute them as (SB/BLOCK)² sub-tiles):

forward, 3 launches
  1. ``_gram_packed_kernel``        one program per (sample, upper tile, sub-tile): the sub-tile
                                    of F Fᵀ in float32, stored once, packed, in the storage
                                    dtype; w·‖stored sub-tile‖² (w = 2 off the diagonal) into
                                    the (B, TP) norm partials.
  2. ``_normalised_sum_kernel``     one program per (block of packed entries, split of the
                                    batch): n_b from the partials (fixed order), Σ_b G_b / n_b
                                    over the split; the first entry block also writes norms
                                    and the split's part of sq.
  3. ``_finish_sums_kernel``        one program per (upper tile, block of its rows): Σ over
                                    the splits in order, stored into S (C x C, float32) with
                                    its mirror; program 0 sums sq's parts.
backward, 2 launches (and A = Γ + Γᵀ in torch; for Diversity's own value, Γ = -2γ·S, the
kernels read S and scale it: diversity_value_backward)
  1. ``_cotangent_partials_kernel`` one program per (sample, upper tile): w·<A tile, G tile>
                                    and max|A tile|.
  2. ``_w_times_f_kernel``          grad F_b = W_b F_b, one program per (sample, row block,
                                    column block): κ_b, n_b and the scale σ_b from the partials
                                    (fixed order), then per K step the G sub-tile from packed
                                    storage (directly at or above the diagonal, else from the
                                    mirrored tile through tl.trans) and A (float32, from L2);
                                    W = (A - κ g)/σ formed in float32 registers, rounded once
                                    to feats' dtype, multiplied on tensor cores, accumulated in
                                    float32; the accumulator times σ_b / n_b is the gradient.
                                    No W buffer.

Numerics: every product runs in tl.dot with float32 accumulation; 16-bit inputs are read as they
are. float32 dots follow torch.get_float32_matmul_precision() ("highest" -> IEEE, else tf32). W_b
is formed in float32 (so A - κ_b g_b cancels without 16-bit rounding), divided by a per-sample
σ_b = max|A| + |κ_b| >= max|W_b n_b| so that it fits float16's range (one path for every
dtype: bfloat16 and float32 would not need it), and rounded once to feats' dtype. A is read
in float32 (not pre-scaled to bfloat16): its loads come from L2 (one C x C matrix shared by
every program) and it adds no rounding. No atomics: every sum has a fixed order, so two calls
give bitwise-equal results. No host synchronisation: all per-sample scalars stay on the device.

Cost model (counted: every HBM read and write once; re-reads that the grid order keeps in L2,
F_b's rows by the programs of sample b, the packed tiles by the column blocks of one row
block, A by everyone, counted once; left out: launch gaps, L2 misses on those re-reads, the
tail wave, the Triton MMA efficiency η; nt = ceil(C/SB), T = nt(nt+1)/2, elt: feats' bytes
per element, st: the storage dtype's), per kernel:
  _gram_packed_kernel         2·B·T·SB²·P FLOPs (≈ B·C²·P·(1 + 1/nt)); reads B·C·P·elt, writes
                              B·T·SB²·st.
  _normalised_sum_kernel      2·B·T·SB² FLOPs; reads B·T·SB²·st, writes 4·SPLITS·T·SB².
  _finish_sums_kernel         reads 4·SPLITS·T·SB², writes ≈ 4·C².
  _cotangent_partials_kernel  2·B·T·SB² FLOPs; reads B·T·SB²·st (A from L2).
  _w_times_f_kernel           2·B·C²·P FLOPs (+ ≈ 3·B·C²·NP to form W); reads B·T·SB²·st and
                              B·C·P·elt, writes B·C·P·elt.
At B = 1024, C = 512, P = 784 in bfloat16 (SB = 128, nt = 4, T = 10): 263 GFLOP of Grams and
421 GFLOP of W·F; HBM bytes: F read twice and the gradient written, 3 × 0.82 = 2.47 GB, the
packed bfloat16 tiles written once and read three times, 4 × 0.336 = 1.34 GB: 3.81 GB in all
(the kernels before this layout moved 7.03 GB). PREDICTIONS, not measured (H100: copy
3.0 TB/s, R = 798 TFLOP/s, Triton at 0.75 R assumed): Gram 0.44 ms (compute-bound), sum and
<A, G> 0.11 ms each (bandwidth), W·F 0.70 ms (compute) ≈ 1.37 ms, 77% of R; H200 (4.3 TB/s,
R = 788 TFLOP/s) ≈ 1.31 ms, 81%. benchmarks/RESULTS.md has the model.
Registers and shared memory (ptxas, sm_90a, Triton 3.9, bfloat16 at C = 512): the Gram kernel
97 registers and 48 KiB (two programs per SM), the W·F kernel 179 registers and 160 KiB (one
per SM: it holds the float32 A tile, the G tile and F in flight; the W-buffer kernel it
replaces took 106 and 96 KiB); no variant spills (tests/test_kernels_compile.py).
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

import torch
import triton
import triton.language as tl

from ..backend import interpreter_enabled
from ._common import Launch, cdiv, next_power_of_2, on_input_device, plan_cache, resident_grid

# Resident programs per SM of the normalised sum (4 warps; PREDICTION from its registers, a
# few dozen per thread): 4 x 8 KiB of bfloat16 loads in flight per SM. And its grid in the
# interpreter.
_SUM_PROGRAMS_PER_SM = 4
_INTERPRETER_PROGRAMS = 4
# Packed entries a program of the normalised sum covers, and samples per load: 4 x 1024
# elements per step.
_SUM_BLOCK = 1024
_SUM_STEP = 4
# Elements of a tile the cotangent partials and the finishing sum load per step.
_TILE_ELEMENTS = 2048
_SIGMA_FLOOR = 1e-30  # keeps σ_b > 0 when A = 0 and κ_b = 0 (W_b = 0 then)
# Largest tile edge (the Gram storage tiles, C and P of the W·F tiles). Tests lower it to
# cover several tiles on small, interpreter-sized inputs.
MAX_BLOCK = 128


# --------------------------------------------------------------------------------------------
# Packed Gram storage (shared with the custom op's fake implementation).
# --------------------------------------------------------------------------------------------

def gram_storage_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of the packed Grams for feats of `dtype`: bfloat16 for 16-bit inputs (float16's
    range is too small for Gram entries), float32 for float32."""
    return torch.float32 if dtype == torch.float32 else torch.bfloat16


def storage_block(C: int) -> int:
    """SB, the edge of the stored Gram tiles: C's power of two in [16, MAX_BLOCK]. It depends
    on C alone (not on strides, dtype or matmul precision), so a fake tensor gets it too."""
    return _pow2_clamp(C, 16, MAX_BLOCK)


def gram_storage_shape(B, C: int, dtype: torch.dtype) -> tuple:
    """Shape (B, T, SB, SB) of the packed Grams of a (B, C, P) batch: the T = nt(nt+1)/2 upper
    tiles (nt = ceil(C / SB)) of each sample, row-major over the upper triangle. B may be a
    symbolic size (torch.compile); C is read as an int (the tiles depend on it). dtype is
    feats' (the shape does not depend on it; the argument keeps the fake's call explicit)."""
    return (B, *_storage_tiles(int(C), MAX_BLOCK))


@plan_cache
def _storage_tiles(C: int, max_block: int) -> tuple:
    """(T, SB, SB) of gram_storage_shape (max_block: MAX_BLOCK, which tests lower)."""
    block = storage_block(C)
    return _tile_counts(C, block)[1], block, block


def _pow2_clamp(n: int, low: int, high: int) -> int:
    return max(low, min(high, next_power_of_2(max(int(n), 1))))


def _tile_counts(C: int, block: int) -> Tuple[int, int]:
    nt = cdiv(C, block)
    return nt, nt * (nt + 1) // 2


# --------------------------------------------------------------------------------------------
# Helpers (inlined into the kernels).
# --------------------------------------------------------------------------------------------

@triton.jit
def _upper_tile_coords(t, nt):
    """(row, col) of the t-th tile, in row-major order, of the upper triangle of nt x nt tiles."""
    tm = t * 0
    for r in range(1, nt):  # row r starts at tile index r*nt - r(r-1)/2
        tm += (t >= r * nt - (r * (r - 1)) // 2).to(tl.int32)
    tn = tm + t - (tm * nt - (tm * (tm - 1)) // 2)
    return tm, tn


@triton.jit
def _upper_tile_index(tm, tn, nt):
    """Index t of the upper tile (tm, tn), tm <= tn, in _upper_tile_coords' order."""
    return tm * nt - (tm * (tm - 1)) // 2 + tn - tm


@triton.jit
def _sum_partials(part_ptr, bs, in_b, T, BLOCK_B: tl.constexpr, BLOCK_T: tl.constexpr):
    """Σ_t part[b, t] for the samples bs (in_b: those below B) of a (B, T) float32 partials
    array, in t order (BLOCK_T columns per step): a (BLOCK_B,) float32 vector."""
    ts = tl.arange(0, BLOCK_T)
    total = tl.zeros((BLOCK_B,), dtype=tl.float32)
    for t0 in range(0, T, BLOCK_T):
        in_t = (t0 + ts) < T
        part = tl.load(part_ptr + bs.to(tl.int64)[:, None] * T + (t0 + ts)[None, :],
                       mask=in_b[:, None] & in_t[None, :], other=0.0)
        total += tl.sum(part, axis=1)
    return total


@triton.jit
def _dot(a, b, acc, PRECISION: tl.constexpr):
    """acc + a @ b, accumulated in float32.

    PRECISION is tl.dot's input_precision ("ieee" or "tf32"; 16-bit operands ignore it), or
    "upcast": operands converted to float32 first, with IEEE products. "upcast" is only chosen
    for bfloat16 in Triton's interpreter, whose tl.dot (Triton 3.9) multiplies the bit patterns
    of bfloat16 operands as integers (triton-lang/triton#11584); bfloat16 products are exact in
    float32, so the result is that of the GPU's bfloat16 dot.
    """
    if PRECISION == "upcast":
        out = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        out = tl.dot(a, b, acc, input_precision=PRECISION)
    return out


@triton.jit
def _gram_tile(acc, f_ptr, rows_m, rows_n, C, P, stride_c, stride_p,
               BLOCK_K: tl.constexpr, PRECISION: tl.constexpr):
    """acc + one tile of F Fᵀ: rows rows_m and columns rows_n of the Gram of F.

    acc is a float32 (len(rows_m), len(rows_n)) accumulator; f_ptr points at F (C x P, strides
    stride_c, stride_p). Rows or columns beyond C contribute zero.
    Cost: 2·BLOCK²·P FLOPs, 2·BLOCK·P elements read.
    """
    ks = tl.arange(0, BLOCK_K)
    off_m = rows_m.to(tl.int64)[:, None] * stride_c
    off_n = rows_n.to(tl.int64)[None, :] * stride_c
    in_m = (rows_m < C)[:, None]
    in_n = (rows_n < C)[None, :]
    for k in range(0, P, BLOCK_K):
        in_k = (k + ks) < P
        off_k = (k + ks).to(tl.int64) * stride_p
        a = tl.load(f_ptr + off_m + off_k[None, :], mask=in_m & in_k[None, :], other=0.0)
        b = tl.load(f_ptr + off_k[:, None] + off_n, mask=in_k[:, None] & in_n, other=0.0)
        acc = _dot(a, b, acc, PRECISION)
    return acc


# --------------------------------------------------------------------------------------------
# Forward.
# --------------------------------------------------------------------------------------------

@triton.jit
def _gram_packed_kernel(f_ptr, g_ptr, part_ptr, C, P, stride_b, stride_c, stride_p, NT, T,
                        SB: tl.constexpr, BLOCK: tl.constexpr, BLOCK_K: tl.constexpr,
                        PRECISION: tl.constexpr):
    """Each sample's upper Gram tiles into packed storage, with the squared-Frobenius partials.

    Grid (B·T·SUBS²,), SUBS = SB // BLOCK: program ((b·T + t)·SUBS + i)·SUBS + j computes
    sub-tile (i, j) (BLOCK x BLOCK) of upper tile t (row-major over the upper triangle of the
    NT x NT grid of SB x SB tiles, T = NT(NT+1)/2) of G_b = F_b F_bᵀ in float32, stores it
    once, rounded to g's dtype, into g[b, t], and writes w·‖stored sub-tile‖² (summed in
    float32) to part[b, ·], w = 2 off the diagonal (the mirrored tile is not stored) and 1 on
    it, so Σ part[b, ·] = ‖Ĝ_b‖²_F, Ĝ_b the stored Gram.
    Diagonal tiles are stored whole (both triangles); with SUBS > 1 their sub-tiles below the
    diagonal are computed too. Entries beyond C are stored as zeros.

    Buffers: f (B, C, P) any strides, float32/float16/bfloat16; g (B, T, SB, SB) contiguous,
    float32 or bfloat16 (every entry written); part (B, T·SUBS²) float32.
    Cost: FLOPs 2·B·T·SB²·P ≈ B·C²·P·(1 + 1/NT); bytes read 2·B·T·SB·P·elt (L2; HBM at least
    B·C·P·elt), written B·T·SB²·st + 4·B·T·SUBS².
    """
    SUBS: tl.constexpr = SB // BLOCK
    pid = tl.program_id(0)
    tile = pid // (SUBS * SUBS)  # b·T + t
    i = (pid // SUBS) % SUBS
    j = pid % SUBS
    b = tile // T
    tm, tn = _upper_tile_coords(tile % T, NT)
    sub = tl.arange(0, BLOCK)
    rows_m = tm * SB + i * BLOCK + sub
    rows_n = tn * SB + j * BLOCK + sub
    g = _gram_tile(tl.zeros((BLOCK, BLOCK), dtype=tl.float32), f_ptr + b.to(tl.int64) * stride_b,
                   rows_m, rows_n, C, P, stride_c, stride_p, BLOCK_K, PRECISION)
    stored = g.to(g_ptr.dtype.element_ty)
    rounded = stored.to(tl.float32)  # the norm of what is stored: see the module docstring
    tl.store(part_ptr + pid, tl.where(tm == tn, 1.0, 2.0) * tl.sum(rounded * rounded))
    offs = (i * BLOCK + sub)[:, None] * SB + (j * BLOCK + sub)[None, :]
    tl.store(g_ptr + tile.to(tl.int64) * (SB * SB) + offs, stored)


@triton.jit
def _normalised_sum_kernel(g_ptr, part_ptr, norms_ptr, sqpart_ptr, spart_ptr, B, E, TP,
                           SAMPLES_PER_SPLIT, eps, BLOCK_E: tl.constexpr, STEP: tl.constexpr,
                           BLOCK_T: tl.constexpr):
    """Per split of the batch, Σ_b G_b / n_b on one block of the packed entries.

    Grid (cdiv(E, BLOCK_E), SPLITS): program (e, s) walks the samples of split s
    (SAMPLES_PER_SPLIT consecutive ones; the last split may be short or empty) STEP at a
    time, in order: n_b = max(norms_b, eps) with norms_b = sqrt(Σ part[b, ·]) summed in a
    fixed order (every program gets the same bits), and writes its sum of entries
    [e·BLOCK_E, (e+1)·BLOCK_E) to spart[s]. Programs e = 0 also write norms_b of their split
    and sqpart[s] = Σ_b (norms_b / n_b)². Bandwidth-bound: each step loads a (STEP, BLOCK_E)
    block of the packed Grams.

    Buffers: g (B, E) contiguous, the storage dtype (the packed Grams, E = T·SB²); part
    (B, TP) float32; norms (B,) float32; sqpart (SPLITS,) float32; spart (SPLITS, E) float32
    (every entry written).
    Cost: bytes read B·E·st (+ 4·B·TP per program, L2), written 4·SPLITS·E; 2·B·E FLOPs.
    """
    e_block = tl.program_id(0)
    split = tl.program_id(1)
    es = e_block * BLOCK_E + tl.arange(0, BLOCK_E)
    in_e = es < E
    start = split * SAMPLES_PER_SPLIT
    end = tl.minimum(start + SAMPLES_PER_SPLIT, B)
    acc = tl.zeros((BLOCK_E,), dtype=tl.float32)
    sq = tl.zeros((STEP,), dtype=tl.float32)
    for b0 in range(start, end, STEP):
        bs = b0 + tl.arange(0, STEP)
        in_b = bs < end
        norm = tl.sqrt_rn(_sum_partials(part_ptr, bs, in_b, TP, STEP, BLOCK_T))
        n = tl.maximum(norm, eps)
        g = tl.load(g_ptr + bs.to(tl.int64)[:, None] * E + es[None, :],
                    mask=in_b[:, None] & in_e[None, :], other=0.0)
        acc += tl.sum(g.to(tl.float32) * (1.0 / n)[:, None], axis=0)
        ratio = tl.div_rn(norm, n)
        sq += tl.where(in_b, ratio * ratio, 0.0)
        if e_block == 0:
            tl.store(norms_ptr + bs, norm, mask=in_b)
    tl.store(spart_ptr + split.to(tl.int64) * E + es, acc, mask=in_e)
    if e_block == 0:
        tl.store(sqpart_ptr + split, tl.sum(sq, axis=0))


@triton.jit
def _finish_sums_kernel(spart_ptr, sqpart_ptr, s_ptr, sq_ptr, C, NT, SPLITS, E,
                        SB: tl.constexpr, ROWS: tl.constexpr):
    """S = Σ_s spart[s] unpacked into the full symmetric C x C matrix, and sq = Σ_s sqpart[s],
    both summed over the splits in order.

    Grid (T·SB/ROWS,): program t·(SB/ROWS) + r sums rows [r·ROWS, (r+1)·ROWS) of packed tile
    t, stores them at their place in S and, off the diagonal, at the mirrored place; program
    0 also writes sq.

    Buffers: spart (SPLITS, E) float32 (E = T·SB²); sqpart (SPLITS,) float32; s (C, C)
    float32 contiguous (every entry written); sq () float32.
    Cost: bytes read 4·SPLITS·E, written ≈ 4·C²; SPLITS·E additions.
    """
    CHUNKS: tl.constexpr = SB // ROWS
    pid = tl.program_id(0)
    t = pid // CHUNKS
    tm, tn = _upper_tile_coords(t, NT)
    rr = (pid % CHUNKS) * ROWS + tl.arange(0, ROWS)
    cc = tl.arange(0, SB)
    ptrs = spart_ptr + t * (SB * SB) + rr[:, None] * SB + cc[None, :]
    acc = tl.zeros((ROWS, SB), dtype=tl.float32)
    for _ in range(0, SPLITS):
        acc += tl.load(ptrs)
        ptrs += E
    rows = tm * SB + rr
    cols = tn * SB + cc
    in_s = (rows < C)[:, None] & (cols < C)[None, :]
    tl.store(s_ptr + rows[:, None] * C + cols[None, :], acc, mask=in_s)
    if tm != tn:
        tl.store(s_ptr + cols[None, :] * C + rows[:, None], acc, mask=in_s)
    if pid == 0:
        sq = tl.load(sqpart_ptr)
        for s in range(1, SPLITS):
            sq += tl.load(sqpart_ptr + s)
        tl.store(sq_ptr, sq)


# --------------------------------------------------------------------------------------------
# Backward.
# --------------------------------------------------------------------------------------------

@triton.jit
def _cotangent_partials_kernel(g_ptr, a_ptr, dot_ptr, amax_ptr, C, NT, T,
                               SB: tl.constexpr, ROWS: tl.constexpr):
    """Partials of <M, G_b> and of max|M|, read from the packed Grams; M is A, or S where the
    W·F kernel forms A = c·S (see _sample_coefficients, which applies c).

    Grid (B·T,): program b·T + t reads packed tile t of G_b and the same tile of M, ROWS rows
    at a time, and writes w·<M tile, G tile> (w = 2 off the diagonal, 1 on it) to dot[b, t],
    so Σ_t dot[b, t] = <M, G_b> (M and G_b symmetric), and max|M tile| to amax[b, t] (every
    sample gets the same values: max_t amax[b, t] = max|M|, without a separate pass).

    Buffers: g (B, T, SB, SB) contiguous, the storage dtype; a (C, C) float32 contiguous,
    symmetric (M); dot and amax (B, T) float32.
    Cost: bytes read B·T·SB²·st of G (HBM) and 4·B·T·SB² of A (L2); 3·B·T·SB² FLOPs.
    """
    pid = tl.program_id(0)
    tm, tn = _upper_tile_coords(pid % T, NT)
    cc = tl.arange(0, SB)
    cols = tn * SB + cc
    in_cols = (cols < C)[None, :]
    tile = g_ptr + pid.to(tl.int64) * (SB * SB)
    acc = tl.zeros((ROWS, SB), dtype=tl.float32)
    amax = tl.zeros((ROWS, SB), dtype=tl.float32)
    for r in range(0, SB, ROWS):
        rr = r + tl.arange(0, ROWS)
        rows = tm * SB + rr
        a = tl.load(a_ptr + rows[:, None] * C + cols[None, :], mask=(rows < C)[:, None] & in_cols,
                    other=0.0)
        acc += a * tl.load(tile + rr[:, None] * SB + cc[None, :]).to(tl.float32)
        amax = tl.maximum(amax, tl.abs(a))
    tl.store(dot_ptr + pid, tl.where(tm == tn, 1.0, 2.0) * tl.sum(acc))
    tl.store(amax_ptr + pid, tl.max(amax))


@triton.jit
def _sample_coefficients(dot_ptr, amax_ptr, norms_ptr, grad_sq_ptr, grad_sq_scale, b, T, eps,
                         sigma_floor, BLOCK_T: tl.constexpr, A_FROM_S: tl.constexpr):
    """(c/σ, κ/(n·σ), σ/n) of sample b, so that W_b = (σ/n)·(c·M/σ - κ/(n·σ)·G_b), A = c·M.

    M is the matrix the partials were taken of: A itself (c = 1), or S when A_FROM_S (the
    cotangents of Diversity's own value: Γ = -2γ·S, so c = -4γ). γ = grad_sq[0]·grad_sq_scale,
    read in float32 (grad_sq may be 16-bit: the value's upstream gradient, scale 1/B).
    n = max(norms_b, eps); κ = c·Σ_t dot[b, t] / n (in t order) if norms_b >= eps, else -4γ;
    σ = max(|c|·max_t amax[b, t] + |κ|, sigma_floor), a bound on |A - κ g_b| entrywise since
    |g_b| <= 1. Every program of sample b computes the same bits.
    """
    ts = tl.arange(0, BLOCK_T)
    dot = tl.zeros((BLOCK_T,), dtype=tl.float32)
    amax = tl.zeros((BLOCK_T,), dtype=tl.float32)
    row = b.to(tl.int64) * T
    for t0 in range(0, T, BLOCK_T):
        in_t = (t0 + ts) < T
        dot += tl.load(dot_ptr + row + t0 + ts, mask=in_t, other=0.0)
        amax = tl.maximum(amax, tl.load(amax_ptr + row + t0 + ts, mask=in_t, other=0.0))
    norm = tl.load(norms_ptr + b)
    n = tl.maximum(norm, eps)
    grad_sq = tl.load(grad_sq_ptr).to(tl.float32) * grad_sq_scale
    if A_FROM_S:
        c = -4.0 * grad_sq
    else:
        c = 1.0
    kappa = tl.where(norm >= eps, c * tl.sum(dot, axis=0) / n, -4.0 * grad_sq)
    sigma = tl.maximum(tl.abs(c) * tl.max(amax, axis=0) + tl.abs(kappa), sigma_floor)
    return c / sigma, kappa / (n * sigma), sigma / n


@triton.jit
def _w_times_f_steps(acc, k_start, k_end, tr, g_sample, a_ptr, f_cols, rows, c_a, c_g, C, NT,
                     stride_c, in_cols, SB: tl.constexpr, BLOCK_K: tl.constexpr,
                     PRECISION: tl.constexpr, BELOW: tl.constexpr):
    """acc + W[rows, k_start:k_end] F[k_start:k_end, cols], W = c_a·A - c_g·G_b formed per K
    step in float32 and rounded to F's dtype.

    rows lie in tile row tr (len(rows) divides SB); k_start and k_end - k_start are multiples
    of BLOCK_K (which divides SB), so each step's (rows, K) sub-tile of G_b lies in one SB x SB
    tile (tr, k // SB). BELOW: the steps left of the diagonal (k < tr·SB), whose tile is not
    stored: it is read from its mirror, stored tile (k // SB, tr), as a (K, rows) block, and
    transposed. g_sample points at G_b's packed tiles; f_cols at F_b's columns cols (a row of
    pointers, stride_c between rows of C).
    """
    ks = tl.arange(0, BLOCK_K)
    in_rows = (rows < C)[:, None]
    r_in = rows - tr * SB  # the rows' place inside their tile
    for k in range(k_start, k_end, BLOCK_K):
        kk = k + ks
        in_k = kk < C
        tc = k // SB
        k_in = kk - tc * SB
        if BELOW:
            tile = g_sample + _upper_tile_index(tc, tr, NT) * (SB * SB)
            g = tl.trans(tl.load(tile + k_in[:, None] * SB + r_in[None, :]))
        else:
            tile = g_sample + _upper_tile_index(tr, tc, NT) * (SB * SB)
            g = tl.load(tile + r_in[:, None] * SB + k_in[None, :])
        a = tl.load(a_ptr + rows[:, None] * C + kk[None, :], mask=in_rows & in_k[None, :],
                    other=0.0)
        w = (c_a * a - c_g * g.to(tl.float32)).to(f_cols.dtype.element_ty)
        f = tl.load(f_cols + kk.to(tl.int64)[:, None] * stride_c, mask=in_k[:, None] & in_cols,
                    other=0.0)
        acc = _dot(w, f, acc, PRECISION)
    return acc


@triton.jit
def _w_times_f_kernel(g_ptr, a_ptr, f_ptr, dot_ptr, amax_ptr, norms_ptr, grad_sq_ptr, out_ptr,
                      C, P, stride_b, stride_c, stride_p, NM, NP, NT, T, eps, sigma_floor,
                      grad_sq_scale, SB: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_T: tl.constexpr,
                      PRECISION: tl.constexpr, A_FROM_S: tl.constexpr):
    """out_b = W_b F_b, the gradient of sample b, W_b formed tile by tile in registers.

    Grid (B·NM·NP,), NM = cdiv(C, BLOCK_M), NP = cdiv(P, BLOCK_N): program (b, m, p), p
    fastest, so programs sharing a row block of G_b and F_b run side by side (L2 reuse).
    Each program computes sample b's coefficients (_sample_coefficients), then walks K over C:
    the steps left of the diagonal tile row read the mirrored stored tiles transposed, the
    others the stored tiles (_w_times_f_steps). W is rounded to F's dtype (16-bit operands
    for 16-bit inputs), the product accumulated in float32 and scaled by σ_b / n_b.
    BLOCK_M and BLOCK_K divide SB. a holds A, or S when A_FROM_S (A = -4γ·S; see
    _sample_coefficients).

    Buffers: g (B, T, SB, SB) contiguous, the storage dtype; a (C, C) float32 contiguous; f
    (B, C, P) any strides; dot and amax (B, T) float32 (_cotangent_partials_kernel); norms
    (B,) float32; grad_sq () any float dtype (γ = grad_sq·grad_sq_scale); out (B, C, P)
    contiguous, F's dtype.
    Cost: FLOPs 2·B·C²·P (+ ≈ 3·B·C²·NP forming W); bytes read B·T·SB²·st·NP +
    4·C²·B·NP + B·C·P·elt·NM (L2; HBM at least B·T·SB²·st + B·C·P·elt), written B·C·P·elt.
    """
    pid = tl.program_id(0)
    b = pid // (NM * NP)
    rest = pid % (NM * NP)
    row0 = (rest // NP) * BLOCK_M
    rows = row0 + tl.arange(0, BLOCK_M)
    cols = (rest % NP) * BLOCK_N + tl.arange(0, BLOCK_N)
    in_cols = (cols < P)[None, :]
    c_a, c_g, c_out = _sample_coefficients(dot_ptr, amax_ptr, norms_ptr, grad_sq_ptr,
                                           grad_sq_scale, b, T, eps, sigma_floor, BLOCK_T,
                                           A_FROM_S)
    tr = row0 // SB
    g_sample = g_ptr + b.to(tl.int64) * T * (SB * SB)
    f_cols = f_ptr + b.to(tl.int64) * stride_b + cols.to(tl.int64)[None, :] * stride_p
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc = _w_times_f_steps(acc, 0, tr * SB, tr, g_sample, a_ptr, f_cols, rows, c_a, c_g, C, NT,
                           stride_c, in_cols, SB, BLOCK_K, PRECISION, True)
    acc = _w_times_f_steps(acc, tr * SB, C, tr, g_sample, a_ptr, f_cols, rows, c_a, c_g, C, NT,
                           stride_c, in_cols, SB, BLOCK_K, PRECISION, False)
    out = (acc * c_out).to(out_ptr.dtype.element_ty)
    out_offs = b.to(tl.int64) * C * P + rows.to(tl.int64)[:, None] * P + cols[None, :]
    tl.store(out_ptr + out_offs, out, mask=(rows < C)[:, None] & in_cols)


# --------------------------------------------------------------------------------------------
# Launch configuration.
# --------------------------------------------------------------------------------------------

def _least_padding(n: int, low: int, high: int, slack: float = 0.03) -> int:
    """A tile edge along n: the largest power of two in [low, high] (high capped by n's own
    power of two) that pads n up to whole tiles by at most `slack`, else the one that pads
    least. P = 784 (28x28): 64 pads to 832 (6% more products and loads), 128 to 896 (14%),
    32 to 800 (2%)."""
    high = _pow2_clamp(n, low, high)
    best, block = high, high
    while block >= low:
        padded = cdiv(n, block) * block
        if padded <= n * (1 + slack):
            return block
        if padded < cdiv(n, best) * best:
            best = block
        block //= 2
    return best


def _dot_precision(feats: torch.Tensor) -> str:
    """PRECISION of _dot: float32 follows torch's matmul precision ("highest" -> IEEE, else
    tf32); 16-bit operands ignore it, except bfloat16 in Triton's interpreter ("upcast")."""
    dtype = feats.dtype
    if dtype is torch.bfloat16:
        return "upcast" if feats.device.type == "cpu" and interpreter_enabled() else "tf32"
    if dtype is torch.float32 and torch.get_float32_matmul_precision() == "highest":
        return "ieee"
    return "tf32"


def _k_block(dtype: torch.dtype) -> int:
    """K tile: 32 float32 or 64 16-bit elements, i.e. 128 bytes of each row per step."""
    return 32 if dtype == torch.float32 else 64


def _aligned(C: int, strides) -> bool:
    """Whether feats' rows are unit-stride and 16-element aligned and C is a multiple of 16,
    so that Triton can prove 16-byte alignment of the F loads and of the C x C tiles (A, S)."""
    return strides[2] == 1 and strides[1] % 16 == 0 and C % 16 == 0


def gram_config(C: int, P: int, dtype: torch.dtype, strides, precision: str,
                max_block: int) -> Launch:
    """Tiles of the Gram kernel (grid set by the launcher): SB x SB storage tiles computed as
    BLOCK x BLOCK sub-tiles (BLOCK divides SB), BLOCK_K steps over P, the dot's PRECISION.

    SB is storage_block's (C alone decides the stored layout). BLOCK = SB where feats are
    aligned (see _aligned); unaligned feats or C (element-wise addresses, one register each)
    compute 64 x 64 sub-tiles, 32 x 32 with IEEE dots: larger, the Gram kernel spilled (IEEE
    float32 P=49 at 128: 255 registers and 24-44 bytes, at 64: 28 bytes on sm_90a, 4 on
    sm_80; bfloat16 channels-last C=200 at 128: 72 bytes). Sub-tiles below the diagonal of a
    diagonal storage tile are then computed too (the fallback layouts only).
    BLOCK_K is the widest step that pads P by at most 3% (_least_padding: 32 at P = 784, not
    64, which pads to 832: 6% more MMA work; PREDICTION). IEEE float32 dots (no tensor cores:
    the products are FMAs whose operands sit in registers) and float32 rows that are not
    16-aligned take at most 16: at 32 the Gram kernel spilled on sm_90a (IEEE: 255 registers,
    36 bytes of spill stores). Tiles of 128 and unaligned tiles take 8 warps, others 4.
    """
    aligned = _aligned(C, strides)
    ieee = precision == "ieee"
    store = _pow2_clamp(C, 16, max_block)
    block = store if aligned else min(store, 32 if ieee else 64)
    k_block = 16 if dtype == torch.float32 and (ieee or not aligned) else _k_block(dtype)
    block_k = _least_padding(P, 16, min(max_block, k_block))
    return Launch((), dict(SB=store, BLOCK=block, BLOCK_K=block_k, PRECISION=precision),
                  num_warps=8 if block >= 128 or not aligned else 4, num_stages=3)


def apply_config(C: int, P: int, dtype: torch.dtype, strides, precision: str,
                 max_block: int) -> Launch:
    """Tiles of the W·F kernel (grid set by the launcher): BLOCK_M rows of C, BLOCK_N columns
    of P, BLOCK_K of C, the dot's PRECISION; SB, the storage tile (BLOCK_M and BLOCK_K are
    powers of two no larger than SB, so they divide it).

    W is rounded to feats' dtype, so BLOCK_K is the dtype's K tile (128 bytes of each row per
    step). BLOCK_N keeps P's padding (784 to 896 at 128): at 64 it would be 832, but every
    program re-reads its BLOCK_M x C rows of G (and of A) from L2, so halving BLOCK_N doubles
    that traffic. Unaligned feats or C (see _aligned) get 64 x 64 output tiles and BLOCK_K 32
    (at 128 the IEEE float32 channels-last product spilled); IEEE dots take 8 warps and
    BLOCK_K 16: with the float32 A and G tiles W is formed from, 128 x 128 at BLOCK_K 32
    spilled (sm_90a, Triton 3.9: 255 registers, 32 bytes of spill stores).
    """
    top = max_block if _aligned(C, strides) else min(max_block, 64)
    block_m = _pow2_clamp(C, 16, top)
    block_n = _pow2_clamp(P, 16, top)
    k_block = 16 if precision == "ieee" else _k_block(dtype) if top == max_block else 32
    block_k = _pow2_clamp(C, 16, min(top, k_block))
    return Launch((), dict(SB=_pow2_clamp(C, 16, max_block), BLOCK_M=block_m, BLOCK_N=block_n,
                           BLOCK_K=block_k, PRECISION=precision),
                  num_warps=8 if block_m * block_n >= 128 * 128 or precision == "ieee" else 4,
                  num_stages=3)


class _Plan(NamedTuple):
    """The launch configuration of one (C, P, dtype, strides, precision, MAX_BLOCK), grids
    without the batch: multiply by B (see the launchers)."""
    nt: int                  # tile rows of the Gram
    tiles: int               # T, upper tiles per sample
    entries: int             # E = T·SB², packed entries per sample
    gram: Launch             # _gram_packed_kernel, grid B·gram_partials
    gram_partials: int       # TP = T·(SB/BLOCK)², Gram programs (and norm partials) per sample
    normalised_sum: Launch   # _normalised_sum_kernel, grid (sum_blocks, splits)
    sum_blocks: int
    finish: Launch           # _finish_sums_kernel, grid set
    cotangent: Launch        # _cotangent_partials_kernel, grid B·tiles
    apply: Launch            # _w_times_f_kernel, grid B·nm·npb (A given)
    apply_from_s: Launch     # the same, A formed from S (A_FROM_S)
    nm: int
    npb: int


@plan_cache
def _plan(C: int, P: int, dtype: torch.dtype, strides: tuple, precision: str,
          max_block: int) -> _Plan:
    gram = gram_config(C, P, dtype, strides, precision, max_block)
    store = gram.constexprs["SB"]
    nt, tiles = _tile_counts(C, store)
    partials = tiles * (store // gram.constexprs["BLOCK"]) ** 2
    entries = tiles * store * store
    rows = min(store, _TILE_ELEMENTS // store)
    apply = apply_config(C, P, dtype, strides, precision, max_block)
    apply = apply.with_constexprs(BLOCK_T=_pow2_clamp(tiles, 1, 32), A_FROM_S=False)
    # The normalised sum reads the norm partials 16 at a time: at 32 (T·SUBS² = 160 partials
    # of a float32 layout with sub-tiles) it spilled 4 bytes on sm_90a under Triton 3.6.
    return _Plan(
        nt, tiles, entries, gram, partials,
        Launch((), dict(BLOCK_E=_SUM_BLOCK, STEP=_SUM_STEP, BLOCK_T=_pow2_clamp(partials, 1, 16)),
               num_warps=4),
        cdiv(entries, _SUM_BLOCK),
        Launch((tiles * (store // rows),), dict(SB=store, ROWS=rows), num_warps=4),
        Launch((), dict(SB=store, ROWS=rows), num_warps=4),
        apply, apply.with_constexprs(A_FROM_S=True), cdiv(C, apply.constexprs["BLOCK_M"]),
        cdiv(P, apply.constexprs["BLOCK_N"]))


def _sum_splits(samples: int, blocks: int, device: torch.device) -> int:
    """Batch splits of the normalised sum over `samples`, whose packed entries make `blocks`
    blocks: as many as fill one wave of resident programs (_common.resident_grid,
    _SUM_PROGRAMS_PER_SM) with blocks x splits programs. PREDICTION (H200, 132 SMs, C = 512:
    160 entry blocks): 3 splits, 480 programs of the 528 resident slots.
    """
    programs = resident_grid(device, _SUM_PROGRAMS_PER_SM, _INTERPRETER_PROGRAMS,
                             samples * blocks)
    return max(1, min(samples, programs // blocks))


def _float32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype is torch.float32 else t.to(torch.float32)


def _check_feats(feats: torch.Tensor) -> None:
    if feats.dim() != 3:
        raise ValueError(f"feats must be (B, C, P), got shape {tuple(feats.shape)}")
    if feats.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"feats must be float32, float16 or bfloat16, not {feats.dtype}")


# --------------------------------------------------------------------------------------------
# Launchers.
# --------------------------------------------------------------------------------------------

@on_input_device
def diversity_sums_forward(feats: torch.Tensor, eps: float
                           ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(S, sq, norms, grams) of a (B, C, P) batch; see the module docstring. S (C, C), sq ()
    and norms (B,) float32; grams the packed upper Gram tiles, gram_storage_shape(B, C, dtype)
    in gram_storage_dtype(dtype), for the backward. All contiguous.

    ``eps`` is the floor on ‖G_i‖_F (the caller's, so kernel and reference share one value).

    Matches :func:`fastobj.functional.diversity_sums_ref`. feats may have any strides.
    Cost: one symmetric Gram pass, ≈ B·C²·P·(1 + 1/nt) FLOPs; HBM traffic
    ≈ B·C·P·elt + 2·B·T·SB²·st (the packed Grams written and read back once). Three launches.
    """
    _check_feats(feats)
    B, C, P = feats.shape
    f32 = dict(dtype=torch.float32, device=feats.device)
    grams = torch.empty(gram_storage_shape(B, C, feats.dtype),
                        dtype=gram_storage_dtype(feats.dtype), device=feats.device)
    if B == 0 or C == 0:
        return (torch.zeros((C, C), **f32), torch.zeros((), **f32), torch.zeros((B,), **f32),
                grams)
    plan = _plan(C, P, feats.dtype, feats.stride(), _dot_precision(feats), MAX_BLOCK)
    splits = _sum_splits(B, plan.sum_blocks, feats.device)
    part = torch.empty((B, plan.gram_partials), **f32)
    norms = torch.empty((B,), **f32)
    spart = torch.empty((splits, plan.entries), **f32)
    sqpart = torch.empty((splits,), **f32)
    sums = torch.empty((C, C), **f32)
    sq = torch.empty((), **f32)
    plan.gram.on((B * plan.gram_partials,))(_gram_packed_kernel, feats, grams, part, C, P,
                                             *feats.stride(), plan.nt, plan.tiles)
    plan.normalised_sum.on((plan.sum_blocks, splits))(
        _normalised_sum_kernel, grams, part, norms, sqpart, spart, B, plan.entries,
        plan.gram_partials, cdiv(B, splits), eps)
    plan.finish(_finish_sums_kernel, spart, sqpart, sums, sq, C, plan.nt, splits, plan.entries)
    return sums, sq, norms, grams


@on_input_device
def diversity_sums_backward(feats: torch.Tensor, norms: torch.Tensor, grams: torch.Tensor,
                            grad_S: torch.Tensor, grad_sq: torch.Tensor, eps: float
                            ) -> torch.Tensor:
    """Vector-Jacobian product of (S, sq) w.r.t. feats for cotangents (grad_S, grad_sq).

    feats (B, C, P) any strides; norms (B,) float32 and grams (the packed Grams) as returned
    by the forward; grad_S (C, C), any (not necessarily symmetric); grad_sq 0-dim. Returns a
    contiguous (B, C, P) tensor in feats' dtype. Two launches. Cost: the W·F product,
    2·B·C²·P FLOPs; HBM ≈ 2·B·T·SB²·st (the packed Grams read twice) + 2·B·C·P·elt bytes
    (F read, the gradient written). Memory: two (B, T) float32 partials; no C x C buffer
    per sample.
    """
    grad_S = _float32(grad_S)
    a_sym = (grad_S + grad_S.mT).contiguous()  # A = Γ + Γᵀ
    return _backward(feats, norms, grams, a_sym, _float32(grad_sq), 1.0, False, eps)


@on_input_device
def diversity_value_backward(feats: torch.Tensor, norms: torch.Tensor, grams: torch.Tensor,
                             sums: torch.Tensor, grad_value: torch.Tensor, eps: float
                             ) -> torch.Tensor:
    """Gradient w.r.t. feats of Diversity's value v = (sq - ‖S‖²_F) / B for its 0-dim upstream
    gradient grad_value (feats' dtype or float32), with S = sums from the forward: the
    cotangents are γ = grad_value / B and Γ = -2γ·S, so A = -4γ·S, which the kernels form from
    S and grad_value themselves (no torch op between the forward and the two launches).
    Otherwise as diversity_sums_backward."""
    if sums.dtype != torch.float32 or not sums.is_contiguous():
        raise ValueError(f"sums must be the forward's contiguous float32 S, got {sums.dtype}")
    return _backward(feats, norms, grams, sums, grad_value, 1.0 / max(feats.shape[0], 1), True,
                     eps)


def _backward(feats: torch.Tensor, norms: torch.Tensor, grams: torch.Tensor, a: torch.Tensor,
              grad_sq: torch.Tensor, grad_sq_scale: float, a_from_s: bool, eps: float
              ) -> torch.Tensor:
    """The two backward launches: a is A (float32, symmetric, contiguous) or S (a_from_s);
    γ = grad_sq·grad_sq_scale (see _sample_coefficients)."""
    _check_feats(feats)
    B, C, P = feats.shape
    shape, dtype = gram_storage_shape(B, C, feats.dtype), gram_storage_dtype(feats.dtype)
    if tuple(grams.shape) != shape or grams.dtype != dtype or not grams.is_contiguous():
        raise ValueError(f"grams must be contiguous {dtype} of shape {shape} "
                         f"(diversity_sums_forward's), got {grams.dtype} {tuple(grams.shape)}")
    grad = torch.empty((B, C, P), dtype=feats.dtype, device=feats.device)
    if grad.numel() == 0:
        return grad
    f32 = dict(dtype=torch.float32, device=feats.device)
    plan = _plan(C, P, feats.dtype, feats.stride(), _dot_precision(feats), MAX_BLOCK)
    dot = torch.empty((B, plan.tiles), **f32)
    amax = torch.empty((B, plan.tiles), **f32)
    plan.cotangent.on((B * plan.tiles,))(_cotangent_partials_kernel, grams, a, dot, amax,
                                         C, plan.nt, plan.tiles)
    (plan.apply_from_s if a_from_s else plan.apply).on((B * plan.nm * plan.npb,))(
        _w_times_f_kernel, grams, a, feats, dot, amax, _float32(norms), grad_sq,
        grad, C, P, *feats.stride(), plan.nm, plan.npb, plan.nt,
        plan.tiles, eps, _SIGMA_FLOOR, grad_sq_scale)
    return grad

# --------------------------------------------------------------------------------------------
# Cost model: the roofline floor that `fastobj bench` rates each measurement against.
# --------------------------------------------------------------------------------------------

def cost(shape: tuple, dtype: torch.dtype, mode: str) -> tuple:
    """``(bytes, flops)`` a Diversity call must at least move and do, for ``mode`` "fwd" or
    "fwd+bwd" on activations of ``shape`` (B, C, *positions) in ``dtype`` (P = the positions).

    Bytes: the forward reads F once, B·C·P·elt; the backward reads F again and writes its
    gradient, so fwd+bwd moves 3·B·C·P·elt. FLOPs: the forward's Grams, 2·B·C²·P; the
    backward's useful work is the gradient product W_i·F_i, another 2·B·C²·P. Work a kernel
    adds (forming W_i in registers) or saves (Gram symmetry: only the upper tiles) is not
    counted, so a rate from this model is useful FLOP/s. Compute-bound: judge it against the matmul rate.
    """
    if mode not in ("fwd", "fwd+bwd"):
        raise ValueError(f"diversity cost: mode must be 'fwd' or 'fwd+bwd', got {mode!r}")
    batch, channels = shape[0], shape[1]
    elements = torch.Size(shape).numel()
    positions = torch.Size(shape[2:]).numel()
    backward = mode == "fwd+bwd"
    flops = 2 * batch * channels * channels * positions * (2 if backward else 1)
    return elements * dtype.itemsize * (3 if backward else 1), flops
