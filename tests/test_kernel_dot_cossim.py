"""Triton dot·cosine kernels (Direction family) against the float64 reference (tiers 2 and 4
of docs/testing.md).

On CPU the kernels run in Triton's interpreter (conftest sets TRITON_INTERPRET=1 when there is
no CUDA) under a forced ``triton`` backend; the ``gpu`` class repeats the equivalence on CUDA
tensors. Values and gradients go through the public ``fastobj.functional.dot_cossim`` and
autograd; the oracle is autograd of ``dot_cossim_ref`` in float64, with a random upstream
gradient, for acts and (when it requires grad) vec.

Tolerances, relative to the largest magnitude of the compared tensor (single entries can be
near zero after cancellation in Σ_c v·a). float32: the kernel sums over C in float32 in another
order and raises the clamped cosine with exp2/log2: a few 2^-24 relative per operation, so
1e-5. 16-bit: inputs (and the upstream gradient) are the same 16-bit numbers in both
computations and the kernel accumulates in float32; the difference is the final rounding to
16 bits, 2^-8 relative for bfloat16 (2^-11 for float16), so 1e-2 (resp. 2e-3).
"""
import itertools

import pytest
import torch

from fastobj import functional as Fn
from fastobj.backend import backend_for, use_backend

# The kernel tier needs the optional triton extra; a kernel module that does not import fails.
pytest.importorskip("triton")
from fastobj.kernels import dot_cossim as kc  # noqa: E402

TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
EPS = Fn.COSSIM_EPS
B, C, P = 3, 37, 29  # odd sizes, not powers of two


@pytest.fixture
def kernel_calls(count_kernel_calls):
    """Calls that reach the Triton launchers (see conftest.count_kernel_calls)."""
    return count_kernel_calls("fastobj.kernels.dot_cossim", "dot_cossim_forward",
                              "dot_cossim_backward")


def _assert_close(actual, expected, tol):
    assert actual.shape == expected.shape
    assert torch.isfinite(actual).all(), "NaN or inf in the kernel's result"
    scale = float(expected.detach().abs().max()) if expected.numel() else 1.0
    torch.testing.assert_close(actual.double(), expected, rtol=tol, atol=tol * scale)


def _identity(v):
    return v


def _triton_run(acts, vec, cossim_pow, angled, g, vec_grad, make_vec=_identity):
    """Values and gradients through the public function with the Triton backend forced.

    acts and vec keep their strides (detach does); the direction passed is make_vec(vec)
    (a view such as an expand), and its gradient is taken w.r.t. vec, as autograd routes it.
    """
    acts = acts.detach().requires_grad_()
    vec = vec.detach().requires_grad_(vec_grad)
    with use_backend("triton"):
        direction = make_vec(vec)
        assert backend_for(acts, direction) == "triton"
        out = Fn.dot_cossim(acts, direction, cossim_pow, EPS, angled)
        grads = torch.autograd.grad(out, (acts, vec) if vec_grad else (acts,), g)
    return out, grads


def _reference_run(acts, vec, cossim_pow, angled, g, vec_grad, make_vec=_identity):
    acts = acts.detach().double().requires_grad_()
    vec = vec.detach().double().requires_grad_(vec_grad)
    out = Fn.dot_cossim_ref(acts, make_vec(vec), cossim_pow, EPS, angled)
    return out, torch.autograd.grad(out, (acts, vec) if vec_grad else (acts,), g.double())


def check_against_reference(acts, vec, cossim_pow, angled, vec_grad=True, make_vec=_identity):
    g = torch.randn(acts.shape[0], acts.shape[2], dtype=torch.float64,
                    device=acts.device).to(acts.dtype)
    out, grads = _triton_run(acts, vec, cossim_pow, angled, g, vec_grad, make_vec)
    ref_out, ref_grads = _reference_run(acts, vec, cossim_pow, angled, g, vec_grad, make_vec)
    tol = TOLERANCE[acts.dtype]
    assert out.dtype == acts.dtype and out.shape == (acts.shape[0], acts.shape[2])
    _assert_close(out, ref_out, tol)
    assert grads[0].dtype == acts.dtype
    _assert_close(grads[0], ref_grads[0], tol)
    if vec_grad:
        assert grads[1].dtype == vec.dtype
        _assert_close(grads[1], ref_grads[1], tol)
    return out, grads


VEC_SHAPES = {"shared": (1, C, 1), "per_sample": (B, C, 1), "tensor": (1, C, P),
              "tensor_per_sample": (B, C, P)}
MODES = [(angled, p) for angled, p in itertools.product([False, True], [0.0, 2.5, 4.0])]


@pytest.mark.parametrize("angled,cossim_pow", MODES)
@pytest.mark.parametrize("vec_kind", sorted(VEC_SHAPES))
def test_matches_reference_float32(vec_kind, angled, cossim_pow, kernel_calls):
    acts = torch.randn(B, C, P)
    vec = torch.randn(VEC_SHAPES[vec_kind])
    check_against_reference(acts, vec, cossim_pow, angled)
    assert kernel_calls == {"forward": 1, "backward": 1}


def _channels_last_acts(b=B, c=C, h=5, w=7):
    """(B, C, H·W) activations flattened from a channels-last 4-D tensor: C has stride 1."""
    a4 = torch.randn(b, c, h, w).to(memory_format=torch.channels_last)
    acts = a4.flatten(2)
    assert acts.stride(1) == 1
    return acts


ACTS_LAYOUTS = {
    "channels_last": _channels_last_acts,
    "transposed": lambda: torch.randn(B, P, C).transpose(1, 2),
    "batch_slice": lambda: torch.randn(6, C, P)[1:4],
    "position_step": lambda: torch.randn(B, C, 2 * P)[:, :, ::2],
    "channel_slice": lambda: torch.randn(B, C + 6, P)[:, 3:-3],
}


@pytest.mark.parametrize("vec_kind", ["shared", "tensor_per_sample"])
@pytest.mark.parametrize("layout", sorted(ACTS_LAYOUTS))
def test_noncontiguous_activations(layout, vec_kind, kernel_calls):
    acts = ACTS_LAYOUTS[layout]()
    b, c, p = acts.shape
    shape = {"shared": (1, c, 1), "tensor_per_sample": (b, c, p)}[vec_kind]
    check_against_reference(acts, torch.randn(shape), 2.5, False)
    check_against_reference(acts, torch.randn(shape), 4.0, True)
    assert kernel_calls == {"forward": 2, "backward": 2}


def test_noncontiguous_direction():
    """A direction with arbitrary strides: a transposed (1, C, P) and a sliced (B, C, 1)."""
    acts = torch.randn(B, C, P)
    check_against_reference(acts, torch.randn(1, P, C).transpose(1, 2), 2.5, False)
    check_against_reference(acts, torch.randn(B, 2 * C, 1)[:, ::2], 2.5, False)


@pytest.mark.parametrize("angled", [False, True])
def test_expanded_direction(angled):
    """vec = leaf.expand(B, C, 1): stride 0 along the batch; the gradient reaches the leaf."""
    acts = torch.randn(B, C, P)
    check_against_reference(acts, torch.randn(1, C, 1), 2.5, angled,
                            make_vec=lambda v: v.expand(B, C, 1))


@pytest.mark.parametrize("vec_kind", ["shared", "tensor"])
def test_direction_without_grad(vec_kind, kernel_calls):
    acts = torch.randn(B, C, P)
    check_against_reference(acts, torch.randn(VEC_SHAPES[vec_kind]), 2.5, False,
                            vec_grad=False)
    assert kernel_calls == {"forward": 1, "backward": 1}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("vec_kind,angled,cossim_pow",
                         [("shared", False, 2.5), ("tensor_per_sample", True, 4.0),
                          ("per_sample", False, 0.0)])
def test_matches_reference_16bit(vec_kind, angled, cossim_pow, dtype):
    acts = torch.randn(B, C, P, dtype=dtype)
    vec = torch.randn(VEC_SHAPES[vec_kind], dtype=dtype)
    check_against_reference(acts, vec, cossim_pow, angled)


def test_16bit_channels_last():
    acts = _channels_last_acts().to(torch.bfloat16)
    check_against_reference(acts, torch.randn(1, C, 1, dtype=torch.bfloat16), 2.5, False)


def test_zero_activation_positions():
    """Positions whose activations are all zero: ‖a‖ = 0, cos = 0 (below the clamp)."""
    acts = torch.randn(B, C, P)
    acts[:, :, ::4] = 0
    for angled in (False, True):
        check_against_reference(acts, torch.randn(1, C, 1), 2.5, angled)


def test_looping_backward(monkeypatch):
    """C too large for the register-resident tile: chunked two-pass backward, several chunks."""
    monkeypatch.setattr(kc, "_RESIDENT_TILE", 0)
    from fastobj.kernels import _common
    monkeypatch.setattr(_common, "TILE_BYTES", 2048)  # 512 elements, BLOCK_C = 16: 3 chunks
    acts = torch.randn(B, C, P)
    check_against_reference(acts, torch.randn(1, C, 1), 2.5, False)
    check_against_reference(acts, torch.randn(1, C, P), 4.0, True)
    check_against_reference(_channels_last_acts(c=2 * C), torch.randn(B, 2 * C, 35), 2.5, False)


@pytest.mark.parametrize("positions,unit", [(12, 4), (14, 2), (40, 8)])
def test_positions_and_channel_strides_passed_in_units(positions, unit):
    """P a multiple of 2, 4 or 8 (not 16): P and the channel strides reach the kernels divided
    by ALIGN, and the kernels multiply them back."""
    acts = torch.randn(B, C, positions)
    assert kc._alignment(kc._described(acts), [acts.stride(1)]) == unit
    check_against_reference(acts, torch.randn(B, C, positions), 4.0, True)
    check_against_reference(acts, torch.randn(1, C, 1), 2.5, False)


def test_64bit_in_tile_offsets(monkeypatch):
    """The WIDE (int64 in-tile offsets) variants, forced by lowering the int32 threshold."""
    from fastobj.kernels import _common
    monkeypatch.setattr(_common, "INT32_LIMIT", 1)
    acts = torch.randn(B, C, P)
    check_against_reference(acts, torch.randn(1, C, 1), 2.5, False)
    check_against_reference(acts, torch.randn(B, C, P), 4.0, True)


def test_deterministic_repeats():
    acts = torch.randn(4, C, P)
    vec = torch.randn(1, C, 1)
    g = torch.randn(4, P)
    first = _triton_run(acts, vec, 2.5, False, g, True)
    second = _triton_run(acts, vec, 2.5, False, g, True)
    assert torch.equal(first[0], second[0])
    assert all(torch.equal(x, y) for x, y in zip(first[1], second[1]))


def test_gradient_layouts_follow_empty_like():
    """The op's fake promises empty_like for both gradients."""
    acts = _channels_last_acts()
    vec = torch.randn(1, 40, C).transpose(1, 2)[:, :, :35]
    grad = torch.randn(B, 35)
    grad_acts, grad_vec = kc.dot_cossim_backward(acts, vec, grad, 2.5, EPS, False, True)
    assert grad_acts.stride() == torch.empty_like(acts).stride()
    assert grad_vec.shape == vec.shape and grad_vec.dtype == vec.dtype


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()

    def step(acts, vec):
        return Fn.dot_cossim(acts, vec, 2.5, EPS, False).sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    acts = torch.randn(2, 7, 5, requires_grad=True)
    vec = torch.randn(1, 7, 1, requires_grad=True)
    with use_backend(backend):
        value = compiled(acts, vec)
        grads = torch.autograd.grad(value, (acts, vec))
    acts64 = acts.detach().double().requires_grad_()
    vec64 = vec.detach().double().requires_grad_()
    ref = Fn.dot_cossim_ref(acts64, vec64, 2.5, EPS, False).sum()
    ref_grads = torch.autograd.grad(ref, (acts64, vec64))
    _assert_close(value, ref, 1e-5)
    for got, want in zip(grads, ref_grads):
        _assert_close(got, want, 1e-5)


@pytest.mark.gpu
class TestOnGPU:
    """The same equivalence on CUDA tensors (skipped, with a reason, without a GPU)."""

    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
    @pytest.mark.parametrize("angled,cossim_pow", MODES)
    @pytest.mark.parametrize("vec_kind", sorted(VEC_SHAPES))
    def test_matches_reference(self, vec_kind, angled, cossim_pow, dtype):
        acts = torch.randn(B, C, P, device="cuda", dtype=dtype)
        vec = torch.randn(VEC_SHAPES[vec_kind], device="cuda", dtype=dtype)
        check_against_reference(acts, vec, cossim_pow, angled)

    @pytest.mark.parametrize("channels", [508, 2048])  # resident and looping backward
    @pytest.mark.parametrize("channels_last", [False, True])
    def test_layer_sized(self, channels, channels_last):
        a4 = torch.randn(16, channels, 14, 14, device="cuda")
        if channels_last:
            a4 = a4.to(memory_format=torch.channels_last)
        acts = a4.flatten(2)
        vec = torch.randn(1, channels, 1, device="cuda")
        check_against_reference(acts, vec, 2.5, False)
        check_against_reference(acts, torch.randn_like(acts), 4.0, True)

    def test_deterministic_repeats(self):
        acts = torch.randn(32, 512, 196, device="cuda", dtype=torch.bfloat16)
        vec = torch.randn(1, 512, 1, device="cuda", dtype=torch.bfloat16)
        g = torch.randn(32, 196, device="cuda", dtype=torch.bfloat16)
        first = _triton_run(acts, vec, 2.5, False, g, True)
        second = _triton_run(acts, vec, 2.5, False, g, True)
        assert torch.equal(first[0], second[0])
        assert all(torch.equal(x, y) for x, y in zip(first[1], second[1]))
