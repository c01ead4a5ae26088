"""Triton total-variation kernels against the float64 reference (tiers 2 and 4 of
docs/testing.md).

On CPU the kernels run in Triton's interpreter (conftest sets TRITON_INTERPRET=1 when there is
no CUDA) under a forced ``triton`` backend; the ``gpu`` class repeats the equivalence on CUDA
tensors. The values go through the public ``fastobj.functional.total_variation`` and autograd,
the oracle is autograd of ``total_variation_ref`` evaluated in float64, with a random upstream
gradient.

Tolerances. float32: the kernel sums |differences| in float32 in another order than the
float64 reference: ~sqrt(n)·2^-24 relative, so rtol 1e-5. The gradient is g·k with an integer
k in [-4, 4] computed from exact sign comparisons: it matches to float32 rounding. 16-bit: the
inputs (and g) are the same 16-bit numbers in both computations, the kernel accumulates in
float32, and only the final rounding to the 16-bit result differs: one ulp, 2^-8 relative for
bfloat16 (2^-11 for float16), so rtol 1e-2 (resp. 2e-3).
"""
import pytest
import torch

from fastobj import functional as Fn
from fastobj.backend import backend_for, use_backend

# The kernel tier needs the optional triton extra; a kernel module that does not import fails.
pytest.importorskip("triton")
from fastobj.kernels import total_variation as kt  # noqa: E402

TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}


@pytest.fixture
def kernel_calls(count_kernel_calls):
    """Calls that reach the Triton launchers (see conftest.count_kernel_calls)."""
    return count_kernel_calls("fastobj.kernels.total_variation", "total_variation_forward",
                              "total_variation_backward")


def _triton_value_and_grad(x: torch.Tensor, g: torch.Tensor):
    x = x.detach().requires_grad_()  # keeps x's strides
    with use_backend("triton"):
        assert backend_for(x) == "triton"
        value = Fn.total_variation(x)
        (grad,) = torch.autograd.grad(value, x, g)
    return value, grad


def _reference_value_and_grad(x: torch.Tensor, g: torch.Tensor):
    x64 = x.detach().double().requires_grad_()
    value = Fn.total_variation_ref(x64)
    (grad,) = torch.autograd.grad(value, x64, g.double())
    return value, grad


def check_against_reference(x: torch.Tensor):
    # upstream gradient other than 1, on x's device
    g = torch.randn((), dtype=torch.float64, device=x.device).to(x.dtype)
    value, grad = _triton_value_and_grad(x, g)
    ref_value, ref_grad = _reference_value_and_grad(x, g)
    tol = TOLERANCE[x.dtype]
    assert value.dtype == x.dtype and value.shape == ()
    assert grad.dtype == x.dtype and grad.shape == x.shape
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    torch.testing.assert_close(value.double(), ref_value, rtol=tol, atol=0)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=tol, atol=tol * abs(float(g)))
    return value, grad


def _channels_last(shape):
    return torch.randn(*shape).to(memory_format=torch.channels_last)


LAYOUTS = {
    "contiguous": lambda: torch.randn(3, 5, 17, 13),
    "rank2": lambda: torch.randn(17, 13),
    "rank3": lambda: torch.randn(4, 11, 9),
    "rank5": lambda: torch.randn(2, 3, 4, 9, 7),
    "channels_last": lambda: _channels_last((3, 5, 17, 13)),
    "channels_last_rgb": lambda: _channels_last((2, 3, 11, 19)),
    "transposed": lambda: torch.randn(3, 5, 13, 17).transpose(-1, -2),
    "batch_slice": lambda: torch.randn(6, 5, 17, 13)[1:4],
    "channel_step": lambda: torch.randn(3, 6, 17, 13)[:, ::2],
    "column_step": lambda: torch.randn(3, 5, 17, 26)[..., ::2],
    "row_slice": lambda: torch.randn(3, 5, 20, 13)[:, :, 2:19],
    "channels_last_slice": lambda: _channels_last((5, 5, 17, 13))[1:4, :, 1:16],
    "permuted_leading": lambda: torch.randn(5, 3, 17, 13).permute(1, 0, 2, 3),
    "single_row": lambda: torch.randn(3, 1, 29),
    "single_column": lambda: torch.randn(3, 29, 1),
    "many_rows": lambda: torch.randn(2, 101, 7),  # 101 rows: spans of 26 rows on CPU
    "wide_rows": lambda: torch.randn(2, 3, 2100),  # rows longer than one tile
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_matches_reference_float32(layout, kernel_calls):
    check_against_reference(LAYOUTS[layout]())
    assert kernel_calls == {"forward": 1, "backward": 1}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed"])
def test_matches_reference_16bit(layout, dtype, kernel_calls):
    check_against_reference(LAYOUTS[layout]().to(dtype))
    assert kernel_calls == {"forward": 1, "backward": 1}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ties_have_zero_sign(dtype):
    """Many equal neighbours: sign(0) = 0, as torch's abs backward."""
    x = torch.randint(0, 3, (2, 3, 9, 11)).to(dtype)
    check_against_reference(x)


def test_64bit_in_tile_offsets(monkeypatch):
    """The WIDE (int64 in-tile offsets) variant, forced by lowering the int32 threshold."""
    from fastobj.kernels import _common
    monkeypatch.setattr(_common, "INT32_LIMIT", 1)
    check_against_reference(LAYOUTS["channels_last"]())
    check_against_reference(LAYOUTS["contiguous"]())


@pytest.mark.parametrize("programs", [5, 7])
def test_spans_across_tiles(monkeypatch, programs):
    """Small tiles and short spans of rows: spans start mid-tile and run across tile
    boundaries, so most rows sit next to a span edge (halo rows)."""
    from fastobj.kernels import _common
    monkeypatch.delenv(_common.SM_COUNT_ENV, raising=False)
    monkeypatch.setattr(_common, "TILE_BYTES", 128)  # 32 float32 elements
    monkeypatch.setattr(kt, "_MIN_ROWS", 1)
    monkeypatch.setattr(kt, "_INTERPRETER_PROGRAMS", programs)
    check_against_reference(torch.randn(2, 3, 17, 13))
    check_against_reference(_channels_last((2, 3, 11, 7)))


def test_gradient_strides_follow_empty_like():
    """The op's fake promises empty_like(x): the real gradient has those strides."""
    for layout in ("channels_last", "transposed", "batch_slice", "permuted_leading"):
        x = LAYOUTS[layout]()
        _, grad = _triton_value_and_grad(x, torch.tensor(0.5))
        assert grad.stride() == torch.empty_like(x).stride(), layout


def test_deterministic_repeats():
    x = _channels_last((3, 5, 17, 13))
    g = torch.tensor(-0.75)
    first = _triton_value_and_grad(x, g)
    second = _triton_value_and_grad(x, g)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_forward_returns_float32_scalar():
    x = torch.randn(2, 3, 7, 5, dtype=torch.bfloat16)
    out = kt.total_variation_forward(x)
    assert out.dtype == torch.float32 and out.shape == ()
    ref = Fn.total_variation_ref(x.double())
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=0)


def test_empty_input():
    x = torch.randn(0, 3, 4, 5)
    assert float(kt.total_variation_forward(x)) == 0.0
    assert kt.total_variation_backward(x, torch.tensor(1.0)).shape == x.shape


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()

    def step(x):
        return Fn.total_variation(x) * 0.5

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 9, 7, requires_grad=True)
    g = torch.tensor(1.7)
    with use_backend(backend):
        value = compiled(x)
        (grad,) = torch.autograd.grad(value, x, g)
    ref_value, ref_grad = _reference_value_and_grad(x, g)
    torch.testing.assert_close(value.double(), ref_value * 0.5, rtol=1e-5, atol=0)
    torch.testing.assert_close(grad.double(), ref_grad * 0.5, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
class TestOnGPU:
    """The same equivalence on CUDA tensors (skipped, with a reason, without a GPU)."""

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
    @pytest.mark.parametrize("layout", sorted(LAYOUTS))
    def test_matches_reference(self, layout, dtype):
        check_against_reference(LAYOUTS[layout]().to(device="cuda", dtype=dtype))

    @pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
    def test_image_batch(self, memory_format):
        x = torch.randn(16, 3, 224, 224, device="cuda").to(memory_format=memory_format)
        check_against_reference(x)

    def test_deterministic_repeats(self):
        x = torch.randn(8, 3, 256, 256, device="cuda", dtype=torch.bfloat16)
        g = torch.tensor(0.3, device="cuda", dtype=torch.bfloat16)
        first = _triton_value_and_grad(x, g)
        second = _triton_value_and_grad(x, g)
        assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
