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

Each Gram is computed once. The forward stores every G_i (float32, C x C) in a scratch buffer
and returns it as ``grams`` when the whole batch fits MAX_SCRATCH_BYTES; the backward then reads
the Grams instead of recomputing them (autograd keeps them from the forward). Larger batches
run in chunks of the batch, and their backward recomputes each chunk's Grams.

Passes (tiles of the C x C Gram are BLOCK x BLOCK; only the nt(nt+1)/2 tiles of the upper
triangle are computed, nt = ceil(C / BLOCK), since G_i and W_i are symmetric):

forward, per chunk of the batch
  1. ``_gram_tiles_kernel``          one program per (sample, upper tile): the tile and its mirror
                                     into the Gram scratch, its ‖tile‖² partial.
  2. ``_norms_and_sq_kernel``        one program: norms (fixed-order sum of the partials), sq.
  3. ``_normalised_sum_kernel``      one program per (block of C² entries, split of the chunk):
                                     Σ_i G_i / n_i over the split, read from the scratch.
  then ``_common.sum_rows``           S = Σ over every split of every chunk, in order (and sq
                                     over the chunks); skipped where there is one.
backward, per chunk of the batch (the whole batch when the forward's Grams are given)
  1. ``_gram_tiles_kernel``          (only without the forward's Grams) the chunk's Grams.
  2. ``_cotangent_partials_kernel``  one program per (sample, upper tile): <A, G_i> partials.
  3. ``_sample_coefficients_kernel`` per-sample κ_i and the scales of W_i.
  4. ``_form_w_kernel``              W_i (scaled) from G_i and A in float32, rounded once to
                                     feats' dtype into the W buffer, its mirror too.
  5. ``_apply_w_kernel``             grad F_i = W_i F_i, one program per (sample, row block,
                                     column block).

Numerics: every product runs in tl.dot with float32 accumulation; 16-bit inputs are read as they
are. float32 dots follow torch.get_float32_matmul_precision() ("highest" -> IEEE, else tf32). W_i
is formed in float32 (so A - κ_i g_i cancels without 16-bit rounding), divided by a per-sample
σ_i >= max|W_i n_i| so that it fits float16's range, and rounded once to feats' dtype: the
apply pass multiplies 16-bit operands (tensor cores) and applies the scale σ_i / n_i to the
float32 accumulator. No atomics: every sum has a fixed order, so two calls give bitwise-equal
results, and a backward that recomputes the Grams gets the bits the forward stored. No host
synchronisation: all per-sample scalars stay on the device.

Memory: forward one float32 (chunk, C, C) Gram scratch, 4·chunk·C² <= MAX_SCRATCH_BYTES (see
batch_chunk), kept for the backward when chunk = B; backward the W buffer, chunk·C² elements
of feats' dtype, and without the forward's Grams a float32 Gram scratch of the chunk.

Traffic and time at B = 1024, C = 512, P = 784 in bfloat16 (BLOCK = 128, nt = 4, T = 10;
PREDICTIONS, not measured; benchmarks/RESULTS.md has the model and what it leaves out):
computed products 263 GFLOP of Grams (C²·P·(1 + 1/nt) per sample) and 421 GFLOP of W·F; HBM
bytes, every read and write counted once: forward F 0.82 GB, the fp32 Grams written 1.07 GB
and read back for S 1.07 GB (2.97 GB); backward the upper tiles read for <A, G> 0.67 GB and
for W 0.67 GB, W written 0.54 GB and read 0.54 GB, F 0.82 GB, the gradient 0.82 GB (4.06 GB):
7.03 GB in all. On an H100 (copy 3.0 TB/s, R = 798 TFLOP/s, Triton at 0.75 R assumed) the
Gram kernel and the W·F kernel are bandwidth-bound (0.63 and 0.73 ms) and the call takes
≈ 2.34 ms, 45% of R; on an H200 (4.3 TB/s) ≈ 1.85 ms, 58%. RESULTS.md evaluates the
restructure that would bring the traffic to ~3.8 GB.
Registers and shared memory (ptxas, sm_90a, Triton 3.9 and 3.6): the Gram kernel 124-126
registers and 64 KiB, the apply kernel 106 registers and 96 KiB, both two programs per SM.
"""
from __future__ import annotations

from typing import Tuple

import torch
import triton
import triton.language as tl

from ..backend import interpreter_enabled
from ._common import Launch, cdiv, next_power_of_2, on_input_device, resident_grid, sum_rows

# Budget of the float32 (chunk, C, C) Gram scratch, 4·C² bytes per sample whatever the input
# dtype. 1 GiB holds a whole B=1024, C=512 batch; larger batches run in chunks of the batch.
MAX_SCRATCH_BYTES = 1 << 30
# Resident programs per SM of the normalised sum (4 warps; PREDICTION from its registers, a
# few dozen per thread): 4 x 16 KiB of loads in flight per SM. And its grid in the interpreter.
_SUM_PROGRAMS_PER_SM = 4
_INTERPRETER_PROGRAMS = 4
# Entries of the C x C Gram a program of the normalised sum covers, and samples per load:
# 4 x 1024 float32 = 16 KiB per step.
_SUM_BLOCK = 1024
_SUM_STEP = 4
# Elements of a tile the cotangent partials load per step (per operand, G and A).
_PARTIAL_ELEMENTS = 2048
_SIGMA_FLOOR = 1e-30  # keeps σ_i > 0 when A = 0 and κ_i = 0 (W_i = 0 then)
# Largest tile edge (C of the Gram tiles, C and P of the W·F tiles). Tests lower it to cover
# several tiles on small, interpreter-sized inputs.
MAX_BLOCK = 128


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
def _sample_upper_tile(pid, NT, T, BLOCK: tl.constexpr):
    """(b, tm, tn, rows_m, rows_n) of program pid = b·T + t of a per-(sample, upper tile) grid:
    sample b, upper tile t at tile row tm, tile column tn (see _upper_tile_coords), and the
    C indices of its rows and of its columns."""
    b = pid // T
    tm, tn = _upper_tile_coords(pid % T, NT)
    rows_m = tm * BLOCK + tl.arange(0, BLOCK)
    rows_n = tn * BLOCK + tl.arange(0, BLOCK)
    return b, tm, tn, rows_m, rows_n


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
def _off_diagonal(rows_m, rows_n, BLOCK: tl.constexpr):
    """Tile-shaped mask, true when the tile of rows rows_m, columns rows_n is off the diagonal.

    (Built from block tensors: in the interpreter of Triton 3.9, a block mask combined with a
    0-d boolean comes out as int32, which tl.store rejects.)
    """
    return (rows_m // BLOCK)[:, None] != (rows_n // BLOCK)[None, :]


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
# Forward (its first pass also recomputes a chunk's Grams in the backward).
# --------------------------------------------------------------------------------------------

@triton.jit
def _gram_tiles_kernel(f_ptr, g_ptr, part_ptr, C, P, stride_b, stride_c, stride_p, NT, T,
                       BLOCK: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr):
    """Each sample's Gram into the scratch, with the squared-Frobenius partials.

    Grid (Bc·T,): program b·T + t computes tile t (row-major over the upper triangle of the
    NT x NT tile grid, T = NT(NT+1)/2) of G_b = F_b F_bᵀ, stores it and its mirror into g[b]
    (so g[b] holds the whole symmetric Gram), and writes w·‖tile‖² to part[b, t], w = 2 off
    the diagonal (the mirrored tile) and 1 on it, so Σ_t part[b, t] = ‖G_b‖²_F.

    Buffers: f (Bc, C, P) any strides, float32/float16/bfloat16; g (Bc, C, C) float32
    contiguous (every entry written); part (Bc, T) float32.
    Cost: FLOPs 2·Bc·T·BLOCK²·P ≈ Bc·C²·P·(1 + 1/NT) (half the full Gram, by symmetry); bytes
    read 2·Bc·T·BLOCK·P·elt (L2; HBM at least Bc·C·P·elt), written 4·Bc·C² + 4·Bc·T.
    """
    pid = tl.program_id(0)
    b, tm, tn, rows_m, rows_n = _sample_upper_tile(pid, NT, T, BLOCK)
    g = _gram_tile(tl.zeros((BLOCK, BLOCK), dtype=tl.float32), f_ptr + b.to(tl.int64) * stride_b,
                   rows_m, rows_n, C, P, stride_c, stride_p, BLOCK_K, PRECISION)
    tl.store(part_ptr + pid, tl.where(tm == tn, 1.0, 2.0) * tl.sum(g * g))
    in_tile = (rows_m < C)[:, None] & (rows_n < C)[None, :]
    base = g_ptr + b.to(tl.int64) * C * C
    tl.store(base + rows_m[:, None] * C + rows_n[None, :], g, mask=in_tile)
    tl.store(base + rows_n[None, :] * C + rows_m[:, None], g,
             mask=in_tile & _off_diagonal(rows_m, rows_n, BLOCK))


@triton.jit
def _norms_and_sq_kernel(part_ptr, norms_ptr, sq_ptr, B, T, eps,
                         BLOCK_B: tl.constexpr, BLOCK_T: tl.constexpr):
    """norms_b = sqrt(Σ_t part[b, t]) and sq = Σ_b (norms_b / max(norms_b, eps))².

    Grid (1,): one program walks the batch in blocks of BLOCK_B, summing in a fixed order.
    Buffers: part (B, T) float32; norms (B,) float32; sq () float32.
    Cost: bytes read 4·B·T, written 4·(B + 1); ~3·B·T FLOPs.
    """
    sq = tl.zeros((BLOCK_B,), dtype=tl.float32)
    for b0 in range(0, B, BLOCK_B):
        bs = b0 + tl.arange(0, BLOCK_B)
        in_b = bs < B
        norm = tl.sqrt_rn(_sum_partials(part_ptr, bs, in_b, T, BLOCK_B, BLOCK_T))
        tl.store(norms_ptr + bs, norm, mask=in_b)
        ratio = tl.div_rn(norm, tl.maximum(norm, eps))
        sq += tl.where(in_b, ratio * ratio, 0.0)
    tl.store(sq_ptr, tl.sum(sq, axis=0))


@triton.jit
def _normalised_sum_kernel(g_ptr, norms_ptr, spart_ptr, B, CC, SAMPLES_PER_SPLIT, eps,
                           BLOCK_E: tl.constexpr, STEP: tl.constexpr):
    """Per split of the batch, Σ_b G_b / max(norms_b, eps) on one block of the C² entries.

    Grid (cdiv(CC, BLOCK_E), SPLITS): program (e, s) walks the samples of split s
    (SAMPLES_PER_SPLIT consecutive ones; the last split may be short or empty) STEP at a
    time, in order, and writes its sum of entries [e·BLOCK_E, (e+1)·BLOCK_E) to spart[s].
    Bandwidth-bound: each step loads a (STEP, BLOCK_E) block of the Grams.

    Buffers: g (B, CC) float32 contiguous (the Grams, CC = C²); norms (B,) float32; spart
    (SPLITS, CC) float32 (every entry written).
    Cost: bytes read 4·B·CC, written 4·SPLITS·CC; 2·B·CC FLOPs.
    """
    es = tl.program_id(0) * BLOCK_E + tl.arange(0, BLOCK_E)
    split = tl.program_id(1)
    in_e = (es < CC)[None, :]
    start = split * SAMPLES_PER_SPLIT
    end = tl.minimum(start + SAMPLES_PER_SPLIT, B)
    acc = tl.zeros((BLOCK_E,), dtype=tl.float32)
    for b0 in range(start, end, STEP):
        bs = b0 + tl.arange(0, STEP)
        in_b = bs < end
        inv = 1.0 / tl.maximum(tl.load(norms_ptr + bs, mask=in_b, other=1.0), eps)
        g = tl.load(g_ptr + bs.to(tl.int64)[:, None] * CC + es[None, :],
                    mask=in_b[:, None] & in_e, other=0.0)
        acc += tl.sum(g * inv[:, None], axis=0)
    tl.store(spart_ptr + split.to(tl.int64) * CC + es, acc, mask=es < CC)


# --------------------------------------------------------------------------------------------
# Backward.
# --------------------------------------------------------------------------------------------

@triton.jit
def _cotangent_partials_kernel(g_ptr, a_ptr, part_ptr, C, NT, T,
                               BLOCK: tl.constexpr, ROWS: tl.constexpr):
    """Partials of <A, G_b>, read from the stored Grams.

    Grid (Bc·T,): program b·T + t reads upper tile t of G_b and of A, ROWS rows at a time,
    and writes w·<A tile, G tile> (w = 2 off the diagonal, 1 on it) to part[b, t], so
    Σ_t part[b, t] = <A, G_b> (A and G_b symmetric).

    Buffers: g (Bc, C, C) float32 contiguous; a (C, C) float32 contiguous, symmetric;
    part (Bc, T) float32.
    Cost: bytes read 4·Bc·T·BLOCK² ≈ 2·Bc·C²·(1 + 1/NT) of G (HBM) and as much of A (L2);
    2·Bc·T·BLOCK² FLOPs.
    """
    pid = tl.program_id(0)
    b = pid // T
    tm, tn = _upper_tile_coords(pid % T, NT)
    cols = tn * BLOCK + tl.arange(0, BLOCK)
    in_cols = (cols < C)[None, :]
    base = g_ptr + b.to(tl.int64) * C * C
    acc = tl.zeros((ROWS, BLOCK), dtype=tl.float32)
    for r in range(0, BLOCK, ROWS):
        rows = tm * BLOCK + r + tl.arange(0, ROWS)
        offs = rows[:, None] * C + cols[None, :]
        mask = (rows < C)[:, None] & in_cols
        acc += tl.load(a_ptr + offs, mask=mask, other=0.0) * tl.load(base + offs, mask=mask,
                                                                     other=0.0)
    tl.store(part_ptr + pid, tl.where(tm == tn, 1.0, 2.0) * tl.sum(acc))


@triton.jit
def _sample_coefficients_kernel(part_ptr, norms_ptr, amax_ptr, grad_sq_ptr, coef_ptr, B, T,
                                COEF_STRIDE, eps, sigma_floor,
                                BLOCK_B: tl.constexpr, BLOCK_T: tl.constexpr):
    """The per-sample scalars of W_b = (A - κ_b g_b) / n_b.

    With n = max(norms_b, eps), κ = Σ_t part[b, t] / n if norms_b >= eps else -4·grad_sq, and
    σ = max(max|A| + |κ|, sigma_floor) (a bound on |A - κ g_b| entrywise, since |g_b| <= 1):
    coef[0, b] = 1/σ, coef[1, b] = κ/(n·σ), coef[2, b] = σ/n, so that
    W_b = coef[2, b] · (coef[0, b]·A - coef[1, b]·G_b).

    Grid (cdiv(B, BLOCK_B),). Buffers: part (B, T) float32; norms (B,) float32; amax () and
    grad_sq () float32; coef (3, COEF_STRIDE) float32, COEF_STRIDE >= B.
    Cost: bytes read 4·B·(T + 1), written 12·B; O(B·T) FLOPs.
    """
    bs = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    in_b = bs < B
    dot = _sum_partials(part_ptr, bs, in_b, T, BLOCK_B, BLOCK_T)
    norm = tl.load(norms_ptr + bs, mask=in_b, other=1.0)
    n = tl.maximum(norm, eps)
    grad_sq = tl.load(grad_sq_ptr)
    kappa = tl.where(norm >= eps, dot / n, -4.0 * grad_sq)
    sigma = tl.maximum(tl.load(amax_ptr) + tl.abs(kappa), sigma_floor)
    tl.store(coef_ptr + bs, 1.0 / sigma, mask=in_b)
    tl.store(coef_ptr + COEF_STRIDE + bs, kappa / (n * sigma), mask=in_b)
    tl.store(coef_ptr + 2 * COEF_STRIDE + bs, sigma / n, mask=in_b)




@triton.jit
def _form_w_kernel(g_ptr, a_ptr, coef_ptr, w_ptr, C, NT, T, COEF_STRIDE, BLOCK: tl.constexpr):
    """The scaled W_b = coef[0, b]·A - coef[1, b]·G_b, formed in float32, stored in w's dtype.

    Grid (Bc·T,): program b·T + t reads upper tile t of G_b and of A, forms the tile in float32
    and stores it, rounded once to w's dtype (feats' dtype), and its mirror into w[b], which
    then holds the whole symmetric C x C matrix W_b. The Grams are only read: they may be the
    forward's, which autograd keeps.

    Buffers: g (Bc, C, C) float32 contiguous; a (C, C) float32; coef (3, COEF_STRIDE) float32;
    w (Bc, C, C) contiguous, feats' dtype.
    Cost: bytes read ≈ 2·Bc·C²·(1 + 1/NT) of G (HBM) and of A (L2), written Bc·C²·elt;
    ≈ 3·Bc·C²/2 FLOPs.
    """
    pid = tl.program_id(0)
    b, tm, tn, rows_m, rows_n = _sample_upper_tile(pid, NT, T, BLOCK)
    in_tile = (rows_m < C)[:, None] & (rows_n < C)[None, :]
    offs = rows_m[:, None] * C + rows_n[None, :]
    base = b.to(tl.int64) * C * C
    g = tl.load(g_ptr + base + offs, mask=in_tile, other=0.0)
    a = tl.load(a_ptr + offs, mask=in_tile, other=0.0)
    w = tl.load(coef_ptr + b) * a - tl.load(coef_ptr + COEF_STRIDE + b) * g
    w = w.to(w_ptr.dtype.element_ty)
    tl.store(w_ptr + base + offs, w, mask=in_tile)
    tl.store(w_ptr + base + rows_n[None, :] * C + rows_m[:, None], w,
             mask=in_tile & _off_diagonal(rows_m, rows_n, BLOCK))


@triton.jit
def _apply_w_kernel(w_ptr, f_ptr, coef_ptr, out_ptr, C, P, stride_b, stride_c, stride_p,
                    NM, NP, COEF_STRIDE, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_K: tl.constexpr, PRECISION: tl.constexpr):
    """out_b = coef[2, b] · (w_b F_b), the gradient of sample b.

    Grid (Bc·NM·NP,), NM = cdiv(C, BLOCK_M), NP = cdiv(P, BLOCK_N): program (b, m, p), p
    fastest, so programs sharing a row block of w_b and F_b run side by side (L2 reuse).
    w holds W_b in F's dtype (16-bit operands for 16-bit inputs), accumulated in float32.

    Buffers: w (Bc, C, C) contiguous, F's dtype (from _form_w_kernel); f (Bc, C, P) any
    strides; coef (3, COEF_STRIDE) float32; out (Bc, C, P) contiguous, F's dtype.
    Cost: FLOPs 2·Bc·C²·P; bytes read Bc·C²·elt·NP + Bc·C·P·elt·NM (L2; HBM at least
    Bc·C²·elt + Bc·C·P·elt), written Bc·C·P·elt. Per L2 byte 2·BLOCK_M·BLOCK_N /
    ((BLOCK_M + BLOCK_N)·elt) FLOPs: 64 at 128 x 128 in 16 bits (it was 43 with float32 W).
    """
    pid = tl.program_id(0)
    b = pid // (NM * NP)
    rest = pid % (NM * NP)
    rows = (rest // NP) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = (rest % NP) * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    in_rows = (rows < C)[:, None]
    in_cols = (cols < P)[None, :]
    w_base = w_ptr + b.to(tl.int64) * C * C + rows[:, None] * C
    f_base = f_ptr + b.to(tl.int64) * stride_b + cols.to(tl.int64)[None, :] * stride_p
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, C, BLOCK_K):
        in_k = (k + ks) < C
        w = tl.load(w_base + (k + ks)[None, :], mask=in_rows & in_k[None, :], other=0.0)
        f = tl.load(f_base + (k + ks).to(tl.int64)[:, None] * stride_c,
                    mask=in_k[:, None] & in_cols, other=0.0)
        acc = _dot(w, f, acc, PRECISION)
    out = (acc * tl.load(coef_ptr + 2 * COEF_STRIDE + b)).to(out_ptr.dtype.element_ty)
    out_offs = b.to(tl.int64) * C * P + rows.to(tl.int64)[:, None] * P + cols[None, :]
    tl.store(out_ptr + out_offs, out, mask=in_rows & in_cols)


# --------------------------------------------------------------------------------------------
# Launch configuration.
# --------------------------------------------------------------------------------------------

def _pow2_clamp(n: int, low: int, high: int) -> int:
    return max(low, min(high, next_power_of_2(max(int(n), 1))))


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
    if feats.dtype == torch.bfloat16 and feats.device.type == "cpu" and interpreter_enabled():
        return "upcast"
    if feats.dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest":
        return "ieee"
    return "tf32"


def _k_block(dtype: torch.dtype) -> int:
    """K tile: 32 float32 or 64 16-bit elements, i.e. 128 bytes of each row per step."""
    return 32 if dtype == torch.float32 else 64


def _aligned(C: int, strides) -> bool:
    """Whether feats' rows are unit-stride and 16-element aligned and C is a multiple of 16,
    so that Triton can prove 16-byte alignment of the F loads and of the C x C tiles (scratch,
    A, S)."""
    return strides[2] == 1 and strides[1] % 16 == 0 and C % 16 == 0


def gram_config(C: int, P: int, dtype: torch.dtype, strides, precision: str) -> Launch:
    """Tiles of the Gram passes (grid set per pass): BLOCK x BLOCK output tiles, BLOCK_K steps
    over P, the dot's PRECISION.

    BLOCK_K is the widest step that pads P by at most 3% (_least_padding: 32 at P = 784, not
    64, which pads to 832: 6% more MMA work; PREDICTION). strides: feats' strides. IEEE
    float32 dots (no tensor cores: the products are FMAs whose operands sit in registers) and
    float32 rows that are not 16-aligned take at most 16: at 32 the Gram kernels spilled on
    sm_90a (IEEE: 255 registers, 36 bytes of spill stores).
    Unaligned feats or C (see _aligned: element-wise addresses, one register each) get 64 x 64
    tiles, 32 x 32 with IEEE dots: larger, the Gram and form-W kernels spill (IEEE float32
    P=49 at 128: 255 registers and 24-44 bytes, at 64: 28 bytes on sm_90a, 4 on sm_80;
    bfloat16 channels-last C=200 at 128: 72 bytes). Tiles of 128 and unaligned tiles take 8
    warps, others 4 (with its mirrored store, the tf32 Gram kernel on unaligned 64 x 64 tiles
    spills 8 bytes on sm_80 at 4 warps).
    """
    aligned = _aligned(C, strides)
    ieee = precision == "ieee"
    block = _pow2_clamp(C, 16, MAX_BLOCK if aligned else min(MAX_BLOCK, 32 if ieee else 64))
    k_block = 16 if dtype == torch.float32 and (ieee or not aligned) else _k_block(dtype)
    block_k = _least_padding(P, 16, min(MAX_BLOCK, k_block))
    return Launch((), dict(BLOCK=block, BLOCK_K=block_k, PRECISION=precision),
                  num_warps=8 if block >= 128 or not aligned else 4, num_stages=3)




def apply_config(C: int, P: int, dtype: torch.dtype, strides, precision: str) -> Launch:
    """Tiles of the W F product (grid set by the launcher): BLOCK_M rows of C, BLOCK_N columns
    of P, BLOCK_K of C, the dot's PRECISION.

    W is in feats' dtype, so BLOCK_K is the dtype's K tile (128 bytes of each row per step).
    BLOCK_N keeps P's padding (784 to 896 at 128): at 64 it would be 832, but every program
    re-reads its BLOCK_M x C rows of W from L2, so halving BLOCK_N doubles that traffic
    (PREDICTION: at 128 x 128, 64 FLOP per L2 byte in 16 bits). Unaligned feats or C (see
    _aligned) get 64 x 64 output tiles and BLOCK_K 32: at 128 the IEEE float32 channels-last
    product spills (255 registers, 24 bytes), and the bfloat16 one takes 255 registers at
    BLOCK_K 64; IEEE dots take 8 warps as in gram_config (at 4 the channels-last product
    spills 12 bytes on sm_80).
    """
    top = MAX_BLOCK if _aligned(C, strides) else min(MAX_BLOCK, 64)
    block_m = _pow2_clamp(C, 16, top)
    block_n = _pow2_clamp(P, 16, top)
    block_k = _pow2_clamp(C, 16, min(top, _k_block(dtype) if top == MAX_BLOCK else 32))
    return Launch((), dict(BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
                           PRECISION=precision),
                  num_warps=8 if block_m * block_n >= 128 * 128 or precision == "ieee" else 4,
                  num_stages=3)


def _partials_launch(tiles: int) -> Launch:
    """Tiles of the kernels that sum the (B, T) per-tile partials (grid set by the launcher):
    BLOCK_B samples x BLOCK_T partials per step, 2048 elements over 4 warps (at 256 x 32 the
    norms kernel spills 584 bytes on sm_90a)."""
    return Launch((), dict(BLOCK_B=64, BLOCK_T=_pow2_clamp(tiles, 1, 32)), num_warps=4)


def _tile_counts(C: int, block: int) -> Tuple[int, int]:
    nt = cdiv(C, block)
    return nt, nt * (nt + 1) // 2


def _sum_splits(samples: int, C: int, device: torch.device) -> Tuple[Launch, int]:
    """(launch, splits) of the normalised sum over a chunk of `samples`: the grid is the
    C² entries in blocks of _SUM_BLOCK times as many batch splits as fill one wave of
    resident programs (_common.resident_grid, _SUM_PROGRAMS_PER_SM); every chunk of a batch
    takes the same number of splits (a short last chunk may leave some empty: they write
    zeros). PREDICTION (H200, 132 SMs, C = 512: 256 entry blocks): 2 splits, 512 programs of
    the 528 resident slots, each reading half a chunk's Grams for its block.
    """
    blocks = cdiv(C * C, _SUM_BLOCK)
    programs = resident_grid(device, _SUM_PROGRAMS_PER_SM, _INTERPRETER_PROGRAMS,
                             samples * blocks)
    splits = max(1, min(samples, programs // blocks))
    return Launch((blocks, splits), dict(BLOCK_E=_SUM_BLOCK, STEP=_SUM_STEP), num_warps=4), splits


def batch_chunk(B: int, C: int) -> int:
    """Samples per chunk of the batch (at least one): the chunk's float32 Gram scratch,
    4·C² bytes per sample for every input dtype, fits MAX_SCRATCH_BYTES."""
    return max(1, min(B, MAX_SCRATCH_BYTES // max(4 * C * C, 1)))


def keeps_grams(B: int, C: int) -> bool:
    """Whether diversity_sums_forward returns every Gram (the whole batch in one chunk) for the
    backward to reuse, rather than an empty (0, C, C) tensor."""
    return batch_chunk(B, C) >= B


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
    """(S, sq, norms, grams) of a (B, C, P) batch; see the module docstring. All float32,
    contiguous; grams is (B, C, C), every G_i, when keeps_grams(B, C), else (0, C, C).

    ``eps`` is the floor on ‖G_i‖_F (the caller's, so kernel and reference share one value).

    Matches :func:`fastobj.functional.diversity_sums_ref`. feats may have any strides.
    Cost: one symmetric Gram pass, ≈ B·C²·P·(1 + 1/nt) FLOPs; HBM traffic
    ≈ B·C·P·elt + 8·B·C² (the Grams written and read back once).
    """
    _check_feats(feats)
    B, C, P = feats.shape
    f32 = dict(dtype=torch.float32, device=feats.device)
    if B == 0 or C == 0:
        return (torch.zeros((C, C), **f32), torch.zeros((), **f32), torch.zeros((B,), **f32),
                torch.zeros((B, C, C), **f32))
    gram = gram_config(C, P, feats.dtype, feats.stride(), _dot_precision(feats))
    nt, tiles = _tile_counts(C, gram.constexprs["BLOCK"])
    partials = _partials_launch(tiles).on((1,))
    chunk = batch_chunk(B, C)
    chunks = cdiv(B, chunk)
    normalised_sum, splits = _sum_splits(chunk, C, feats.device)

    grams = torch.empty((chunk, C, C), **f32)
    part = torch.empty((chunk, tiles), **f32)
    norms = torch.empty((B,), **f32)
    sums = torch.empty((C, C), **f32)
    sq = torch.empty((), **f32)
    sq_part = sq.view(1) if chunks == 1 else torch.empty((chunks,), **f32)
    spart = sums if chunks * splits == 1 else torch.empty((chunks * splits, C, C), **f32)
    for k, b0 in enumerate(range(0, B, chunk)):
        n = min(chunk, B - b0)
        f = feats[b0:b0 + n]
        gram.on((n * tiles,))(_gram_tiles_kernel, f, grams, part, C, P, *f.stride(), nt, tiles)
        partials(_norms_and_sq_kernel, part, norms[b0:], sq_part[k:], n, tiles, eps)
        rows = spart.view(-1)[k * splits * C * C:]  # this chunk's splits
        normalised_sum(_normalised_sum_kernel, grams, norms[b0:], rows, n, C * C,
                       cdiv(n, splits), eps)
    if chunks * splits > 1:
        sum_rows(spart.view(1, chunks * splits, C * C), sums)
    if chunks > 1:
        sum_rows(sq_part.view(1, chunks, 1), sq)
    return sums, sq, norms, grams if chunks == 1 else grams[:0]


@on_input_device
def diversity_sums_backward(feats: torch.Tensor, norms: torch.Tensor, grams: torch.Tensor,
                            grad_S: torch.Tensor, grad_sq: torch.Tensor, eps: float
                            ) -> torch.Tensor:
    """Vector-Jacobian product of (S, sq) w.r.t. feats for cotangents (grad_S, grad_sq).

    feats (B, C, P) any strides; norms (B,) and grams as returned by the forward (grams
    (B, C, C) is read, not recomputed; (0, C, C) has the backward recompute them chunk by
    chunk); grad_S (C, C), any (not necessarily symmetric); grad_sq 0-dim. Returns a contiguous
    (B, C, P) tensor in feats' dtype. Cost: the W·F product, 2·B·C²·P FLOPs, plus
    B·C²·P·(1 + 1/nt) without the forward's Grams; HBM ≈ 4·B·C²·(1 + 1/nt) (G read twice,
    upper tiles) + 2·B·C²·elt (W) + 3·B·C·P·elt bytes. Memory: the W buffer, min(B, chunk)·C²
    elements of feats' dtype, and without the forward's Grams a float32 (chunk, C, C) scratch
    (see batch_chunk).
    """
    _check_feats(feats)
    B, C, P = feats.shape
    if grams.shape not in ((B, C, C), (0, C, C)) or grams.dtype != torch.float32:
        raise ValueError(f"grams must be float32 of shape {(B, C, C)} or {(0, C, C)} "
                         f"(diversity_sums_forward's), got {grams.dtype} {tuple(grams.shape)}")
    grad = torch.empty((B, C, P), dtype=feats.dtype, device=feats.device)
    if grad.numel() == 0:
        return grad
    f32 = dict(dtype=torch.float32, device=feats.device)
    grad_S = grad_S.to(torch.float32)
    a_sym = (grad_S + grad_S.mT).contiguous()  # A = Γ + Γᵀ
    a_max = a_sym.abs().amax()
    grad_sq = grad_sq.to(torch.float32).reshape(())
    norms = norms.to(torch.float32).contiguous()
    precision = _dot_precision(feats)

    gram = gram_config(C, P, feats.dtype, feats.stride(), precision)
    block = gram.constexprs["BLOCK"]
    nt, tiles = _tile_counts(C, block)
    rows = max(1, min(block, _PARTIAL_ELEMENTS // block))
    cotangent = Launch((), dict(BLOCK=block, ROWS=rows), num_warps=4)
    coefficients = _partials_launch(tiles)
    form_w = Launch((), dict(BLOCK=block), num_warps=gram.num_warps)
    apply = apply_config(C, P, feats.dtype, feats.stride(), precision)
    nm = cdiv(C, apply.constexprs["BLOCK_M"])
    npb = cdiv(P, apply.constexprs["BLOCK_N"])

    kept = grams.shape[0] == B
    chunk = B if kept else batch_chunk(B, C)
    g_buf = grams.contiguous() if kept else torch.empty((chunk, C, C), **f32)
    w_buf = torch.empty((chunk, C, C), dtype=feats.dtype, device=feats.device)
    part = torch.empty((chunk, tiles), **f32)
    coef = torch.empty((3, chunk), **f32)
    for b0 in range(0, B, chunk):
        n = min(chunk, B - b0)
        f = feats[b0:b0 + n]
        if not kept:  # the chunk's Grams (their norm partials are overwritten below)
            gram.on((n * tiles,))(_gram_tiles_kernel, f, g_buf, part, C, P, *f.stride(), nt,
                                  tiles)
        cotangent.on((n * tiles,))(_cotangent_partials_kernel, g_buf, a_sym, part, C, nt, tiles)
        coefficients.on((cdiv(n, coefficients.constexprs["BLOCK_B"]),))(
            _sample_coefficients_kernel, part, norms[b0:b0 + n], a_max, grad_sq, coef, n,
            tiles, chunk, eps, _SIGMA_FLOOR)
        form_w.on((n * tiles,))(_form_w_kernel, g_buf, a_sym, coef, w_buf, C, nt, tiles, chunk)
        apply.on((n * nm * npb,))(_apply_w_kernel, w_buf, f, coef, grad[b0:b0 + n], C, P,
                                  *f.stride(), nm, npb, chunk)
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
    adds (recomputing the Grams in the backward) or saves (Gram symmetry) is not counted, so a
    rate from this model is useful FLOP/s. Compute-bound: judge it against the matmul rate.
    """
    if mode not in ("fwd", "fwd+bwd"):
        raise ValueError(f"diversity cost: mode must be 'fwd' or 'fwd+bwd', got {mode!r}")
    batch, channels = shape[0], shape[1]
    elements = torch.Size(shape).numel()
    positions = torch.Size(shape[2:]).numel()
    backward = mode == "fwd+bwd"
    flops = 2 * batch * channels * channels * positions * (2 if backward else 1)
    return elements * dtype.itemsize * (3 if backward else 1), flops
