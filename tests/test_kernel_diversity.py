"""Tier 2 and 4 tests (docs/testing.md) of the Diversity kernels (fastobj.kernels.diversity).

On a machine without CUDA, conftest.py sets TRITON_INTERPRET=1 and the kernels run in Triton's
interpreter on CPU tensors (forced with use_backend("triton")); the `gpu` class runs the same
checks on CUDA tensors where a GPU is present. The oracle is
fastobj.functional.diversity_sums_ref evaluated in float64 on the same input values.

Tolerances, relative to the largest magnitude of the expected tensor:
* float32 under torch.set_float32_matmul_precision("highest") (IEEE dots): 1e-5. The kernels
  accumulate in float32 over P and over the batch; rounding stays near 1e-6 at these sizes.
* float32 with tf32 dots (GPU only): 5e-3, tf32 keeps 10 bits of mantissa.
* float16 / bfloat16: 1e-2. Products are exact and accumulate in float32, but the stored Gram
  tiles (bfloat16 for both), W_i (backward) and the gradient are rounded to 16 bits (bfloat16
  keeps 8 bits: 2⁻⁸ ≈ 4e-3 per rounding to nearest; Triton's interpreter truncates its float32
  to bfloat16 conversions, 2⁻⁷ ≈ 8e-3, which the bound on S, u·max|S|, still keeps inside 1e-2:
  see kernels/diversity.py). The norms are those of the stored bfloat16 Grams, within 2⁻⁸
  (interpreter 2⁻⁷) of the exact ones.

The interpreter is slow, so sizes are small; MAX_BLOCK is lowered to 16 in the cases that must
cover several tiles (upper-triangle enumeration, mirrored tiles read transposed, off-diagonal
weights).
"""
import pytest
import torch

from fastobj import functional as fn
from fastobj.backend import use_backend
from fastobj.functional import diversity_sums_ref

# The kernel tier needs the optional triton extra; a kernel module that does not import fails.
pytest.importorskip("triton")
from fastobj.kernels import diversity as kd  # noqa: E402
from fastobj.kernels._common import SM_COUNT_ENV  # noqa: E402

EPS = fn.GRAM_NORM_EPS

TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}
ODD_SHAPES = [(3, 5, 7), (3, 19, 37), (2, 33, 20)]


@pytest.fixture(autouse=True)
def _highest_precision():
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(previous)


@pytest.fixture
def small_tiles(monkeypatch):
    """16 x 16 tiles, so C = 33 spans three tile rows (six upper tiles) on small inputs."""
    monkeypatch.setattr(kd, "MAX_BLOCK", 16)


def assert_close(actual, expected, rtol, what=""):
    """|actual - expected| <= rtol * max|expected| everywhere, and no NaN or inf."""
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    expected = expected.to(torch.float64)
    scale = expected.abs().max().clamp_min(1e-30)
    err = (actual.to(torch.float64) - expected).abs().max()
    assert err <= rtol * scale, f"{what}: max error {err:.3e} > {rtol:.0e} * {scale:.3e}"


def reference_sums(feats):
    """(S, sq, norms) of the reference in float64 on feats' values."""
    return diversity_sums_ref(feats.detach().to(torch.float64))


def reference_vjp(feats, grad_S, grad_sq):
    """d/dfeats of <grad_S, S> + grad_sq * sq for the float64 reference."""
    f = feats.detach().to(torch.float64).requires_grad_()
    sums, sq, _ = diversity_sums_ref(f)
    loss = (sums * grad_S.to(torch.float64)).sum() + sq * grad_sq.to(torch.float64)
    (grad,) = torch.autograd.grad(loss, f)
    return grad


def cotangents(C, device):
    grad_S = torch.randn(C, C, device=device)  # not symmetric
    grad_sq = torch.tensor(0.7, device=device)
    return grad_S, grad_sq


def unpack(grams, C):
    """The (B, C, C) Grams from the packed (B, T, SB, SB) upper tiles (row-major over the upper
    triangle), each off-diagonal tile also placed at its mirror."""
    B, T, SB, _ = grams.shape
    nt = -(-C // SB)
    full = torch.zeros((B, nt * SB, nt * SB), dtype=torch.float64, device=grams.device)
    t = 0
    for tm in range(nt):
        for tn in range(tm, nt):
            tile = grams[:, t].to(torch.float64)
            full[:, tm * SB:(tm + 1) * SB, tn * SB:(tn + 1) * SB] = tile
            full[:, tn * SB:(tn + 1) * SB, tm * SB:(tm + 1) * SB] = tile.mT
            t += 1
    assert t == T
    assert (full[:, C:] == 0).all() and (full[:, :, C:] == 0).all()  # padding stored as zeros
    return full[:, :C, :C]


def check_forward(feats, rtol):
    """The kernel's (S, sq, norms) against the reference's, and grams: every sample's packed
    upper Gram tiles in the storage dtype. Returns the forward's outputs."""
    S, sq, norms, grams = kd.diversity_sums_forward(feats, EPS)
    S_ref, sq_ref, norms_ref = reference_sums(feats)
    B, C, _ = feats.shape
    assert S.shape == (C, C) and sq.shape == () and norms.shape == (B,)
    assert grams.shape == kd.gram_storage_shape(B, C, feats.dtype)
    assert grams.dtype == kd.gram_storage_dtype(feats.dtype) and grams.is_contiguous()
    assert S.dtype == sq.dtype == norms.dtype == torch.float32
    assert S.is_contiguous() and S.device == feats.device
    assert_close(S, S_ref, rtol, "S")
    assert_close(sq, sq_ref, rtol, "sq")
    assert_close(norms, norms_ref, rtol, "norms")
    if grams.numel():
        f = feats.detach().to(torch.float64)
        assert_close(unpack(grams, C), f @ f.mT, rtol, "grams")
    return S, sq, norms, grams


def check_backward(feats, rtol, forward=None):
    """The kernel's VJP against the reference's, on the Grams and norms of the kernel's
    forward (`forward`, its outputs, or run here)."""
    grad_S, grad_sq = cotangents(feats.shape[1], feats.device)
    if forward is None:
        forward = kd.diversity_sums_forward(feats, EPS)
    grad = kd.diversity_sums_backward(feats, forward[2], forward[3], grad_S, grad_sq, EPS)
    assert grad.shape == feats.shape and grad.dtype == feats.dtype
    assert_close(grad, reference_vjp(feats, grad_S, grad_sq), rtol, "grad")
    return grad


# --------------------------------------------------------------------------------------------
# Forward and backward against the float64 reference.
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_forward_odd_sizes(shape):
    check_forward(torch.randn(shape), TOL[torch.float32])


@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_backward_odd_sizes(shape):
    check_backward(torch.randn(shape), TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_several_tiles(dtype, small_tiles):
    """C = 33 over 16 x 16 tiles: 3 tile rows, 6 upper tiles, stored once; the W·F kernel's
    row blocks 1 and 2 read the tiles left of the diagonal from their mirrors, transposed.
    B = 3 gives several batch splits in the forward's normalised sum."""
    feats = torch.randn(3, 33, 37).to(dtype)
    assert kd.gram_storage_shape(3, 33, dtype) == (3, 6, 16, 16)
    check_backward(feats, TOL[dtype], check_forward(feats, TOL[dtype]))


def test_sub_tiles_of_the_storage_tiles():
    """Channels-last float32 with IEEE dots computes 32 x 32 sub-tiles of the 64 x 64 storage
    tiles (C = 40): the diagonal tile's four sub-tiles and their norm partials, and W·F
    reading a storage tile that the Gram kernel wrote in pieces."""
    x = torch.randn(2, 40, 3, 5).to(memory_format=torch.channels_last)
    feats = x.flatten(2)
    gram = kd.gram_config(40, 15, feats.dtype, feats.stride(), "ieee", kd.MAX_BLOCK)
    assert gram.constexprs["SB"] == 64 and gram.constexprs["BLOCK"] == 32
    check_backward(feats, TOL[torch.float32], check_forward(feats, TOL[torch.float32]))


def test_single_split_mixed_scales(small_tiles, monkeypatch):
    """One batch split (the forward writes S directly) over Gram norms near 1e12, 0 (clamped
    to eps) and 1e-12 in a row."""
    monkeypatch.setattr(kd, "_INTERPRETER_PROGRAMS", 1)
    monkeypatch.delenv(SM_COUNT_ENV, raising=False)
    assert kd._sum_splits(4, 1, torch.device("cpu")) == 1
    scales = torch.tensor([1e3, 0.0, 1e-3, 1.0])[:, None, None]
    check_forward(torch.randn(4, 20, 20) * scales, TOL[torch.float32])


class _AllocationSpy:
    """Stands in for a module's ``torch``: forwards every attribute, and records the tensors
    that its factory functions return."""
    FACTORIES = ("empty", "empty_like", "empty_strided", "zeros", "zeros_like", "ones",
                 "ones_like", "full", "full_like")

    def __init__(self, module):
        self._module = module
        self.tensors = []

    def __getattr__(self, name):
        attr = getattr(self._module, name)
        if name not in self.FACTORIES:
            return attr

        def factory(*args, **kwargs):
            tensor = attr(*args, **kwargs)
            self.tensors.append(tensor)
            return tensor
        return factory


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_backward_buffers(dtype, small_tiles, monkeypatch):
    """The backward allocates no C x C buffer per sample (W is formed in registers): besides
    the gradient, only (B, T) partials. P < C, so the (B, C, P) gradient is smaller than B
    samples' C x C."""
    B, C, P = 3, 20, 12
    feats = torch.randn(B, C, P).to(dtype)
    forward = kd.diversity_sums_forward(feats, EPS)
    spy = _AllocationSpy(torch)
    monkeypatch.setattr(kd, "torch", spy)
    grad_S, grad_sq = cotangents(C, feats.device)
    grad = kd.diversity_sums_backward(feats, forward[2], forward[3], grad_S, grad_sq, EPS)
    shapes = [(tuple(t.shape), t.dtype) for t in spy.tensors]
    assert shapes == [((B, C, P), dtype), ((B, 3), torch.float32), ((B, 3), torch.float32)]
    assert grad is spy.tensors[0]


def test_launches(monkeypatch):
    """Three launches forward (Gram tiles, normalised sum, finishing sum), two backward
    (<A, G> partials, W·F): recorded, not run, on meta tensors at the headline shape."""
    launched = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            return lambda *args, **kwargs: launched.append(self.name)
    for name in [n for n in vars(kd) if n.endswith("_kernel")]:
        monkeypatch.setattr(kd, name, Recorder(name))
    feats = torch.empty((1024, 512, 784), dtype=torch.bfloat16, device="meta")
    _, _, norms, grams = kd.diversity_sums_forward(feats, EPS)
    assert launched == ["_gram_packed_kernel", "_normalised_sum_kernel", "_finish_sums_kernel"]
    kd.diversity_sums_backward(feats, norms, grams, torch.ones(512, 512, device="meta"),
                               torch.ones((), device="meta"), EPS)
    assert launched[3:] == ["_cotangent_partials_kernel", "_w_times_f_kernel"]
    assert grams.shape == (1024, 10, 128, 128) and grams.dtype == torch.bfloat16


def test_backward_rejects_other_grams():
    feats = torch.randn(2, 5, 7)
    S, sq, norms, grams = kd.diversity_sums_forward(feats, EPS)
    for bad in (grams[:1], grams.to(torch.bfloat16), torch.zeros(2, 5, 5)):
        with pytest.raises(ValueError, match="grams"):
            kd.diversity_sums_backward(feats, norms, bad, torch.randn(5, 5), sq, EPS)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16bit(dtype, small_tiles):
    feats = torch.randn(3, 20, 37).to(dtype)
    check_backward(feats, TOL[dtype], check_forward(feats, TOL[dtype]))


def test_16bit_large_activations_float16():
    """Gram norms near 1e5, so W_i ~ 1e-5 (float16 subnormal) unless scaled, as it is; Gram
    entries near 1e5 overflow float16, not the bfloat16 storage."""
    feats = (30 * torch.randn(3, 19, 37)).to(torch.float16)
    check_backward(feats, TOL[torch.float16])


# --------------------------------------------------------------------------------------------
# Layouts.
# --------------------------------------------------------------------------------------------

def test_transposed_view():
    feats = torch.randn(3, 37, 19).transpose(1, 2)  # (3, 19, 37), stride along P is 19
    assert not feats.is_contiguous()
    check_backward(feats, TOL[torch.float32], check_forward(feats, TOL[torch.float32]))


def test_sliced_view(small_tiles):
    feats = torch.randn(6, 30, 45)[::2, 3:23, 1::2]  # (3, 20, 22), every stride unusual
    assert not feats.is_contiguous()
    check_backward(feats, TOL[torch.float32], check_forward(feats, TOL[torch.float32]))


def test_channels_last_flattened():
    x = torch.randn(2, 19, 5, 7).to(memory_format=torch.channels_last)
    feats = x.flatten(2)  # a view: strides (35*19, 1, 19)
    assert feats.stride(1) == 1 and feats.data_ptr() == x.data_ptr()
    check_backward(feats, TOL[torch.float32], check_forward(feats, TOL[torch.float32]))


# --------------------------------------------------------------------------------------------
# Clamped norms, determinism, edge sizes.
# --------------------------------------------------------------------------------------------

def test_zero_sample():
    feats = torch.randn(3, 19, 37)
    feats[1] = 0.0
    forward = check_forward(feats, TOL[torch.float32])
    assert forward[2][1] == 0
    grad = check_backward(feats, TOL[torch.float32], forward)
    assert torch.isfinite(grad).all() and (grad[1] == 0).all()


def test_clamped_nonzero_sample():
    """‖G_i‖ below eps but not zero: the clamped branch, where grad_sq contributes."""
    feats = torch.randn(3, 5, 7)
    feats[2] = 1e-7 * torch.randn(5, 7)  # ‖G_2‖ ~ 1e-13 < 1e-12
    norms_ref = reference_sums(feats)[2]
    assert 0 < norms_ref[2] < fn.GRAM_NORM_EPS / 2
    check_backward(feats, TOL[torch.float32], check_forward(feats, TOL[torch.float32]))


def test_deterministic(small_tiles):
    feats = torch.randn(3, 20, 37)
    first = kd.diversity_sums_forward(feats, EPS)
    second = kd.diversity_sums_forward(feats, EPS)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    grad_S, grad_sq = cotangents(20, feats.device)
    g1 = kd.diversity_sums_backward(feats, first[2], first[3], grad_S, grad_sq, EPS)
    g2 = kd.diversity_sums_backward(feats, second[2], second[3], grad_S, grad_sq, EPS)
    assert torch.equal(g1, g2)


def test_empty_batch():
    S, sq, norms, grams = kd.diversity_sums_forward(torch.randn(0, 5, 7), EPS)
    assert S.shape == (5, 5) and (S == 0).all() and sq == 0 and norms.shape == (0,)
    assert grams.shape == (0, 1, 16, 16)
    grad = kd.diversity_sums_backward(torch.randn(0, 5, 7), norms, grams, torch.randn(5, 5),
                                      torch.tensor(1.0), EPS)
    assert grad.shape == (0, 5, 7)


def test_no_channels():
    feats = torch.randn(2, 0, 7)
    S, sq, norms, grams = kd.diversity_sums_forward(feats, EPS)
    assert S.shape == (0, 0) and sq == 0 and (norms == 0).all() and grams.shape[:2] == (2, 0)
    grad = kd.diversity_sums_backward(feats, norms, grams, torch.randn(0, 0), sq, EPS)
    assert grad.shape == (2, 0, 7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("B, C", [(1, 1), (3, 16), (2, 33), (4, 130), (5, 600)])
def test_storage_shape(B, C, dtype):
    """(B, T, SB, SB): SB = C's power of two in [16, 128], T = nt(nt+1)/2 upper tiles."""
    nt = -(-C // min(128, max(16, 1 << (C - 1).bit_length())))
    block = min(128, max(16, 1 << (C - 1).bit_length()))
    assert kd.gram_storage_shape(B, C, dtype) == (B, nt * (nt + 1) // 2, block, block)
    assert kd.gram_storage_dtype(dtype) == (torch.float32 if dtype == torch.float32
                                            else torch.bfloat16)


# --------------------------------------------------------------------------------------------
# Through fastobj.functional (custom op, autograd, torch.compile).
# --------------------------------------------------------------------------------------------

def test_diversity_backward_through_functional():
    feats = torch.randn(4, 19, 37, requires_grad=True)
    with use_backend("triton"):
        value = fn.diversity(feats)
        (1.7 * value).backward()  # upstream gradient other than 1
    f64 = feats.detach().to(torch.float64).requires_grad_()
    expected = fn.diversity_ref(f64)
    (1.7 * expected).backward()
    assert_close(value.detach(), expected.detach(), TOL[torch.float32], "value")
    assert_close(feats.grad, f64.grad, TOL[torch.float32], "grad")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_diversity_value_backward_forms_its_cotangents_from_S(small_tiles, dtype):
    """The eager Diversity backward (kernels read S and the value's upstream gradient u, A =
    -4u/B·S) against float64 autograd of the reference value: several tiles with mirrored
    reads, an all-zero sample (κ = -4γ there), u other than 1 and in feats' dtype."""
    feats = torch.randn(4, 33, 21).to(dtype)
    feats[2] = 0
    feats.requires_grad_()
    upstream = torch.tensor(-1.3, dtype=dtype)
    with use_backend("triton"):
        value = fn.diversity(feats)
        (grad,) = torch.autograd.grad(value, feats, upstream)
    f64 = feats.detach().to(torch.float64).requires_grad_()
    expected = fn.diversity_ref(f64)
    (expected_grad,) = torch.autograd.grad(expected, f64, upstream.to(torch.float64))
    assert value.dtype == dtype and grad.dtype == dtype
    assert_close(value.detach(), expected.detach(), TOL[dtype], "value")
    assert_close(grad, expected_grad, TOL[dtype], "grad")
    assert torch.equal(grad[2], torch.zeros_like(grad[2]))


def test_diversity_value_backward_checks_sums():
    feats = torch.randn(2, 5, 7)
    with use_backend("triton"):
        _, _, norms, grams = kd.diversity_sums_forward(feats, EPS)
        with pytest.raises(ValueError, match="sums must be the forward's contiguous float32 S"):
            kd.diversity_value_backward(feats, norms, grams, torch.ones(5, 5).mT[:, :4],
                                        torch.tensor(1.0), EPS)


def test_diversity_sums_backward_through_functional(small_tiles):
    feats = torch.randn(3, 20, 20, requires_grad=True)
    grad_S, grad_sq = cotangents(20, feats.device)
    with use_backend("triton"):
        sums, sq = fn.diversity_sums(feats)
        torch.autograd.backward([sums, sq], [grad_S, grad_sq])
    assert_close(feats.grad, reference_vjp(feats, grad_S, grad_sq), TOL[torch.float32], "grad")


def test_autograd_hands_the_forwards_grams_to_the_backward(small_tiles, monkeypatch):
    """Through the eager path the backward reads the memory of the forward's packed Grams."""
    B, C = 3, 20
    seen = {}
    forward, backward = kd.diversity_sums_forward, kd.diversity_sums_backward

    def forward_spy(*args):
        out = forward(*args)
        seen["forward"] = out[3]
        return out

    def backward_spy(feats, norms, grams, *rest):
        seen["backward"] = grams
        return backward(feats, norms, grams, *rest)
    monkeypatch.setattr(kd, "diversity_sums_forward", forward_spy)
    monkeypatch.setattr(kd, "diversity_sums_backward", backward_spy)
    feats = torch.randn(B, C, 17, requires_grad=True)
    grad_S, grad_sq = cotangents(C, feats.device)
    with use_backend("triton"):
        sums, sq = fn.diversity_sums(feats)
        torch.autograd.backward([sums, sq], [grad_S, grad_sq])
    assert seen["backward"].data_ptr() == seen["forward"].data_ptr()  # not a copy
    assert_close(feats.grad, reference_vjp(feats, grad_S, grad_sq), TOL[torch.float32], "grad")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed"])
@pytest.mark.parametrize("B, C", [(3, 5), (2, 33), (1, 130)])
def test_fake_matches_the_kernel(B, C, layout, dtype):
    """The op's fake implementation gives the kernel's output shapes, dtypes and strides,
    whatever feats' layout (the packed tiles depend on (B, C) only); the real outputs are
    checked on a small case of each layout and dtype, the fake on every one."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    x = torch.randn(B, C, 3, 4)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    feats = (x.transpose(2, 3) if layout == "transposed" else x).flatten(2).to(dtype)
    with FakeTensorMode() as mode:
        fake = torch.ops.fastobj.diversity_sums(mode.from_tensor(feats))
    expected = [((C, C), torch.float32), ((), torch.float32), ((B,), torch.float32),
                (kd.gram_storage_shape(B, C, dtype), kd.gram_storage_dtype(dtype))]
    assert [(tuple(t.shape), t.dtype) for t in fake] == expected
    if C < 100:
        real = torch.ops.fastobj.diversity_sums(feats)
        assert [(t.shape, t.dtype, t.stride()) for t in real] == \
            [(t.shape, t.dtype, t.stride()) for t in fake]


def test_torch_compile_fullgraph():
    """The custom op is opaque to Dynamo: the graph holds it whole, and it runs the kernels.
    aot_eager keeps this quick; the inductor variant is marked slow."""
    _check_compiled(torch.compile(fn.diversity, fullgraph=True, backend="aot_eager"),
                    torch.randn(3, 19, 37, requires_grad=True))


@pytest.mark.slow
def test_torch_compile_fullgraph_inductor(monkeypatch, tmp_path):
    # Inductor's on-disk FX cache is not keyed on a custom op's fake function: a graph cached
    # by an older version of the op (other outputs) would be replayed. Compile afresh.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    torch._dynamo.reset()
    _check_compiled(torch.compile(fn.diversity, fullgraph=True),
                    torch.randn(3, 19, 37, requires_grad=True))


def _check_compiled(compiled, feats, scale=2.5):
    """Value and gradient of scale * compiled(feats) (Triton backend) against the float64
    reference, to float32 tolerance."""
    with use_backend("triton"):
        value = compiled(feats)
        (scale * value).backward()
    f64 = feats.detach().to(torch.float64).requires_grad_()
    expected = fn.diversity_ref(f64)
    (scale * expected).backward()
    assert_close(value.detach(), expected.detach(), TOL[torch.float32], "value")
    assert_close(feats.grad, f64.grad, TOL[torch.float32], "grad")


# --------------------------------------------------------------------------------------------
# Tier 4: the same checks on CUDA tensors (skipped by conftest where no GPU is present).
# --------------------------------------------------------------------------------------------

@pytest.mark.gpu
class TestOnGPU:
    SHAPES = ODD_SHAPES + [(6, 200, 49), (4, 130, 784)]  # several full-size tiles

    @pytest.mark.parametrize("shape", SHAPES)
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
    def test_forward_backward(self, shape, dtype):
        feats = torch.randn(shape, device="cuda").to(dtype)
        check_backward(feats, TOL[dtype], check_forward(feats, TOL[dtype]))

    def test_tf32(self):
        torch.set_float32_matmul_precision("high")  # restored by the autouse fixture
        feats = torch.randn(4, 130, 784, device="cuda")
        check_backward(feats, 5e-3, check_forward(feats, 5e-3))

    def test_layouts(self):
        check_backward(torch.randn(3, 37, 19, device="cuda").transpose(1, 2), 1e-5)
        check_backward(torch.randn(6, 40, 45, device="cuda")[::2, 3:36, 1::2], 1e-5)
        x = torch.randn(2, 64, 7, 7, device="cuda").to(memory_format=torch.channels_last)
        check_backward(x.flatten(2), 1e-5)

    def test_zero_sample_and_determinism(self):
        feats = torch.randn(5, 200, 49, device="cuda")
        feats[2] = 0.0
        first = check_forward(feats, 1e-5)
        assert first[2][2] == 0
        for a, b in zip(first, kd.diversity_sums_forward(feats, EPS)):
            assert torch.equal(a, b)
        grad_S, grad_sq = cotangents(200, "cuda")
        g1 = kd.diversity_sums_backward(feats, first[2], first[3], grad_S, grad_sq, EPS)
        g2 = kd.diversity_sums_backward(feats, first[2], first[3][:0], grad_S, grad_sq, EPS)
        assert torch.isfinite(g1).all() and torch.equal(g1, g2)
        assert_close(g1, reference_vjp(feats, grad_S, grad_sq), 1e-5, "grad")

    def test_functional_and_compile(self):
        feats = torch.randn(6, 130, 49, device="cuda", requires_grad=True)
        _check_compiled(torch.compile(fn.diversity, fullgraph=True), feats, scale=1.7)
