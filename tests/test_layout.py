"""Layout targets (fastobj.layout): every objective on (B, T, C) token activations.

The expected values are written from the token layout itself: patch (i, j) is token
``prefix + i*w + j``, read one element at a time into a grid (``patch_grid``), and the formulas
are those of docs/objectives.md, in explicit loops, in float64. They share nothing with the
adapter's view (unflatten + permute) nor with the library's computations. Each case also checks
the gradient with respect to the raw tokens for a random upstream gradient: it flows back
through the view, and is zero on tokens the view does not read.

Both backends: the reference in float64, and the Triton kernels in the interpreter on float32
copies of the same numbers (tolerance 2e-5 of the largest magnitude: float32 sums over a few
dozen terms in another order, see test_kernel_dot_cossim.py).
"""
import argparse
import importlib
import itertools

import pytest
import torch
import torch.nn.functional as F

import fastobj as fo
from fastobj.backend import use_backend
from fastobj.render import demo_vit, render

B, C = 3, 5
# (prefix, grid as declared, grid (h, w) it means, batch_first): odd token counts (13, 15, 11),
# non-square grids, class token on (prefix 1), off (prefix 0), and with a second special token.
LAYOUTS = {
    "cls+3x4": (1, (3, 4), (3, 4), True),
    "nocls+3x5": (0, (3, -1), (3, 5), True),
    "two+3x3,seq-first": (2, None, (3, 3), False),
}
F32_TOLERANCE = 2e-5


def token_count(name):
    prefix, _, (h, w), _ = LAYOUTS[name]
    return prefix + h * w


def make_target(name, key="t"):
    prefix, grid, _, batch_first = LAYOUTS[name]
    return fo.Tokens(key, prefix=prefix, grid=grid, batch_first=batch_first)


def raw_tokens(name, dtype=torch.float64):
    shape = (B, token_count(name), C)
    x = torch.randn(shape, dtype=torch.float64)
    return x if LAYOUTS[name][3] else x.transpose(0, 1).contiguous()  # (T, B, C) storage


def token(x, name, b, t, c):
    return x[b, t, c] if LAYOUTS[name][3] else x[t, b, c]


def patch_grid(x, name):
    """(B, C, h, w): element (b, c, i, j) is channel c of token prefix + i*w + j, one by one."""
    prefix, _, (h, w), _ = LAYOUTS[name]
    return torch.stack([torch.stack([torch.stack([torch.stack(
        [token(x, name, b, prefix + i * w + j, c) for j in range(w)]) for i in range(h)])
        for c in range(C)]) for b in range(B)])


def class_token(x, name):
    """(B, C, 1, 1): token 0 of each sample."""
    return torch.stack([torch.stack([token(x, name, b, 0, c) for c in range(C)])
                        for b in range(B)])[:, :, None, None]


def clamped_cos(v, a, p, eps=1e-8):
    if p == 0:
        return 1.0
    cos = (v * a).sum() / (torch.clamp(v.norm(), min=eps) * torch.clamp(a.norm(), min=eps))
    return torch.clamp(cos, min=0.1) ** p


def direction_at(g, vec, p):
    """Direction's (B, H, W): Σ_c v_c a_c times the clamped cosine, position by position."""
    return torch.stack([torch.stack([torch.stack([
        (vec[b % vec.shape[0]] * g[b, :, i, j]).sum()
        * clamped_cos(vec[b % vec.shape[0]], g[b, :, i, j], p)
        for j in range(g.shape[3])]) for i in range(g.shape[2])]) for b in range(g.shape[0])])


def total_variation(g):
    total = 0.0
    for b, c in itertools.product(range(g.shape[0]), range(g.shape[1])):
        for i, j in itertools.product(range(g.shape[2]), range(g.shape[3])):
            if i + 1 < g.shape[2]:
                total = total + (g[b, c, i + 1, j] - g[b, c, i, j]).abs()
            if j + 1 < g.shape[3]:
                total = total + (g[b, c, i, j + 1] - g[b, c, i, j]).abs()
    return total


def diversity(g):
    grams = []
    for b in range(g.shape[0]):
        f = g[b].reshape(g.shape[1], -1)
        gram = torch.stack([torch.stack([(f[c] * f[d]).sum() for d in range(f.shape[0])])
                            for c in range(f.shape[0])])
        grams.append(gram / torch.clamp(gram.norm(), min=1e-12))
    n = len(grams)
    return -sum((grams[i] * grams[j]).sum() for i in range(n) for j in range(n) if i != j) / n


def alignment(g, decay):
    return -sum(((g[i] - g[i + d]) ** 2).mean() / decay ** d
                for d in range(1, 5) for i in range(g.shape[0] - d))


def interpolation(one, two):
    n = one.shape[0]
    return torch.stack([sum((1 - k / (n - 1)) * one[k].mean() + k / (n - 1) * two[k].mean()
                            for k in range(n))])


def angled(g, u, p, x, y):
    rows = []
    for b in range(g.shape[0]):
        a = g[b, :, x, y]
        dot = (a * u).mean()
        rows.append(dot * torch.clamp(dot / (1e-4 + a.norm()), min=0.1) ** p)
    return torch.stack(rows)


VEC = torch.linspace(-1.0, 1.5, C, dtype=torch.float64)
VECS = torch.linspace(0.5, -1.0, B * C, dtype=torch.float64).reshape(B, C).flip(1)
WEIGHTS = torch.linspace(0.2, 1.1, C, dtype=torch.float64)

# name -> (objective built on a layout target T, expected value from the patch grid g and the
# class token k, whether it runs a Triton kernel). Grids are at least 3 x 3.
CASES = {
    "LayerActivation": (lambda T: fo.LayerActivation(T, (1, 3)), lambda g, k: g[1:3], False),
    "ChannelActivation": (lambda T: fo.ChannelActivation(T, 3), lambda g, k: g[:, 3], False),
    "ChannelActivation per sample": (lambda T: fo.ChannelActivation(T, [4, 0, 2]),
                                     lambda g, k: torch.stack([g[0, 4], g[1, 0], g[2, 2]]),
                                     False),
    "NeuronActivation": (lambda T: fo.NeuronActivation(T, 2, x=1, y=-1),
                         lambda g, k: g[:, 2, 1:2, -1:], False),
    "NeuronActivation centre": (
        lambda T: fo.NeuronActivation(T, 4),
        lambda g, k: g[:, 4, g.shape[2] // 2, g.shape[3] // 2].reshape(B, 1, 1), False),
    "NeuronActivation cls": (lambda T: fo.NeuronActivation(T.cls, 2),
                             lambda g, k: k[:, 2, :1, :1], False),
    "DeepDream": (lambda T: fo.DeepDream(T, -1), lambda g, k: g[-1:] ** 2, False),
    "TotalVariation": (lambda T: fo.TotalVariation(T), lambda g, k: total_variation(g), True),
    "L1": (lambda T: fo.L1(T, 0.3), lambda g, k: (g - 0.3).abs().sum(), False),
    "L2": (lambda T: fo.L2(T, -0.2, 1e-3), lambda g, k: (1e-3 + ((g + 0.2) ** 2).sum()).sqrt(),
           False),
    "L2Mean": (lambda T: fo.L2Mean(T, 1, 0.1), lambda g, k: ((g[:, 1] - 0.1) ** 2).mean(),
               False),
    "Diversity": (lambda T: fo.Diversity(T), lambda g, k: diversity(g), True),
    "Diversity cls": (lambda T: fo.Diversity(T.cls, (0, 2)), lambda g, k: diversity(k[:2]),
                      True),
    "ActivationInterpolation to cls": (
        lambda T: fo.ActivationInterpolation(T, 1, T.cls, None),
        lambda g, k: interpolation(g[:, 1], k), False),
    "Alignment": (lambda T: fo.Alignment(T, 3.0), lambda g, k: alignment(g, 3.0).reshape(1),
                  False),
    "Direction": (lambda T: fo.Direction(T, VEC, 2.0),
                  lambda g, k: direction_at(g, VEC[None], 2.0), True),
    "Direction per sample": (lambda T: fo.Direction(T, VECS, 1.0),
                             lambda g, k: direction_at(g, VECS, 1.0), True),
    "NeuronDirection": (lambda T: fo.NeuronDirection(T, VEC, x=2, y=0, cossim_pow=1.0),
                        lambda g, k: direction_at(g[:, :, 2:3, 0:1], VEC[None], 1.0), True),
    "NeuronDirection cls": (lambda T: fo.NeuronDirection(T.cls, VECS, cossim_pow=2.0),
                            lambda g, k: direction_at(k, VECS, 2.0), True),
    "AngledNeuronDirection": (lambda T: fo.AngledNeuronDirection(T, VEC, x=0, y=1,
                                                                 cossim_pow=2.0),
                              lambda g, k: angled(g, VEC, 2.0, 0, 1), True),
    "AngledNeuronDirection cls": (lambda T: fo.AngledNeuronDirection(T.cls, VEC, cossim_pow=0),
                                  lambda g, k: k[:, :, 0, 0] * VEC, False),
    "TensorDirection": (
        lambda T: fo.TensorDirection(T, VECS[:1, :, None, None].expand(1, C, 2, 3), 1.5),
        lambda g, k: direction_at(g[:, :, (g.shape[2] - 2) // 2:(g.shape[2] - 2) // 2 + 2,
                                    (g.shape[3] - 3) // 2:(g.shape[3] - 3) // 2 + 3],
                                  VECS[:1], 1.5), True),
    "ActivationWeights": (lambda T: fo.ActivationWeights(T, WEIGHTS),
                          lambda g, k: g * WEIGHTS[None, :, None, None], False),
    "ActivationWeights window": (
        lambda T: fo.ActivationWeights(T, WEIGHTS, x=1, y=1, wx=2, wy=2),
        lambda g, k: g[:, :, 1:3, 1:3] * WEIGHTS[None, :, None, None], False),
    "VectorLoss": (lambda T: fo.VectorLoss(T, VEC),
                   lambda g, k: sum((F.relu(g[b, :, i, j]) * VEC).sum()
                                    for b in range(B) for i in range(g.shape[2])
                                    for j in range(g.shape[3])) / g[:, 0].numel(), True),
}


def check_case(case, layout, backend, kernel_calls=None):
    build, formula, _ = CASES[case]
    x64 = raw_tokens(layout)
    dtype = torch.float64 if backend == "torch" else torch.float32
    x = x64.to(dtype).requires_grad_()
    x64 = x.detach().double().requires_grad_()  # the same numbers the objective reads
    objective = build(make_target(layout))
    with use_backend(backend):
        out = objective({"t": x})
    expected = formula(patch_grid(x64, layout), class_token(x64, layout))
    assert out.dtype == dtype and out.shape == expected.shape
    upstream = torch.randn(expected.shape, dtype=torch.float64) + 0.5  # not all ones
    (grad,) = torch.autograd.grad(out, x, upstream.to(dtype))
    (expected_grad,) = torch.autograd.grad(expected, x64, upstream)
    tol = 1e-10 if backend == "torch" else F32_TOLERANCE
    for actual, wanted in ((out, expected), (grad, expected_grad)):
        scale = max(float(wanted.detach().abs().max()), 1e-30)
        torch.testing.assert_close(actual.detach().double(), wanted.detach(), rtol=tol,
                                   atol=tol * scale)


def combinations(layouts, kernel_only=False):
    """(case, layout) pairs; the class-token cases only where the layout has one."""
    return [(case, layout) for case, layout in itertools.product(sorted(CASES), layouts)
            if (LAYOUTS[layout][0] > 0 or "cls" not in case)
            and (CASES[case][2] or not kernel_only)]


@pytest.mark.parametrize("case, layout", combinations(sorted(LAYOUTS)))
def test_objective_on_tokens_reference(case, layout):
    check_case(case, layout, "torch")


KERNEL_LAUNCHERS = {
    "TotalVariation": ("fastobj.kernels.total_variation", "total_variation_forward",
                       "total_variation_backward"),
    "Diversity": ("fastobj.kernels.diversity", "diversity_sums_forward",
                  "diversity_value_backward"),  # the objective's own value: A formed from S
}
DOT_COSSIM = ("fastobj.kernels.dot_cossim", "dot_cossim_forward", "dot_cossim_backward")


@pytest.mark.parametrize("case, layout",
                         combinations(["cls+3x4", "two+3x3,seq-first"], kernel_only=True))
def test_objective_on_tokens_interpreter(case, layout, count_kernel_calls):
    """The kernel-backed objectives on the token views, with the Triton kernels forced."""
    calls = count_kernel_calls(*KERNEL_LAUNCHERS.get(case.split()[0], DOT_COSSIM))
    check_case(case, layout, "triton")
    assert calls == {"forward": 1, "backward": 1}  # no silent fallback


# ----------------------------------------------------------------- the views are not copies

def test_views_share_the_tokens_memory():
    x = torch.randn(4, 1 + 3 * 5, 7)
    view = fo.Tokens("t", grid=(3, 5)).view(x)
    assert view.shape == (4, 7, 3, 5) and view.stride() == (16 * 7, 1, 5 * 7, 7)
    assert view.data_ptr() == x.data_ptr() + 7 * x.element_size()  # after the class token
    assert fo.Tokens("t", grid=(3, 5)).cls.patches == fo.Tokens("t", grid=(3, 5))
    cls = fo.Tokens("t", grid=(3, 5)).cls.view(x)
    assert cls.shape == (4, 7, 1, 1) and cls.data_ptr() == x.data_ptr()
    seq_first = x.transpose(0, 1).contiguous()
    view = fo.Tokens("t", grid=(3, 5), batch_first=False).view(seq_first)
    assert view.data_ptr() == seq_first.data_ptr() + 4 * 7 * seq_first.element_size()
    assert torch.equal(view, fo.Tokens("t", grid=(3, 5)).view(x))
    pooled = fo.Pooled("p").view(x[:, 0])
    assert pooled.shape == (4, 7, 1, 1) and pooled.data_ptr() == x.data_ptr()


@pytest.mark.parametrize("case, launchers", [
    ("Diversity", KERNEL_LAUNCHERS["Diversity"]),
    ("Direction", DOT_COSSIM),
    ("TotalVariation", KERNEL_LAUNCHERS["TotalVariation"]),
])
def test_kernels_read_the_token_memory_without_a_copy(case, launchers, monkeypatch):
    """The launchers get the raw tokens' memory, strided (channels last), not a copy; and the
    total-variation launcher plans no copy of its own."""
    module = importlib.import_module(launchers[0])
    seen = []
    for name in launchers[1:]:
        launcher = getattr(module, name)

        def spy(first, *args, _launcher=launcher, **kwargs):
            seen.append((first.data_ptr(), first.stride()))
            return _launcher(first, *args, **kwargs)
        monkeypatch.setattr(module, name, spy)
    x = torch.randn(2, 1 + 3 * 4, C, requires_grad=True)
    with use_backend("triton"):
        out = CASES[case][0](make_target("cls+3x4"))({"t": x})
        out.backward(torch.randn(out.shape))
    start = x.data_ptr() + C * x.element_size()  # first patch token
    assert [ptr for ptr, _ in seen] == [start, start]
    assert all(stride[1] == 1 for _, stride in seen)  # channels are the unit-stride dim
    if case == "TotalVariation":
        view = make_target("cls+3x4").view(x.detach())
        assert module._layout(view.shape, view.stride())[0] != "copy"
        assert module._layout(view.shape, view.stride(),
                              torch.empty_like(view).stride())[0] != "copy"


# ----------------------------------------------------------------- FacetLoss and Pooled

def test_facet_loss_on_tokens():
    """Attribution of a linear layer on tokens: dz/dL is the explicit chain rule."""
    layer = torch.randn(B, 1 + 3 * 4, C, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, C, dtype=torch.float64)
    top = layer @ weight.T
    vec = torch.tensor([0.5, -1.0, 2.0, 1.0], dtype=torch.float64)
    facet = torch.linspace(-1, 1, C, dtype=torch.float64).reshape(1, C)
    tokens = lambda key: fo.Tokens(key, grid=(3, 4))  # noqa: E731
    loss = fo.FacetLoss(vec, tokens("top"), tokens("mid"), facet, strength=0.5)
    out = loss({"mid": layer, "top": top})
    expected = 0.0
    patches = range(1, 13)
    for b, t in itertools.product(range(B), patches):  # z_b = mean_t Σ_k relu(top)·vec
        for c in range(C):
            grad = sum(vec[k] * weight[k, c] for k in range(4) if top[b, t, k] > 0) / 12
            expected += 0.5 * layer[b, t, c].item() * max(float(grad), 0.0) * facet[0, c]
    assert out.detach().item() == pytest.approx(float(expected), rel=1e-10)


def test_pooled_vectors():
    emb = torch.randn(B, C, dtype=torch.float64)
    mapping = {"head": emb}
    assert torch.equal(fo.NeuronActivation(fo.Pooled("head"), 3)(mapping)[:, 0, 0], emb[:, 3])
    out = fo.Direction(fo.Pooled("head"), VEC, 2.0)(mapping)
    expected = direction_at(emb[:, :, None, None], VEC[None], 2.0)
    assert torch.allclose(out, expected, rtol=1e-12)


# ----------------------------------------------------------------- errors

@pytest.mark.parametrize("target, shape, message", [
    (fo.Tokens("blk"), (2, 1 + 12, 4), "12 patch tokens (13 tokens - 1 prefix) do not form a "
                                       "square grid"),
    (fo.Tokens("blk", grid=(5, -1)), (2, 13, 4), "grid (5, -1) does not divide 12 patch tokens"),
    (fo.Tokens("blk", grid=(3, 3)), (2, 13, 4), "grid (3, 3) holds 9 patches but there are 12"),
    (fo.Tokens("blk", prefix=3), (2, 3, 4), "3 tokens leave no patch tokens after 3 prefix"),
    (fo.Tokens("blk"), (2, 4, 3, 3), "expected rank 3"),
    (fo.Tokens("blk", token=-14), (2, 10, 4), "token -14 is outside 10 tokens"),
    (fo.Pooled("blk"), (2, 5, 4), "expected rank 2"),
])
def test_layout_that_does_not_fit(target, shape, message):
    with pytest.raises(ValueError) as info:
        fo.ChannelActivation(target, 0)({"blk": torch.randn(shape)})
    text = str(info.value)
    assert text.startswith("ChannelActivation: target ") and repr(target) in text
    assert str(shape) in text and message in text


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(prefix=-1), ValueError, "prefix must be >= 0"),
    (dict(prefix=1.5), TypeError, "prefix must be an int"),
    (dict(grid=(3,)), ValueError, "grid must be a pair"),
    (dict(grid=(-1, -1)), ValueError, "one of them may be -1"),
    (dict(grid=(0, 4)), ValueError, "grid entries must be >= 1"),
    (dict(token="cls"), TypeError, "token must be an int"),
    (dict(batch_first=0), TypeError, "batch_first must be a bool"),
])
def test_bad_declarations(kwargs, error, message):
    with pytest.raises(error, match=message):
        fo.Tokens("blk", **kwargs)


def test_no_class_token_and_no_nesting():
    with pytest.raises(ValueError, match="no class token"):
        fo.Tokens("blk", prefix=0).cls
    with pytest.raises(TypeError, match="already a layout target"):
        fo.Pooled(fo.Tokens("blk"))


# ----------------------------------------------------------------- capture and render

def test_capture_keys_and_plain_key_fallback():
    model = demo_vit()
    mlp = fo.Tokens("blocks.1.mlp.act")
    objective = fo.ChannelActivation(mlp, 7) + fo.NeuronActivation(mlp.cls, 7) \
        + fo.Direction(fo.Pooled(model.head), torch.randn(10))
    images = torch.rand(2, 3, 40, 40)
    acts = fo.collect_activations(model, objective.target, images)
    assert list(acts) == [mlp, mlp.cls, fo.Pooled(model.head)]
    assert acts[mlp].shape == (2, 1 + 5 * 5, 192) and acts[mlp] is acts[mlp.cls]  # raw output
    plain = fo.collect_activations(model, ["blocks.1.mlp.act", model.head], images)
    assert torch.equal(objective(acts), objective(plain))  # read under the plain targets
    assert all(not m._forward_hooks for m in model.modules())


def test_demo_vit_is_seeded_and_takes_any_size():
    one, two = demo_vit(3), demo_vit(3)
    assert all(torch.equal(a, b) for a, b in zip(one.state_dict().values(),
                                                 two.state_dict().values()))
    assert not torch.equal(one.head.weight, demo_vit(4).head.weight)
    for size in ((24, 40), (33, 33)):
        acts = fo.collect_activations(one, "blocks.2", torch.rand(1, 3, *size))
        assert acts["blocks.2"].shape == (1, 1 + (size[0] // 8) * (size[1] // 8), 48)


def test_render_vit_neuron_with_stop_early():
    model = demo_vit()
    calls = []
    counter = model.norm.register_forward_pre_hook(lambda module, inputs: calls.append(1))
    objective = fo.ChannelActivation(fo.Tokens("blocks.1.mlp.act"), 5) \
        + 0.5 * fo.Diversity(fo.Tokens("blocks.1"))
    kw = dict(batch_size=2, image_size=16, steps=3, progress=False, seed=1)
    try:
        early = render(model, objective, stop_early=True, **kw)
        assert not calls  # the norm after the last block never ran
        full = render(model, objective, **kw)
        assert len(calls) == 3 and early.history == pytest.approx(full.history, rel=1e-6)
    finally:
        counter.remove()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_render_command_on_the_vit(tmp_path, capsys):
    from fastobj.render import cli as render_cli

    parser = argparse.ArgumentParser()
    render_cli.add_arguments(parser)
    common = ["--model", "fastobj.render.demo:demo_vit", "--steps", "1", "--batch-size", "1",
              "--size", "16", "--stop-early", "--no-progress", "--out", str(tmp_path / "v.png")]
    args = parser.parse_args(["NeuronActivation(Tokens('blocks.0.mlp.act', prefix=1), 3, "
                              "x=0, y=1) + NeuronActivation(Pooled('head'), 2)"] + common)
    assert args.run(args) == 0 and (tmp_path / "v.png").exists()
    args = parser.parse_args(["ChannelActivation(Tokens('blocks.0', prefix=2), 3)"] + common)
    assert args.run(args) == 2
    err = capsys.readouterr().err
    assert "Tokens('blocks.0', prefix=2)" in err and "(1, 26, 48)" in err  # 40 px input
    assert "Traceback" not in err
