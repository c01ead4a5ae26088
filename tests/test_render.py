"""Tests of fastobj.render: parameterizations, transforms, the loop, the command, the parser.

Everything runs on the CPU with the small demo CNN and a few steps on tiny images.
"""
from __future__ import annotations

import argparse
import struct

import pytest
import torch
from torch import nn

from fastobj.loss import default_loss_summarize
from fastobj.objectives import L2, ChannelActivation, DeepDream, Diversity, TotalVariation
from fastobj.render import (
    FFTImage,
    Jitter,
    PixelImage,
    RandomAffine,
    RandomRotation,
    RandomScale,
    default_transforms,
    demo_cnn,
    lucent_objective,
    make_grid,
    make_parameterization,
    parse_objective,
    render,
    save_png,
)
from fastobj.render import cli as render_cli
from fastobj.render.expression import OBJECTIVE_NAMES


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# --------------------------------------------------------------------------- parameterizations

@pytest.mark.parametrize("kind", ["fft", "pixel"])
@pytest.mark.parametrize("decorrelate", [True, False])
def test_parameterization_range_shape_and_per_sample_start(kind, decorrelate):
    param = make_parameterization(kind, 5, (12, 17), decorrelate=decorrelate, seed=3)
    img = param()
    assert img.shape == (5, 3, 12, 17)
    assert torch.isfinite(img).all() and img.min() >= 0 and img.max() <= 1
    flat = img.detach().flatten(1)
    for i in range(1, 5):  # every sample has its own start
        assert not torch.equal(flat[0], flat[i])
    again = make_parameterization(kind, 5, (12, 17), decorrelate=decorrelate, seed=3)()
    assert torch.equal(img.detach(), again.detach())
    other = make_parameterization(kind, 5, (12, 17), decorrelate=decorrelate, seed=4)()
    assert not torch.equal(img.detach(), other.detach())


def test_fft_image_spectrum_scaling_and_gradient():
    param = FFTImage(2, 16, decorrelate=False, sd=0.0)
    with torch.no_grad():
        param.spectrum.zero_()
        param.spectrum[0, 0, 0, 0, 0] = 1.0  # the DC coefficient alone: a flat image
    raw = param.raw().detach()
    assert torch.allclose(raw[0, 0], raw[0, 0, 0, 0].expand(16, 16))
    assert raw[1].abs().max() == 0
    # the lowest non-zero frequency gets a larger scale than the highest
    assert param.scale[0, 1] > param.scale[8, 8]
    param().sum().backward()
    assert param.spectrum.grad is not None and torch.isfinite(param.spectrum.grad).all()


# --------------------------------------------------------------------------- transforms

def test_transforms_are_drawn_per_sample():
    x = torch.rand(1, 3, 32, 32).expand(8, 3, 32, 32).contiguous()
    for transform in (default_transforms(), Jitter(4), RandomScale([0.8, 0.9, 1.1, 1.2]),
                      RandomRotation(30.0)):
        torch.manual_seed(0)
        y = transform(x)
        assert y.shape[0] == 8 and torch.isfinite(y).all()
        differing = sum(not torch.allclose(y[0], y[i]) for i in range(1, 8))
        assert differing >= 6, type(transform).__name__  # duplicates are possible, but rare


def test_transforms_seeded_and_shapes():
    x = torch.rand(4, 3, 20, 28, requires_grad=True)
    chain = default_transforms()
    outs = []
    for _ in range(2):
        for m in chain.modules():
            if hasattr(m, "generator"):
                m.generator = torch.Generator().manual_seed(7)
        outs.append(chain(x))
    assert outs[0].shape == (4, 3, 44, 52)
    assert torch.equal(outs[0], outs[1])
    outs[0].sum().backward()
    assert torch.isfinite(x.grad).all()


def test_random_affine_matches_its_steps_in_the_interior():
    x = torch.rand(3, 3, 24, 24)
    jitter = Jitter(2)
    jitter.generator = torch.Generator().manual_seed(1)
    exact = jitter(x)  # whole-pixel gather
    combined = RandomAffine(Jitter(2))
    combined.steps[0].generator = torch.Generator().manual_seed(1)
    assert torch.allclose(exact[..., 2:-2, 2:-2], combined(x)[..., 2:-2, 2:-2], atol=1e-5)
    half_turn = RandomRotation([180.0])(x)  # rotation about the centre
    assert torch.allclose(half_turn, x.flip(2, 3), atol=1e-5)


# --------------------------------------------------------------------------- the loop

def test_render_improves_objective_and_gives_valid_images():
    model = demo_cnn()
    objective = ChannelActivation("features.6", 3) - 1e-4 * TotalVariation("image")
    result = render(model, objective, batch_size=4, image_size=32, steps=24, lr=0.08,
                    progress=False, seed=0)
    assert result.images.shape == (4, 3, 32, 32)
    assert result.images.device.type == "cpu" and not result.images.requires_grad
    assert torch.isfinite(result.images).all()
    assert result.images.min() >= 0 and result.images.max() <= 1
    assert len(result.history) == 24 and all(isinstance(v, float) for v in result.history)
    first, last = sum(result.history[:4]) / 4, sum(result.history[-4:]) / 4
    assert last < first  # the minimised value (-objective) went down
    assert _no_hooks(model)


def test_render_with_pixel_param_sgd_and_callable_optimizer():
    model = demo_cnn()
    obj = DeepDream("features.3")
    for optimizer in ("sgd", torch.optim.AdamW):
        res = render(model, obj, batch_size=2, image_size=16, steps=2, param="pixel",
                     optimizer=optimizer, transforms=None, progress=False)
        assert res.images.shape == (2, 3, 16, 16) and len(res.history) == 2
    with pytest.raises(ValueError, match="optimizer"):
        render(model, obj, batch_size=2, image_size=16, steps=1, optimizer="lbfgs-ish",
               progress=False)


def test_image_side_targets():
    model = demo_cnn()
    param = PixelImage(3, 16, seed=0)
    seen = {}

    class Spy:
        target = ["image", param, "features.1"]

        def __call__(self, acts):
            seen.update({k if isinstance(k, str) else "param": v for k, v in acts.items()})
            return (L2("image", 0.5)(acts) + DeepDream(param)(acts).mean()
                    + acts["features.1"].mean())

    render(model, Spy(), param=param, steps=1, progress=False)
    assert seen["image"].shape == (3, 3, 16, 16)  # the image before the transforms
    assert torch.equal(seen["image"], seen["param"])
    assert seen["features.1"].shape[-1] == 40  # after 12 px of padding on each side
    assert _no_hooks(model) and not param._forward_hooks


def test_unknown_target_and_cpu_autocast_are_refused():
    model = demo_cnn()
    with pytest.raises(ValueError, match="features.42"):
        render(model, DeepDream("features.42"), steps=1, progress=False)
    with pytest.raises(ValueError, match="CUDA"):
        render(model, DeepDream("features.1"), steps=1, progress=False, autocast_bf16=True)
    with pytest.raises(ValueError, match="transforms='none'"):
        render(model, DeepDream("features.1"), steps=1, progress=False, transforms="none")
    stray = nn.Conv2d(3, 3, 1)  # a module target that never runs
    with pytest.raises(RuntimeError, match="no activation"):
        render(model, DeepDream(stray), steps=1, progress=False)
    assert _no_hooks(model) and not stray._forward_hooks


def _flags(model):
    return ([p.requires_grad for p in model.parameters()], [m.training for m in model.modules()])


class _Exploding:
    """An objective that raises on its ``after``-th call."""

    def __init__(self, exc: BaseException, after: int = 2):
        self.exc, self.after, self.calls = exc, after, 0
        self.inner = ChannelActivation("features.4", 1)

    @property
    def target(self):
        return self.inner.target

    def __call__(self, acts):
        self.calls += 1
        if self.calls >= self.after:
            raise self.exc
        return self.inner(acts)


@pytest.mark.parametrize("exc", [None, RuntimeError("boom"), KeyboardInterrupt()])
def test_model_is_restored(exc):
    model = demo_cnn().train()
    model.features[2].eval()  # a mixed mode must come back as it was
    model.classifier.weight.requires_grad_(False)
    before = _flags(model)
    if exc is None:
        render(model, DeepDream("features.4"), batch_size=2, image_size=16, steps=2,
               progress=False)
    else:
        with pytest.raises(type(exc)):
            render(model, _Exploding(exc), batch_size=2, image_size=16, steps=5,
                   progress=False, stop_early=True)
    assert _flags(model) == before
    assert _no_hooks(model)


class _Counter(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_stop_early_skips_later_layers_and_keeps_results():
    model = demo_cnn()
    model.features[4] = _Counter(model.features[4])  # right after the target features.3
    model.pool = _Counter(model.pool)
    obj = ChannelActivation("features.3", 2) + 0.5 * Diversity("features.1")
    kw = dict(batch_size=3, image_size=16, steps=3, progress=False, seed=5)
    early = render(model, obj, stop_early=True, **kw)
    assert model.features[4].calls == 0 and model.pool.calls == 0
    full = render(model, obj, stop_early=False, **kw)
    assert model.features[4].calls == 3 and model.pool.calls == 3
    assert early.history == pytest.approx(full.history, rel=1e-6)
    assert torch.allclose(early.images, full.images)
    render(model, L2("image", 0.5), stop_early=True, **kw)  # image-side only: no model pass
    assert model.features[4].calls == 3 and model.pool.calls == 3
    assert _no_hooks(model)


@pytest.mark.gpu
def test_render_cuda_bf16_autocast():
    model = demo_cnn().cuda()
    res = render(model, ChannelActivation("features.6", 3) + 0.5 * Diversity("features.5"),
                 batch_size=8, image_size=32, steps=4, autocast_bf16=True, progress=False)
    assert torch.isfinite(res.images).all() and len(res.history) == 4
    assert all(v == v for v in res.history)  # no NaN
    assert _no_hooks(model)


# --------------------------------------------------------------------------- the command

def _run_cli(argv):
    parser = argparse.ArgumentParser()
    render_cli.add_arguments(parser)
    args = parser.parse_args(argv)
    return args.run(args)


def _png_size(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_command_writes_png_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    rc = _run_cli(["ChannelActivation('features.6', 1) - 1e-4 * TotalVariation('image')",
                   "--steps", "2", "--batch-size", "4", "--size", "24", "--seed", "1",
                   "--out", str(out), "--no-progress"])
    assert rc == 0
    assert _png_size(out) == (2 * (24 + 2) + 2, 2 * (24 + 2) + 2)  # 2x2 grid, 2 px gaps
    assert "wrote" in capsys.readouterr().out


def test_fastobj_main_render(tmp_path):
    from fastobj.cli import main

    out = tmp_path / "main.png"
    rc = main(["render", "--objective", "DeepDream('features.1')", "--steps", "1",
               "--batch-size", "3", "--size", "16", "--out", str(out), "--no-progress"])
    assert rc == 0 and _png_size(out) == (2 * 18 + 2, 2 * 18 + 2)


def test_png_round_trip(tmp_path):
    import numpy as np
    from PIL import Image as pil

    images = torch.rand(5, 3, 7, 9)
    grid = make_grid(images, padding=1)
    assert grid.shape == (3, 2 * 8 + 1, 3 * 10 + 1)
    path = tmp_path / "round_trip.png"
    save_png(grid, str(path))
    decoded = torch.from_numpy(np.array(pil.open(path).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(decoded, (grid * 255).round().to(torch.uint8))


@pytest.mark.parametrize("argv, message", [
    (["DeepDream('features.1')", "--model", "no_such_package_xyz.mod:build"], "cannot import"),
    (["DeepDream('features.1')", "--model", "fastobj.render.demo:no_such_factory"],
     "no attribute"),
    (["DeepDream('features.1')", "--model", "fastobj.render.demo"], "import path"),
    (["DeepDream('features.1')", "--weights", "/nonexistent/w.pt"], "no such file"),
    (["__import__('os').system('true')"], "not allowed"),
    (["DeepDream('features.99')"], "features.99"),
    (["ChannelActivation('features.6', 99)"], "channel_index=99"),  # found at the first step
    (["DeepDream('features.1')", "--objective", "DeepDream('features.2')"], "not both"),
])
def test_command_usage_errors(argv, message, capsys, tmp_path):
    rc = _run_cli(argv + ["--steps", "1", "--out", str(tmp_path / "x.png"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_command_weights(tmp_path, capsys):
    good, junk, wrong = tmp_path / "good.pt", tmp_path / "junk.pt", tmp_path / "wrong.pt"
    torch.save(demo_cnn(seed=9).state_dict(), good)
    junk.write_bytes(b"not a torch file")
    torch.save({"something": torch.zeros(2)}, wrong)
    model = render_cli.load_model(render_cli.DEFAULT_MODEL)
    render_cli.load_weights(model, str(good))
    assert torch.equal(model.features[0].weight, demo_cnn(seed=9).features[0].weight)
    for path in (junk, wrong):
        rc = _run_cli(["--weights", str(path), "--steps", "1", "--no-progress",
                       "--out", str(tmp_path / "x.png")])
        err = capsys.readouterr().err
        assert rc == 2 and "--weights" in err and "Traceback" not in err


# --------------------------------------------------------------------------- expressions

def test_expression_builds_objectives():
    obj = parse_objective("ChannelActivation('features.3', 5) + 1e2 * Diversity('features.3')")
    assert obj.target == ["features.3"]
    obj = parse_objective("-ChannelActivation(target='features.1', channel_index=2 ** 2, "
                          "batch_index=[0, 2]) - 0.1 * TotalVariation('image') / 2")
    assert set(obj.target) == {"features.1", "image"}
    acts = {"features.1": torch.rand(3, 8, 5, 5), "image": torch.rand(3, 3, 5, 5)}
    expected = (-ChannelActivation("features.1", 4, batch_index=[0, 2])(acts).mean()
                - 0.1 * TotalVariation("image")(acts) / 2)
    assert torch.allclose(obj(acts), expected)
    direction = parse_objective("Direction('features.1', [1.0, 0.0, -1.0, 0.5])")
    value = direction({"features.1": torch.rand(2, 4, 3, 3)})
    assert torch.isfinite(value).all()


@pytest.mark.parametrize("source, construct", [
    ("__import__('os').system('echo hacked')", "attribute access"),
    ("__import__('os')", "__import__"),
    ("ChannelActivation('a', 1).__class__", "attribute access"),
    ("open('/etc/passwd')", "open"),
    ("eval('1')", "eval"),
    ("x + ChannelActivation('a', 1)", "name 'x'"),
    ("[c for c in 'ab']", "list comprehension"),
    ("(lambda: 1)()", "lambda"),
    ("ChannelActivation('a', 1)[0]", "subscript"),
    ("ChannelActivation('a', [1][0])", "subscript"),
    ("ChannelActivation(*['a', 1])", "starred"),
    ("ChannelActivation(**{'target': 'a'})", "unpacking"),
    ("ChannelActivation('a', 1) // 2", "FloorDiv"),
    ("ChannelActivation('a', 1) if 1 else 0", "conditional"),
    ("ChannelActivation", "without a call"),
    ("{'a': 1}", "dict"),
    ("f'{ChannelActivation}'", "f-string"),
    ("ChannelActivation('a', 1) < 2", "comparison"),
    ("10 ** 10 ** 10 * ChannelActivation('a', 1)", "too large"),
    ("'a' * 3", "str"),
    ("1 + 2", "not an objective"),
    ("ChannelActivation('a',", "syntax"),
])
def test_expression_refuses(source, construct):
    with pytest.raises(ValueError, match="objective expression") as info:
        parse_objective(source)
    assert construct in str(info.value)


def test_expression_checked_before_anything_runs():
    calls = []

    def recorder(*args, **kwargs):
        calls.append(args)
        return ChannelActivation("a", 0)

    with pytest.raises(ValueError, match="attribute access"):
        parse_objective("ChannelActivation('a', 1) + ChannelActivation('b', 2).x",
                        namespace={"ChannelActivation": recorder})
    assert calls == []
    assert len(OBJECTIVE_NAMES) == 18


# --------------------------------------------------------------------------- interoperability

@pytest.mark.parametrize("script", ["lucent_style_loop.py", "captum_style_loop.py"])
def test_examples_run(script, capsys):
    import pathlib
    import runpy

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / script
    runpy.run_path(str(path), run_name="__main__")
    assert "images: (4, 3, 48, 48)" in capsys.readouterr().out


def test_lucent_adapter_matches_direct_call():
    acts = {"features_3": torch.rand(2, 6, 4, 4)}
    obj = ChannelActivation("features_3", 2) + 0.5 * DeepDream("features_3")
    lucent_fn = lucent_objective(obj)
    assert torch.allclose(lucent_fn(lambda name: acts[name]), default_loss_summarize(obj(acts)))
