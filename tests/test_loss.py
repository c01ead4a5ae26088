"""Composition: operators, names, targets, shapes, and flat evaluation of long chains."""
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


@pytest.mark.parametrize("other", ["x", [1.0], torch.ones(2), np.float32(1.0), None])
def test_other_operands_raise_type_error_naming_the_type(other):
    layer = fo.LayerActivation("a")
    with pytest.raises(TypeError, match=type(other).__name__):
        layer + other
    with pytest.raises(TypeError, match=type(other).__name__):
        other * layer if not isinstance(other, (torch.Tensor, np.floating)) else layer * other


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


def test_composite_loss_and_gradients(acts):
    x = acts["a"].clone().requires_grad_()
    loss = 2 * fo.LayerActivation("a") - fo.Diversity("a") + abs(fo.L1("a"))
    value = fo.default_loss_summarize(loss({"a": x}))
    value.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
