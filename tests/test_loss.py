"""Composition: operators, names, targets, shapes, and flat evaluation of long chains."""
import operator
from fractions import Fraction

import numpy as np
import pytest
import torch

import fastobj as fo


@pytest.fixture
def acts():
    return {"a": torch.randn(3, 4, 5), "b": torch.randn(3, 2) + 2.0}


def test_number_ops_are_elementwise_and_keep_name_and_target(acts):
    layer = fo.LayerActivation("a")
    a = acts["a"]
    cases = [(layer + 2, a + 2), (2 + layer, 2 + a), (layer - 2, a - 2), (2 - layer, 2 - a),
             (layer * 3, a * 3), (3 * layer, 3 * a), (layer / 4, a / 4), (4 / layer, 4 / a),
             (layer ** 2, a ** 2), (2 ** layer, 2 ** a), (-layer, -a), (+layer, a),
             (abs(layer), a.abs()), (round(layer, 2), torch.round(a, decimals=2)),
             (round(layer), torch.round(a)), (layer + True, a + 1)]
    for loss, expected in cases:
        assert loss.__name__ == "LayerActivation" and loss.target == "a"
        assert torch.allclose(loss(acts), expected, equal_nan=True)


def test_zero_dim_tensor_is_a_number(acts):
    k = torch.tensor(2.5)
    assert torch.allclose((fo.LayerActivation("a") * k)(acts), acts["a"] * 2.5)
    assert torch.allclose((k - fo.LayerActivation("a"))(acts), 2.5 - acts["a"])


@pytest.mark.parametrize("number", [np.float32(2.5), np.float64(2.5), np.int64(3), np.array(2.5),
                                    np.array(3, dtype=np.int16), Fraction(5, 2), True])
def test_any_real_number_composes(acts, number):
    layer, a, k = fo.LayerActivation("a"), acts["a"], float(number)
    for loss, expected in [(layer * number, a * k), (number * layer, k * a),
                           (layer - number, a - k), (number - layer, k - a),
                           (layer / number, a / k), (layer ** number, a ** k)]:
        value = loss(acts)
        assert isinstance(value, torch.Tensor) and value.dtype == a.dtype
        assert torch.allclose(value, expected, equal_nan=True)


@pytest.mark.parametrize("other", ["x", [1.0], torch.ones(2), np.ones(2), 1j, None])
def test_other_operands_raise_type_error_naming_the_type(other):
    layer = fo.LayerActivation("a")
    with pytest.raises(TypeError, match=type(other).__name__):
        layer + other
    with pytest.raises(TypeError, match=type(other).__name__):
        other * layer if not isinstance(other, torch.Tensor) else layer * other


def test_default_loss_summarize_needs_a_tensor(acts):
    assert torch.equal(fo.default_loss_summarize(acts["b"]), -acts["b"].mean())
    for bad in (1.0, [1.0], None):
        with pytest.raises(TypeError, match="default_loss_summarize.*tensor"):
            fo.default_loss_summarize(bad)


def test_module_op_as_in_captum():
    """Captum's module-level operator functions: names, targets, values and errors."""
    acts = {"a": torch.randn(3, 4, 5, 6)}
    one, two = fo.ChannelActivation("a", 0), fo.ChannelActivation("a", 1)
    c0, c1 = acts["a"][:, 0], acts["a"][:, 1]
    neg = fo.module_op(one, None, operator.neg)
    assert neg.__name__ == "ChannelActivation" and torch.equal(neg(acts), -c0)
    plus = fo.module_op(one, 1.0, operator.add)
    assert plus.__name__ == "ChannelActivation" and torch.equal(plus(acts), c0 + 1.0)
    both = fo.module_op(one, two, operator.add)
    assert both.__name__ == "Compose(ChannelActivation, ChannelActivation)"
    assert both.target == ["a"] and torch.allclose(both(acts), c0.mean() + c1.mean())
    ratio = fo.module_op(one, two, operator.truediv)
    assert torch.allclose(ratio(acts), c0.mean() / c1.mean())
    assert torch.allclose(fo.rmodule_op(one, 2.0, operator.pow)(acts), 2.0 ** c0)
    assert torch.allclose(fo.rmodule_op(one, 3.0, operator.sub)(acts), 3.0 - c0)
    for call in (fo.module_op, fo.rmodule_op):
        with pytest.raises(TypeError, match="str"):
            call(one, "string", operator.pow)
    with pytest.raises(TypeError, match="second operand"):
        fo.module_op(one, None, operator.add)
    with pytest.raises(TypeError, match="must be a Loss"):
        fo.module_op(2.0, one, operator.add)


def test_loss_with_loss_is_mean_against_mean(acts):
    a, b = fo.LayerActivation("a"), fo.LayerActivation("b")
    ma, mb = acts["a"].mean(), acts["b"].mean()
    for loss, expected in [(a + b, ma + mb), (a - b, ma - mb), (a * b, ma * mb),
                           (a / b, ma / mb), (b ** a, mb ** ma)]:
        out = loss(acts)
        assert out.dim() == 0 and torch.allclose(out, expected)
        assert loss.__name__.startswith("Compose(")
        assert loss.target == ["a", "b"] or loss.target == ["b", "a"]


def test_targets_are_collected_and_deduplicated_in_order():
    a, b = fo.LayerActivation("a"), fo.LayerActivation("b")
    interp = fo.ActivationInterpolation("b", None, "c", None)
    assert (a + b + a).target == ["a", "b"]
    assert (a * interp).target == ["a", "b", "c"]
    assert (interp - a).target == ["b", "c", "a"]
    assert fo.sum_loss_list([b, a, interp]).target == ["b", "a", "c"]
    assert fo.sum_loss_list([b, a]).__name__ == "Sum(LayerActivation, LayerActivation)"


def test_long_chains_do_not_recurse(acts):
    a = fo.LayerActivation("a")
    total = a
    for _ in range(3000):
        total = total + a
    assert torch.allclose(total(acts), 3001 * acts["a"].mean(), rtol=1e-4)
    scaled = a
    for _ in range(3000):
        scaled = scaled * 1.0 - 0.0
    assert torch.allclose(scaled(acts), acts["a"])
    mixed = a
    for i in range(2000):
        mixed = (mixed * a) if i % 2 else (mixed - a)
    assert torch.isfinite(mixed(acts)) | torch.isnan(mixed(acts))


def test_builtin_sum_and_sum_loss_list_agree(acts):
    losses = [fo.LayerActivation("a"), fo.DeepDream("b"), fo.L1("a")]
    expected = sum(loss(acts).mean() for loss in losses)
    assert torch.allclose(sum(losses)(acts), expected)
    assert torch.allclose(fo.sum_loss_list(losses)(acts), expected)
    with pytest.raises(TypeError, match="loss_list\\[1\\]"):
        fo.sum_loss_list([losses[0], 3])


def test_shared_subloss_is_evaluated_once(acts):
    calls = []

    def fn(m):
        calls.append(1)
        return m["a"]

    shared = fo.CompositeLoss(fn, "Counted", "a")
    combined = (shared + shared * 2) / shared
    combined(acts)
    assert len(calls) == 1


def test_composite_loss_and_gradients():
    x = torch.randn(3, 4, 5, 2, requires_grad=True)
    loss = 2 * fo.LayerActivation("a") - fo.Diversity("a") + abs(fo.L1("a"))
    value = fo.default_loss_summarize(loss({"a": x}))
    value.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
