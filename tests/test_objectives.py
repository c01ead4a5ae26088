"""Each objective against an independent formula on random, odd-shaped inputs.

The formulas here are written from docs/objectives.md with explicit loops over samples, pairs
and positions (the slow, obvious way), in float64, so they share nothing with the library's
code. Tier 1 of docs/testing.md.
"""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import fastobj as fo

SHAPE = (5, 7, 6, 9)  # B, C, H, W: odd, non-square, not powers of two
BATCH_FORMS = [None, 1, -1, -3, (1, 4), (None, 3), (2, None), [0, 5]]


def selection(batch_index, size):
    """The sample indices a batch_index selects, written out."""
    if batch_index is None:
        return list(range(size))
    if isinstance(batch_index, int):
        return [batch_index % size]
    start, end = batch_index
    return list(range(size))[start:end]


@pytest.fixture
def acts():
    return torch.randn(SHAPE, dtype=torch.float64)


def call(loss, a):
    return loss({"t": a})


@pytest.mark.parametrize("batch_index", BATCH_FORMS)
def test_layer_channel_neuron_deepdream(acts, batch_index):
    idx = selection(batch_index, SHAPE[0])
    assert torch.equal(call(fo.LayerActivation("t", batch_index), acts), acts[idx])
    assert torch.equal(call(fo.DeepDream("t", batch_index), acts), acts[idx] ** 2)
    assert torch.equal(call(fo.ChannelActivation("t", 3, batch_index), acts), acts[idx, 3])
    assert torch.equal(call(fo.ChannelActivation("t", -2, batch_index), acts), acts[idx, 5])
    neuron = call(fo.NeuronActivation("t", 4, x=1, y=-2, batch_index=batch_index), acts)
    assert neuron.shape == (len(idx), 1, 1)
    assert torch.equal(neuron[:, 0, 0], acts[idx, 4, 1, 7])
    centre = call(fo.NeuronActivation("t", 4, batch_index=batch_index), acts)
    assert torch.equal(centre[:, 0, 0], acts[idx, 4, 3, 4])  # (H//2, W//2): rows, columns


def test_per_sample_channels(acts):
    channels = [6, 0, 3]
    for form in (channels, tuple(channels), torch.tensor(channels)):
        out = call(fo.ChannelActivation("t", form, batch_index=(1, 4)), acts)
        expected = torch.stack([acts[1 + k, c] for k, c in enumerate(channels)])
        assert torch.equal(out, expected)
        neuron = call(fo.NeuronActivation("t", form, x=2, y=5, batch_index=(1, 4)), acts)
        assert torch.equal(neuron.flatten(), expected[:, 2, 5])
        l2m = call(fo.L2Mean("t", form, constant=0.25, batch_index=(1, 4)), acts)
        assert l2m.item() == pytest.approx(((expected - 0.25) ** 2).mean().item(), rel=1e-12)


@pytest.mark.parametrize("batch_index", BATCH_FORMS)
def test_penalties(acts, batch_index):
    s = acts[selection(batch_index, SHAPE[0])]
    tv = 0.0
    for b, c in itertools.product(range(s.shape[0]), range(s.shape[1])):
        for i in range(s.shape[2] - 1):
            tv += (s[b, c, i + 1] - s[b, c, i]).abs().sum().item()
        for j in range(s.shape[3] - 1):
            tv += (s[b, c, :, j + 1] - s[b, c, :, j]).abs().sum().item()
    assert call(fo.TotalVariation("t", batch_index), acts).item() == pytest.approx(tv, rel=1e-12)
    l1 = call(fo.L1("t", constant=0.3, batch_index=batch_index), acts)
    assert l1.dim() == 0 and l1.item() == pytest.approx((s - 0.3).abs().sum().item(), rel=1e-12)
    l2 = call(fo.L2("t", constant=-0.2, eps=1e-3, batch_index=batch_index), acts)
    expected = math.sqrt(1e-3 + ((s + 0.2) ** 2).sum().item())
    assert l2.dim() == 0 and l2.item() == pytest.approx(expected, rel=1e-12)
    l2m = call(fo.L2Mean("t", constant=0.1, batch_index=batch_index), acts)
    assert l2m.item() == pytest.approx(((s - 0.1) ** 2).mean().item(), rel=1e-12)


def pairwise_diversity(s):
    grams = [f @ f.T for f in s.reshape(s.shape[0], s.shape[1], -1)]
    grams = [g / max(g.norm().item(), 1e-12) for g in grams]
    total = sum((grams[i] * grams[j]).sum() for i in range(len(grams))
                for j in range(len(grams)) if i != j)
    return -total / len(grams)


@pytest.mark.parametrize("batch_index", BATCH_FORMS)
def test_diversity(acts, batch_index):
    s = acts[selection(batch_index, SHAPE[0])]
    out = call(fo.Diversity("t", batch_index), acts)
    assert out.dim() == 0 and out.dtype == torch.float64
    expected = pairwise_diversity(s) if s.shape[0] > 1 else 0.0
    assert out.item() == pytest.approx(float(expected), rel=1e-10, abs=1e-12)


def test_diversity_single_sample_is_tensor_in_graph(acts):
    a = acts.clone().requires_grad_()
    out = call(fo.Diversity("t", batch_index=2), a)
    assert isinstance(out, torch.Tensor) and out.dim() == 0 and out.item() == 0.0
    out.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()


def test_diversity_non_view_compatible_and_pooled():
    a = torch.randn(4, 6, 5, 7, dtype=torch.float64).transpose(2, 3)  # not .view-able
    expected = pairwise_diversity(a.contiguous())
    assert call(fo.Diversity("t"), a).item() == pytest.approx(expected.item(), rel=1e-10)
    pooled = torch.randn(3, 11, dtype=torch.float64)  # (B, C): each Gram is v vᵀ
    assert call(fo.Diversity("t"), pooled).item() == \
        pytest.approx(pairwise_diversity(pooled[:, :, None]).item(), rel=1e-10)


@pytest.mark.parametrize("c1, c2", [(None, None), (0, 2), (-1, 0), (3, None)])
def test_activation_interpolation(c1, c2):
    a1 = torch.randn(6, 5, 4, 3, dtype=torch.float64)
    a2 = torch.randn(6, 8, 2, 3, dtype=torch.float64)
    out = fo.ActivationInterpolation("one", c1, "two", c2)({"one": a1, "two": a2})
    x1 = a1 if c1 is None else a1[:, c1]
    x2 = a2 if c2 is None else a2[:, c2]
    expected = sum((1 - n / 5) * x1[n].mean() + (n / 5) * x2[n].mean() for n in range(6))
    assert out.shape == (1,) and out.item() == pytest.approx(expected.item(), rel=1e-12)


def test_activation_interpolation_single_sample():
    a1, a2 = torch.randn(1, 3, 2, 2), torch.randn(1, 3, 2, 2)
    out = fo.ActivationInterpolation("one", None, "two", None)({"one": a1, "two": a2})
    assert out.item() == pytest.approx(a1.mean().item(), rel=1e-6)


@pytest.mark.parametrize("batch_index", [None, (0, 4), (1, None), 2])
@pytest.mark.parametrize("decay", [2.0, 5.0])
def test_alignment(acts, batch_index, decay):
    s = acts[selection(batch_index, SHAPE[0])]
    expected = 0.0
    for d in range(1, 5):
        for i in range(s.shape[0] - d):
            expected -= ((s[i] - s[i + d]) ** 2).mean().item() / decay ** d
    out = call(fo.Alignment("t", decay_ratio=decay, batch_index=batch_index), acts)
    assert out.shape == (1,) and out.item() == pytest.approx(expected, rel=1e-12, abs=1e-15)


def clamped_cos_term(v, a, p, eps=1e-8):
    if p == 0:
        return 1.0
    cos = (v * a).sum() / (max(v.norm().item(), eps) * max(a.norm().item(), eps))
    return max(cos.item(), 0.1) ** p


@pytest.mark.parametrize("p", [0.0, 2.0, 3.5])
@pytest.mark.parametrize("batch_index", [None, 2, (1, 4)])
def test_direction(acts, p, batch_index):
    idx = selection(batch_index, SHAPE[0])
    vec = torch.randn(SHAPE[1], dtype=torch.float64)
    out = call(fo.Direction("t", vec, cossim_pow=p, batch_index=batch_index), acts)
    assert out.shape == (len(idx), SHAPE[2], SHAPE[3])
    k, b, h, w = 1, idx[1 % len(idx)], 4, 7
    a = acts[b, :, h, w]
    expected = (vec * a).sum().item() * clamped_cos_term(vec, a, p)
    assert out[1 % len(idx), h, w].item() == pytest.approx(expected, rel=1e-10)
    per_sample = torch.randn(len(idx), SHAPE[1], dtype=torch.float64)
    out = call(fo.Direction("t", per_sample, cossim_pow=p, batch_index=batch_index), acts)
    for k, b in enumerate(idx):
        a = acts[b, :, 5, 2]
        expected = (per_sample[k] * a).sum().item() * clamped_cos_term(per_sample[k], a, p)
        assert out[k, 5, 2].item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("p", [0.0, 2.0])
def test_neuron_direction(acts, p):
    vec = torch.randn(SHAPE[1], dtype=torch.float64)
    out = call(fo.NeuronDirection("t", vec, x=4, y=-1, cossim_pow=p), acts)
    assert out.shape == (SHAPE[0], 1, 1)
    for b in range(SHAPE[0]):
        a = acts[b, :, 4, 8]
        expected = (vec * a).sum().item() * clamped_cos_term(vec, a, p)
        assert out[b, 0, 0].item() == pytest.approx(expected, rel=1e-10)
    one = call(fo.NeuronDirection("t", vec, channel_index=3, cossim_pow=p, batch_index=-1), acts)
    a = acts[-1, 3:4, 3, 4]
    expected = vec[3].item() * a.item() * clamped_cos_term(vec[3:4], a, p)
    assert one.shape == (1, 1, 1) and one.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("whitened", [False, True])
@pytest.mark.parametrize("p", [0.0, 4.0])
def test_angled_neuron_direction(acts, whitened, p):
    vec = torch.randn(1, SHAPE[1], dtype=torch.float64)
    white = torch.randn(SHAPE[1], SHAPE[1], dtype=torch.float64) if whitened else None
    u = (vec @ white)[0] if whitened else vec[0]
    out = call(fo.AngledNeuronDirection("t", vec, white, cossim_pow=p, x=1, y=2,
                                        batch_index=(1, 4)), acts)
    for k, b in enumerate(range(1, 4)):
        a = acts[b, :, 1, 2]
        if p == 0:
            assert torch.allclose(out[k], a * u, rtol=1e-12)
            continue
        dot = (a * u).mean().item()
        cos = dot / (1e-4 + a.norm().item())
        assert out[k].item() == pytest.approx(dot * max(cos, 0.1) ** p, rel=1e-10)
    assert out.shape == ((3, SHAPE[1]) if p == 0 else (3,))


def test_angled_neuron_direction_two_d_and_per_sample():
    acts = torch.randn(4, 6, dtype=torch.float64)
    vecs = torch.randn(4, 6, dtype=torch.float64)
    out = fo.AngledNeuronDirection("t", vecs, cossim_pow=2.0)({"t": acts})
    for b in range(4):
        dot = (acts[b] * vecs[b]).mean().item()
        cos = dot / (1e-4 + acts[b].norm().item())
        assert out[b].item() == pytest.approx(dot * max(cos, 0.1) ** 2, rel=1e-10)


@pytest.mark.parametrize("p", [0.0, 1.5])
@pytest.mark.parametrize("vec_batch", [1, 3])
def test_tensor_direction(acts, p, vec_batch):
    vec = torch.randn(vec_batch, SHAPE[1], 3, 4, dtype=torch.float64)
    out = call(fo.TensorDirection("t", vec, cossim_pow=p, batch_index=(2, 5)), acts)
    assert out.shape == (3, 3, 4)
    h0, w0 = (SHAPE[2] - 3) // 2, (SHAPE[3] - 4) // 2
    for k, i, j in itertools.product(range(3), range(3), range(4)):
        v = vec[k % vec_batch, :, i, j]
        a = acts[2 + k, :, h0 + i, w0 + j]
        expected = (v * a).sum().item() * clamped_cos_term(v, a, p)
        assert out[k, i, j].item() == pytest.approx(expected, rel=1e-10)


def test_activation_weights(acts):
    w = torch.randn(SHAPE[1], dtype=torch.float64)
    whole = call(fo.ActivationWeights("t", w), acts)
    assert torch.allclose(whole, acts * w[None, :, None, None], rtol=0)
    neuron = call(fo.ActivationWeights("t", w, x=1, y=6), acts)
    assert neuron.shape == (SHAPE[0], SHAPE[1])
    assert torch.allclose(neuron, acts[:, :, 1, 6] * w, rtol=0)
    window = call(fo.ActivationWeights("t", w, x=2, y=3, wx=3, wy=5), acts)
    assert window.shape == (SHAPE[0], SHAPE[1], 3, 5)
    assert torch.allclose(window, acts[:, :, 2:5, 3:8] * w[None, :, None, None], rtol=0)


@pytest.mark.parametrize("act_fn", [F.relu, None, torch.tanh])
def test_vector_loss(acts, act_fn):
    vec = torch.randn(SHAPE[1], dtype=torch.float64)
    out = call(fo.VectorLoss("t", vec, activation_fn=act_fn, batch_index=(0, 3)), acts)
    x = acts[:3] if act_fn is None else act_fn(acts[:3])
    expected = sum((x[b, :, h, w] * vec).sum().item() for b in range(3)
                   for h in range(SHAPE[2]) for w in range(SHAPE[3])) / (3 * SHAPE[2] * SHAPE[3])
    assert out.dim() == 0 and out.item() == pytest.approx(expected, rel=1e-10)
    last = acts.permute(0, 2, 3, 1)  # channels-last activation, as in CLIP's transformer
    out_last = call(fo.VectorLoss("t", vec, activation_fn=act_fn,
                                  move_channel_dim_to_final_dim=False, batch_index=(0, 3)), last)
    assert out_last.item() == pytest.approx(expected, rel=1e-10)
    flat = torch.randn(4, SHAPE[1], dtype=torch.float64)
    out_flat = call(fo.VectorLoss("t", vec, activation_fn=act_fn), flat)
    x = flat if act_fn is None else act_fn(flat)
    assert out_flat.item() == pytest.approx((x @ vec).mean().item(), rel=1e-10)


OBJECTIVES = {
    "LayerActivation": lambda: fo.LayerActivation("t", (1, 4)),
    "ChannelActivation": lambda: fo.ChannelActivation("t", [2, 5, 0], (0, 3)),
    "NeuronActivation": lambda: fo.NeuronActivation("t", 4, x=2, y=3),
    "DeepDream": lambda: fo.DeepDream("t", -2),
    "TotalVariation": lambda: fo.TotalVariation("t"),
    "L1": lambda: fo.L1("t", 0.1),
    "L2": lambda: fo.L2("t", 0.2),
    "Diversity": lambda: fo.Diversity("t"),
    "ActivationInterpolation": lambda: fo.ActivationInterpolation("t", 1, "t", None),
    "Alignment": lambda: fo.Alignment("t", 3.0),
    "Direction": lambda: fo.Direction("t", torch.linspace(-1, 1.5, 7, dtype=torch.float64), 2.0),
    "NeuronDirection": lambda: fo.NeuronDirection(
        "t", torch.linspace(-1, 1, 7, dtype=torch.float64).expand(5, 7).contiguous(), 1, 2,
        cossim_pow=1.0),
    "AngledNeuronDirection": lambda: fo.AngledNeuronDirection(
        "t", torch.linspace(0.5, 1.5, 7, dtype=torch.float64), cossim_pow=2.0),
    "TensorDirection": lambda: fo.TensorDirection(
        "t", torch.linspace(-1, 2, 7 * 6, dtype=torch.float64).reshape(1, 7, 2, 3), 1.0),
    "ActivationWeights": lambda: fo.ActivationWeights(
        "t", torch.linspace(0, 1, 7, dtype=torch.float64), x=1, y=1, wx=2, wy=3),
    "L2Mean": lambda: fo.L2Mean("t", 3, 0.3),
    "VectorLoss": lambda: fo.VectorLoss("t", torch.linspace(-1, 1, 7, dtype=torch.float64),
                                        activation_fn=torch.tanh),
}


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_gradcheck(name):
    loss = OBJECTIVES[name]()
    acts = torch.randn(5, 7, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: loss({"t": a}), (acts,))


def test_gradcheck_facet_loss():
    conv1 = torch.nn.Conv2d(3, 4, 3).double()
    conv2 = torch.nn.Conv2d(4, 5, 1).double()
    weights = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    loss = fo.FacetLoss(torch.randn(5, dtype=torch.float64), "top", "mid", weights,
                        strength=[0.5, 2.0])

    def run(x):
        # top is linear in mid, so the attribution (a constant by definition) does not move
        # under gradcheck's small perturbations and finite differences see the same function.
        mid = conv1(x)
        return loss({"mid": mid, "top": conv2(mid)})

    x = torch.randn(3, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(run, (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_dtype_kept_and_close_to_float64(name, dtype):
    loss = OBJECTIVES[name]()
    acts = torch.rand(5, 7, 4, 5, dtype=torch.float64) + 0.1
    exact = loss({"t": acts})
    out = loss({"t": acts.to(dtype)})
    assert out.dtype == dtype and out.shape == exact.shape
    tol = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}[dtype]
    assert torch.allclose(out.double(), exact, rtol=tol, atol=tol * exact.abs().max().item())
