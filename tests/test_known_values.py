"""The known values of Captum's own test-suite, where fastobj keeps Captum's convention (the
places where it does not are listed in docs/objectives.md). Tier 1 of docs/testing.md.

Fixture: a 1x1 conv 3->2 with weights 0.1 and bias 1, so every activation on ones is 1.3; the
"ramp" is arange(375).view(5, 3, 5, 5) through an Identity (element = 75b + 25c + 5h + w).
"""
import math

import pytest
import torch
import torch.nn as nn

import fastobj as fo


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Conv2d(3, 2, kernel_size=1)
        nn.init.constant_(self.layer.weight, 0.1)
        nn.init.constant_(self.layer.bias, 1.0)

    def forward(self, x):
        return self.layer(x)


@pytest.fixture
def net():
    return ConvNet()


@pytest.fixture
def ramp():
    return torch.arange(375).view(5, 3, 5, 5).float()


def value(loss, model, shape=(1, 3, 1, 1), x=None):
    x = torch.ones(shape) if x is None else x
    return loss(fo.collect_activations(model, loss.target, x)).detach()


def test_operators(net):
    c0, c1 = fo.ChannelActivation(net.layer, 0), fo.ChannelActivation(net.layer, 1)
    neg = -c0
    assert neg.__name__ == "ChannelActivation"
    assert value(neg, net).item() == pytest.approx(-1.3)
    assert value(c0 + 1.0, net).item() == pytest.approx(2.3)
    both = c0 + c1
    assert both.__name__ == "Compose(ChannelActivation, ChannelActivation)"
    assert value(both, net).item() == pytest.approx(2.6)
    assert value(1.0 ** c0, net).item() == pytest.approx(1.0)
    assert value(round(c0, 0), net).item() == pytest.approx(1.0)
    with pytest.raises(TypeError, match="str"):
        c0 ** "string"
    with pytest.raises(TypeError, match="str"):
        "string" ** c0


@pytest.mark.parametrize("expr, expected", [
    (lambda a, b: -a, -1.3),
    (lambda a, b: a + b + 1, 3.6),
    (lambda a, b: 1.0 + a, 2.3),
    (lambda a, b: a - b - 1, -1.0),
    (lambda a, b: 1.0 - a, -0.3),
    (lambda a, b: a * a, 1.69),
    (lambda a, b: a * 10, 13.0),
    (lambda a, b: 10 * a, 13.0),
    (lambda a, b: a / a, 1.0),
    (lambda a, b: a / 10, 0.13),
    (lambda a, b: 10.0 / a, 10 / 1.3),
    (lambda a, b: a ** a, 1.3 ** 1.3),
    (lambda a, b: a ** 2, 1.69),
    (lambda a, b: 2.0 ** a, 2 ** 1.3),
])
def test_composition_values(net, expr, expected):
    a, b = fo.ChannelActivation(net.layer, 0), fo.ChannelActivation(net.layer, 1)
    assert value(expr(a, b), net).item() == pytest.approx(expected, rel=1e-5)


def test_class_hierarchy():
    assert issubclass(fo.CompositeLoss, fo.BaseLoss)
    assert issubclass(fo.BaseLoss, fo.Loss)


def test_base_classes(net, monkeypatch):
    monkeypatch.setattr(fo.Loss, "__abstractmethods__", frozenset())
    monkeypatch.setattr(fo.BaseLoss, "__abstractmethods__", frozenset())
    plain = fo.Loss()
    assert plain.target is None and plain.__name__ == "Loss"
    base = fo.BaseLoss(net)
    assert base.batch_index == (None, None) and base.target is net
    assert base.__name__ == "BaseLoss"
    assert fo.BaseLoss(net, batch_index=5).batch_index == (5, 6)
    assert fo.BaseLoss([net, net.layer]).target == [net, net.layer]


def test_layer_and_channel(net, ramp):
    assert torch.allclose(value(fo.LayerActivation(net.layer), net), torch.full((1, 2, 1, 1), 1.3))
    one = fo.LayerActivation(0, batch_index=1)
    assert torch.equal(one({0: ramp}), ramp[1:2])
    minus_two = fo.LayerActivation(0, batch_index=-2)
    assert minus_two.batch_index == (-2, -1)
    assert torch.equal(minus_two({0: ramp}), ramp[-2:-1])
    for c in (0, 1):
        assert value(fo.ChannelActivation(net.layer, c), net).item() == pytest.approx(1.3)
    assert torch.equal(fo.ChannelActivation(0, 2, batch_index=1)({0: ramp}), ramp[1:2, 2])


def test_deep_dream(net, ramp):
    assert torch.allclose(value(fo.DeepDream(net.layer), net), torch.full((1, 2, 1, 1), 1.69))
    loss = fo.DeepDream(0, batch_index=1)
    assert loss.batch_index == (1, 2)
    assert torch.equal(loss({0: ramp}), ramp[1:2] ** 2)


def test_neuron_activation(net, ramp):
    loss = fo.NeuronActivation(net.layer, 0)
    assert loss.x is None and loss.y is None
    assert value(loss, net).item() == pytest.approx(1.3)
    out = fo.NeuronActivation(0, 2, batch_index=1)({0: ramp})
    assert out.shape == (1, 1, 1) and out.item() == 137.0


def test_penalties(net, ramp):
    assert value(fo.TotalVariation(net.layer), net).item() == 0.0
    assert fo.TotalVariation(0, batch_index=1)({0: ramp}).item() == 360.0
    l1 = fo.L1(net.layer)
    assert l1.constant == 0.0 and value(l1, net).item() == pytest.approx(2.6)
    assert fo.L1(0, batch_index=1)({0: ramp}).item() == 8400.0
    l2 = fo.L2(net.layer)
    assert (l2.constant, l2.eps) == (0.0, 1e-6)
    assert value(l2, net).item() == pytest.approx(math.sqrt(1.69 * 2), abs=1e-5)
    assert fo.L2(0, batch_index=1)({0: ramp}).item() == pytest.approx(987.9017944335938, abs=1e-3)


def test_batch_objectives(net):
    assert value(fo.Diversity(net.layer), net, (2, 3, 1, 1)).item() == pytest.approx(-1.0)
    interp = fo.ActivationInterpolation(net.layer, 0, net.layer, 1)
    out = value(interp, net, (2, 3, 1, 1))
    assert out.shape == (1,) and out.item() == pytest.approx(2.6)
    align = value(fo.Alignment(net.layer), net, (2, 3, 1, 1))
    assert align.shape == (1,) and align.item() == 0.0


def test_directions(net, ramp):
    d = fo.Direction(net.layer, vec=torch.ones(2))
    assert d.vec.shape == (1, 2, 1, 1) and d.cossim_pow == 0.0
    assert value(d, net).item() == pytest.approx(2.6)
    out = fo.Direction(0, torch.tensor([0.0, 1.0, 0.0]), batch_index=1)({0: ramp})
    assert torch.equal(out, ramp[1:2, 1])

    nd = fo.NeuronDirection(net.layer, torch.ones(2))
    assert (nd.x, nd.y, nd.channel_index, nd.cossim_pow) == (None, None, None, 0.0)
    assert nd.vec.shape == (1, 2, 1, 1)
    assert value(nd, net).item() == pytest.approx(2.6)
    # Part I: channel_index restricts the direction to that channel (Captum broadcast: 2.6).
    restricted = fo.NeuronDirection(net.layer, torch.ones(2), channel_index=0)
    assert value(restricted, net).item() == pytest.approx(1.3)
    ramp_nd = fo.NeuronDirection(0, torch.tensor([0.0, 1.0, 0.0]), batch_index=1)({0: ramp})
    assert ramp_nd.item() == 112.0

    angled = fo.AngledNeuronDirection(net.layer, torch.ones(1, 2), cossim_pow=0)
    assert value(angled, net).sum().item() == pytest.approx(2.6)
    whitened = fo.AngledNeuronDirection(net.layer, torch.ones(1, 2), cossim_pow=0,
                                        vec_whitened=torch.ones(2, 2))
    assert value(whitened, net).sum().item() == pytest.approx(5.2)
    default = fo.AngledNeuronDirection(net.layer, torch.ones(1, 2))
    assert (default.eps, default.cossim_pow, default.x, default.y) == (1e-4, 4.0, None, None)
    expected = 1.3 * max(1.3 / (1e-4 + math.sqrt(3.38)), 0.1) ** 4
    assert value(default, net).item() == pytest.approx(expected, rel=1e-5)
    ramp_angled = fo.AngledNeuronDirection(0, torch.tensor([1.0, 0.0, 1.0]), batch_index=1)
    assert ramp_angled({0: ramp}).item() == pytest.approx(1.5350958108901978, rel=1e-6)

    td = fo.TensorDirection(net.layer, torch.ones(1, 2, 1, 1))
    assert td.cossim_pow == 0.0 and value(td, net).item() == pytest.approx(2.6)


def test_activation_weights(net):
    aw = fo.ActivationWeights(net.layer, weights=torch.zeros(1))
    assert (aw.x, aw.y, aw.wx, aw.wy, aw.neuron) == (None, None, None, None, False)
    assert torch.equal(value(aw, net), torch.zeros(1, 2, 1, 1))
    neuron = value(fo.ActivationWeights(net.layer, torch.ones(1), neuron=True), net)
    assert neuron.shape == (1, 2)  # Part I: (B, C) always, Captum squeezes to (2,)
    assert torch.allclose(neuron, torch.full((1, 2), 1.3))
    window = fo.ActivationWeights(net.layer, torch.ones(1), neuron=True, x=0, y=0, wx=1, wy=1)
    assert torch.allclose(value(window, net), torch.full((1, 2, 1, 1), 1.3))


def test_l2_mean_and_vector(net):
    l2m = fo.L2Mean(net.layer)
    assert l2m.constant == 0.5 and l2m.channel_index is None
    assert value(l2m, net).item() == pytest.approx(0.64)
    assert value(fo.L2Mean(net.layer, channel_index=0, constant=0.0), net).item() == \
        pytest.approx(1.69)
    vl = fo.VectorLoss(net.layer, torch.tensor([0.0, 1.0]))
    assert vl.activation_fn is torch.nn.functional.relu and vl.move_channel_dim_to_final_dim
    assert value(vl, net, (1, 3, 6, 6)).item() == pytest.approx(1.3)
    assert value(fo.VectorLoss(net.layer, torch.ones(2)), net, (1, 3, 6, 6)).item() == \
        pytest.approx(2.6)


@pytest.fixture
def facet_model():
    outer = nn.Conv2d(2, 3, kernel_size=1)
    nn.init.constant_(outer.weight, 0.1)
    nn.init.constant_(outer.bias, 1.0)
    return nn.Sequential(ConvNet(), outer)


@pytest.mark.parametrize("vec, weights, strength, batch, expected", [
    ([0.0, 1.0, 0.0], 1.5 * torch.ones(1, 2, 6, 6), None, 1, 0.39),
    ([1.0, 1.0, 1.0], 2.0 * torch.ones(1, 2, 6, 6), None, 1, 1.56),
    ([0.0, 1.0, 0.0], 1.5 * torch.ones(1, 2, 6, 6), 0.5, 1, 0.195),
    ([0.0, 1.0, 0.0], 1.5 * torch.ones(1, 2, 6, 6), [0.1, 5.05], 4, 4.017000198364258),
    ([0.0, 1.0, 0.0], 1.5 * torch.ones(1, 2), None, 1, 0.39),
    ([1.0, 1.0, 1.0], 2.0 * torch.ones(1, 2, 12, 12), None, 1, 1.56),
])
def test_facet_loss(facet_model, vec, weights, strength, batch, expected):
    loss = fo.FacetLoss(torch.tensor(vec), facet_model[1], facet_model[0].layer, weights,
                        strength=strength)
    x = torch.ones(batch, 3, 6, 6, requires_grad=True)
    out = loss(fo.collect_activations(facet_model, loss.target, x))
    assert out.dim() == 0 and out.item() == pytest.approx(expected, rel=1e-5)


def test_facet_strength_zero_scales(facet_model):
    """Part I: strength=0 scales by 0 (Captum ignored it)."""
    loss = fo.FacetLoss(torch.tensor([0.0, 1.0, 0.0]), facet_model[1], facet_model[0].layer,
                        1.5 * torch.ones(1, 2, 6, 6), strength=0)
    x = torch.ones(1, 3, 6, 6, requires_grad=True)
    assert loss(fo.collect_activations(facet_model, loss.target, x)).item() == 0.0


def test_sum_loss_list_values():
    ident = nn.Identity()
    losses = [fo.LayerActivation(ident) for _ in range(400)]
    acts = {ident: torch.ones(400, 3, 1, 1)}
    assert fo.sum_loss_list(losses)(acts).item() == 400.0
    assert (fo.sum_loss_list(losses) + fo.LayerActivation(ident))(acts).item() == 401.0
    acts = {ident: torch.ones(100, 3, 1, 1)}
    hundred = [fo.LayerActivation(ident) for _ in range(100)]
    assert fo.sum_loss_list(hundred, torch.sum)(acts).item() == 30000.0
    kept = fo.sum_loss_list(hundred, torch.nn.Identity())(acts)
    assert kept.shape == (100, 3, 1, 1) and kept.sum().item() == 30000.0


def test_default_summarize():
    assert fo.default_loss_summarize(torch.arange(75.0).view(1, 3, 5, 5)).item() == -37.0
