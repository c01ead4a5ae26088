"""Data that is not misuse, with documented results, on both backends.

* NaN and Inf in an activation reach the objective's value (never hidden as 0 or clamped
  away); per-sample objectives keep the other samples finite.
* All-zero activations give finite values and finite gradients (the eps floors of the Gram
  normalisation, the cosine and L2 do their job).
* Non-contiguous, channels-last, strided and offset activations give the results of the
  contiguous tensor with the same values.

The Triton cases (objectives with a kernel) run the kernels in Triton's interpreter on CPU
(conftest sets TRITON_INTERPRET=1).
"""
from __future__ import annotations

import pytest
import torch

import fastobj as fo
from _reliability import BACKENDS, WITH_KERNEL, evaluate

B, C, H, W = 3, 4, 5, 7
T = "act"
CENTRE = (H // 2, W // 2)  # read by every neuron objective and by TensorDirection's crop


def _vec(*shape, positive=False):
    g = torch.Generator().manual_seed(11)
    v = torch.randn(shape, generator=g)
    return v.abs() + 0.1 if positive else v


# name -> (factory, per-sample result, applies a ReLU to the activation first)
OBJECTIVES = {
    "LayerActivation": (lambda: fo.LayerActivation(T), True, False),
    "ChannelActivation": (lambda: fo.ChannelActivation(T, 1), True, False),
    "ChannelActivation-per-sample": (lambda: fo.ChannelActivation(T, [0, 1, 3]), True, False),
    "NeuronActivation": (lambda: fo.NeuronActivation(T, 1), True, False),
    "DeepDream": (lambda: fo.DeepDream(T), True, False),
    "TotalVariation": (lambda: fo.TotalVariation(T), False, False),
    "L1": (lambda: fo.L1(T, constant=0.5), False, False),
    "L2": (lambda: fo.L2(T), False, False),
    "L2Mean": (lambda: fo.L2Mean(T, 1), False, False),
    "Diversity": (lambda: fo.Diversity(T), False, False),
    "Alignment": (lambda: fo.Alignment(T), False, False),
    "ActivationInterpolation": (lambda: fo.ActivationInterpolation(T, 1, T, None), False,
                                False),
    "Direction": (lambda: fo.Direction(T, _vec(C)), True, False),
    "Direction-pow2": (lambda: fo.Direction(T, _vec(C), cossim_pow=2.0), True, False),
    "Direction-per-sample": (lambda: fo.Direction(T, _vec(B, C), cossim_pow=1.0), True, False),
    "NeuronDirection-pow2": (lambda: fo.NeuronDirection(T, _vec(C), cossim_pow=2.0), True,
                             False),
    "AngledNeuronDirection": (lambda: fo.AngledNeuronDirection(T, _vec(C)), True, False),
    "AngledNeuronDirection-pow0": (lambda: fo.AngledNeuronDirection(T, _vec(C), cossim_pow=0),
                                   True, False),
    "TensorDirection-pow1": (lambda: fo.TensorDirection(T, _vec(1, C, 3, 3), cossim_pow=1.0),
                             True, False),
    "ActivationWeights": (lambda: fo.ActivationWeights(T, _vec(C)), True, False),
    "ActivationWeights-neuron": (lambda: fo.ActivationWeights(T, _vec(C), neuron=True), True,
                                 False),
    "VectorLoss": (lambda: fo.VectorLoss(T, _vec(C)), False, True),
    "FacetLoss": (lambda: fo.FacetLoss(_vec(C, positive=True), T, T, torch.ones(1, C)), False,
                  False),
}


def owner(case: str) -> str:
    return case.split("-")[0]


def cases_with_backends(names):
    """(case, backend) params: the Triton backend only where the objective has a kernel."""
    out = []
    for name in names:
        out.append((name, "torch"))
        # AngledNeuronDirection with cossim_pow=0 is an elementwise product: no kernel.
        if owner(name) in WITH_KERNEL and not name.endswith("pow0"):
            out.append((name, "triton"))
    return out


def base_activation(dtype=torch.float32):
    g = torch.Generator().manual_seed(5)
    return torch.rand((B, C, H, W), generator=g, dtype=dtype) + 0.25


# --------------------------------------------------------------------------------------------
# NaN and Inf propagate.
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")],
                         ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("case, backend", cases_with_backends(sorted(OBJECTIVES)))
def test_non_finite_propagates(case, backend, bad):
    factory, per_sample, relu = OBJECTIVES[case]
    x = base_activation()
    x[1, 1, CENTRE[0], CENTRE[1]] = bad
    x.requires_grad_()
    with fo.use_backend(backend):
        value = factory()({T: x}).detach()
    if relu and bad < 0:
        # Documented: the ReLU applied first maps -inf to 0, like any negative activation.
        y = x.detach().clone()
        y[1, 1, CENTRE[0], CENTRE[1]] = -1.0
        with fo.use_backend(backend):
            assert torch.equal(value, factory()({T: y}).detach())
        return
    if bad != bad:  # NaN: the value itself is NaN, not 0 or a clamped number
        assert torch.isnan(value).any(), f"{case}: a NaN activation was hidden: {value}"
    else:
        assert not torch.isfinite(value).all(), f"{case}: an infinite activation was hidden"
    if per_sample:  # the other samples are untouched
        assert torch.isfinite(value[0]).all() and torch.isfinite(value[2]).all(), case


@pytest.mark.parametrize("backend", BACKENDS)
def test_diversity_nan_in_one_sample_reaches_value_and_gradient(backend):
    x = base_activation()
    x[2, 0, 0, 0] = float("nan")
    x.requires_grad_()
    with fo.use_backend(backend):
        value = fo.Diversity(T)({T: x})
        value.backward()
    assert torch.isnan(value)
    assert torch.isnan(x.grad).any()


# --------------------------------------------------------------------------------------------
# All-zero activations: finite values and gradients.
# --------------------------------------------------------------------------------------------

ZERO_CASES = ["Diversity", "Direction-pow2", "Direction-per-sample", "NeuronDirection-pow2",
              "AngledNeuronDirection", "TensorDirection-pow1", "TotalVariation", "L2",
              "Alignment", "VectorLoss", "L2Mean"]


@pytest.mark.parametrize("case, backend", cases_with_backends(ZERO_CASES))
def test_all_zero_activation_is_finite(case, backend):
    x = torch.zeros(B, C, H, W, requires_grad=True)
    value, grads = evaluate(OBJECTIVES[case][0](), {T: x}, backend)
    assert torch.isfinite(value).all(), f"{case}: {value}"
    assert grads[T] is not None and torch.isfinite(grads[T]).all(), case
    if case in ("Diversity", "TotalVariation", "Alignment", "L2"):
        assert torch.equal(grads[T], torch.zeros_like(x)), f"{case}: zero input, zero gradient"
    if case in ("Diversity", "TotalVariation", "Alignment"):
        assert value.abs().max() == 0
    if case == "L2":  # sqrt(eps)
        torch.testing.assert_close(value, torch.tensor(1e-3))


@pytest.mark.parametrize("backend", BACKENDS)
def test_angled_direction_zero_2d_activation(backend):
    x = torch.zeros(B, C, requires_grad=True)
    value, grads = evaluate(fo.AngledNeuronDirection(T, _vec(C)), {T: x}, backend)
    assert torch.isfinite(value).all() and torch.isfinite(grads[T]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_diversity_with_one_all_zero_sample(backend):
    x = base_activation()
    x[1] = 0
    x.requires_grad_()
    value, grads = evaluate(fo.Diversity(T), {T: x}, backend)
    assert torch.isfinite(value) and torch.isfinite(grads[T]).all()
    # The zero sample's normalised Gram is 0: it adds no pair terms, only to the count B.
    rest = torch.cat([x[:1], x[2:]]).detach().requires_grad_()
    with fo.use_backend(backend):
        others = fo.Diversity(T)({T: rest})
    torch.testing.assert_close(value, others.detach() * (B - 1) / B, rtol=1e-5, atol=1e-6)
    assert torch.equal(grads[T][1], torch.zeros_like(x[1]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("batch_index", [None, 2, -1, (1, 2)])
def test_diversity_single_sample_is_zero_tensor_in_graph(backend, dtype, batch_index):
    """No pair of samples: exactly 0.0 by construction (not by cancellation, which is one ulp
    off on some CPUs), in the graph, with an exactly zero gradient."""
    x = base_activation().to(dtype)
    x = (x[:1] if batch_index is None else x).requires_grad_()
    with fo.use_backend(backend):
        value = fo.Diversity(T, batch_index=batch_index)({T: x})
    assert isinstance(value, torch.Tensor) and value.shape == () and value.requires_grad
    assert value.dtype == dtype and value.item() == 0.0
    (value * 1.7).backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


# --------------------------------------------------------------------------------------------
# Memory layouts: the same values in another layout give the same results.
# --------------------------------------------------------------------------------------------

def _zeros(y, dim=None):
    return torch.zeros_like(y) if dim is None else y.new_zeros(
        y.shape[:dim] + (1,) + y.shape[dim + 1:])


LAYOUTS = {
    "channels_last": lambda y: y.contiguous(memory_format=torch.channels_last),
    "transposed": lambda y: y.transpose(2, 3).contiguous().transpose(2, 3),
    "strided_w": lambda y: torch.stack([y, _zeros(y)], dim=-1)[..., 0],
    "strided_batch": lambda y: torch.stack([y, _zeros(y)], dim=1)[:, 0],
    "channel_slice": lambda y: torch.cat([y, _zeros(y, 1)], dim=1)[:, :C],
    "offset": lambda y: torch.cat([_zeros(y, 0), y])[1:],
}
LAYOUT_CASES = ["Diversity", "TotalVariation", "Direction", "Direction-pow2",
                "Direction-per-sample", "NeuronDirection-pow2", "AngledNeuronDirection",
                "TensorDirection-pow1", "VectorLoss", "Alignment", "L2Mean",
                "ChannelActivation-per-sample", "FacetLoss"]


@pytest.mark.parametrize("case, backend", cases_with_backends(LAYOUT_CASES))
def test_layout_does_not_change_results(case, backend):
    y = base_activation().requires_grad_()
    loss = OBJECTIVES[case][0]()
    expected_value, expected_grads = evaluate(loss, {T: y}, backend)
    for layout, relayout in sorted(LAYOUTS.items()):
        x = relayout(y)
        assert torch.equal(x, y.detach())
        assert layout == "offset" or not x.is_contiguous()
        # The gradient is taken w.r.t. the contiguous leaf y, through the relayout.
        value, grads = evaluate(lambda m: loss({T: relayout(m[T])}), {T: y}, backend)
        # Another layout may change the order of float32 sums inside a kernel: near-equality.
        msg = lambda m, layout=layout: f"{case}, {layout} layout: {m}"  # noqa: E731
        torch.testing.assert_close(value, expected_value, rtol=1e-5, atol=1e-6, msg=msg)
        torch.testing.assert_close(grads[T], expected_grads[T], rtol=1e-5, atol=1e-6, msg=msg)
