"""Tests of rendering real networks: preprocessing, named models, layer listing, the
``layer:channel`` shorthand, intermediate images and callbacks, and the written grids.

The pretrained EfficientNet-Lite0 is used where the ``models`` extra is installed; otherwise
those cases use a small stand-in (the demo CNN declaring the same preprocessing). Everything
runs on tiny images for one or two steps.
"""
from __future__ import annotations

import argparse
import socket
import struct

import pytest
import torch
import torch.nn.functional as F

from fastobj.objectives import ChannelActivation, Diversity
from fastobj.render import (
    Preprocess,
    demo_cnn,
    list_layers,
    make_grid,
    model_preprocess,
    parse_objective,
    render,
    upscale,
)
from fastobj.render import cli as render_cli
from fastobj.render.expression import channel_shorthand
from fastobj.render.models import NAMED_MODELS, efficientnet_lite0, format_layers
from fastobj.render.png import LABEL_HEIGHT
from fastobj.render.preprocess import IMAGENET_MEAN, IMAGENET_STD, parse_normalize

try:
    import efficientnet_lite_pytorch  # noqa: F401
    HAVE_MODELS = True
except ImportError:
    HAVE_MODELS = False


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _stand_in():
    """The demo CNN declaring a pretrained network's preprocessing (input size, ImageNet)."""
    model = demo_cnn()
    model.fastobj_input_size = (40, 36)
    model.fastobj_normalize = "imagenet"
    return model


@pytest.fixture(scope="module")
def network():
    """(model, layer, channels of that layer, input size): the real network where installed."""
    if HAVE_MODELS:
        return efficientnet_lite0(), "_blocks.10", 112, (224, 224)
    return _stand_in(), "features.6", 48, (40, 36)


def _run(add, argv):
    parser = argparse.ArgumentParser()
    add(parser)
    args = parser.parse_args(argv)
    return args.run(args)


def _png_size(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


# --------------------------------------------------------------------------- preprocessing

def test_preprocess_matches_float64_reference_with_gradients():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 13, 17, generator=g, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 3, 19, 11, generator=g, dtype=torch.float64)
    prep = Preprocess((19, 11), "imagenet")
    out = prep(x)
    # Height grows (plain bilinear), width shrinks (antialiased): the reference does the same.
    ref_x = x.detach().clone().requires_grad_()
    resized = F.interpolate(ref_x, size=(19, 11), mode="bilinear", align_corners=False,
                            antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    ref = (resized - mean) / std
    assert torch.allclose(out, ref, rtol=1e-12, atol=1e-12)
    (out * upstream).sum().backward()
    (ref * upstream).sum().backward()
    assert torch.allclose(x.grad, ref_x.grad, rtol=1e-12, atol=1e-12)
    # Each output pixel's weights sum to one, so the input gradient sums to the upstream's.
    assert torch.allclose(x.grad.sum(dim=(2, 3)), (upstream / std).sum(dim=(2, 3)))
    grey = Preprocess(None, "0.25,0.5")(torch.full((1, 3, 3, 5), 0.75))
    assert torch.allclose(grey, torch.ones(1, 3, 3, 5))
    assert Preprocess().is_identity


@pytest.mark.parametrize("value, mean", [
    ("imagenet", IMAGENET_MEAN), ("0.5,0.2", (0.5, 0.5, 0.5)),
    ("0.1,0.2,0.3,1,2,3", (0.1, 0.2, 0.3)), (((0.4,), (0.5,)), (0.4, 0.4, 0.4))])
def test_parse_normalize_forms(value, mean):
    parsed_mean, std = parse_normalize(value)
    assert torch.allclose(parsed_mean.flatten(), torch.tensor(mean, dtype=torch.float64))
    assert (std > 0).all()
    assert parse_normalize("none") is None and parse_normalize(None) is None


@pytest.mark.parametrize("value, exc", [("imagenett", ValueError), ("1,2,3", ValueError),
                                        ("0.5,0", ValueError), (0.5, TypeError)])
def test_parse_normalize_refuses(value, exc):
    with pytest.raises(exc, match="normalize|Preprocess"):
        parse_normalize(value)


def test_render_feeds_the_model_its_declared_input():
    model = _stand_in()
    seen = []
    handle = model.features[0].register_forward_pre_hook(
        lambda m, inputs: seen.append(inputs[0].detach()))
    render(model, "features.6:3", batch_size=2, image_size=12, steps=1, progress=False)
    assert seen[-1].shape == (2, 3, 40, 36)
    render(model, "features.6:3", batch_size=2, image_size=12, steps=1, progress=False,
           preprocess=None)  # no preprocessing: the transforms' 12 + 2 * 12 pixels
    assert seen[-1].shape == (2, 3, 36, 36) and seen[-1].min() >= 0
    prep = Preprocess(16, "imagenet")
    start = render(model, "features.6:3", batch_size=1, image_size=12, steps=1, progress=False,
                   preprocess=prep, transforms=None, thresholds=(0,)).intermediate[0]
    assert torch.allclose(seen[-1], prep(start))  # the first step's input
    handle.remove()
    assert model_preprocess(model, 20, "none").size == (20, 20)
    with pytest.raises(ValueError, match="preprocess"):
        render(model, "features.6:3", steps=1, progress=False, preprocess="imagenet")


# --------------------------------------------------------------------------- named models

def test_missing_models_extra_names_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(ImportError, match=r"fastobj\[models\]"):
        efficientnet_lite0()
    rc = _run(render_cli.add_layers_arguments, ["--model", "efficientnet_lite0"])
    err = capsys.readouterr().err
    assert rc == 2 and "fastobj[models]" in err and "Traceback" not in err


@pytest.mark.skipif(not HAVE_MODELS, reason="the models extra is not installed")
def test_efficientnet_lite0_builds_offline_without_touching_the_rng(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    state = torch.get_rng_state()
    model = NAMED_MODELS["efficientnet_lite0"]()
    assert torch.equal(torch.get_rng_state(), state)
    assert model.fastobj_input_size == 224 and model.fastobj_normalize == "imagenet"
    assert not model.training
    # The pretrained weights, not a fresh initialisation: BatchNorm statistics were loaded.
    assert not torch.equal(model._bn0.running_var, torch.ones_like(model._bn0.running_var))


def test_list_layers_in_forward_order(network):
    model, layer, channels, size = network
    model.train()
    try:
        layers = list_layers(model)
        assert all(m.training for m in model.modules())  # the flags came back
    finally:
        model.eval()
    assert _no_hooks(model)
    by_name = {info.name: info for info in layers}
    assert by_name[layer].channels == channels and by_name[layer].calls == 1
    parent = layer.rpartition(".")[0]
    siblings = [info.name for info in layers if info.name.rpartition(".")[0] == parent
                and info.name.rpartition(".")[2].isdigit()]
    assert len(siblings) > 1
    assert siblings == sorted(siblings, key=lambda name: int(name.rpartition(".")[2]))
    if HAVE_MODELS:
        assert by_name["_blocks.14"].channels == 192 and by_name["_blocks.14"].shape[1:] == (7, 7)
    table = format_layers(layers)
    assert table.splitlines()[0].split() == ["name", "type", "output", "shape", "channels"]


def test_layers_command_demo(capsys):
    assert _run(render_cli.add_layers_arguments, ["--size", "32"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert lines["features.6"][2:] == ["48x8x8", "48"]  # 32 -> 16 -> 8 by two stride-2 convs
    assert list(lines)[:2] == ["features", "features.0"] and "classifier" in lines


# --------------------------------------------------------------------------- shorthand

def test_channel_shorthand_forms():
    obj = parse_objective("_blocks.10:17")
    assert isinstance(obj, ChannelActivation)
    assert obj.target == "_blocks.10" and obj.channel_index == 17
    assert parse_objective("  features.6:-1 ").channel_index == -1
    combined = parse_objective("'features.6:3' + 10 * Diversity('features.6')")
    acts = {"features.6": torch.rand(3, 5, 4, 7, generator=torch.Generator().manual_seed(1))}
    expected = ChannelActivation("features.6", 3)(acts).mean() + 10 * Diversity("features.6")(acts)
    assert torch.allclose(combined(acts), expected)
    negated = parse_objective("-'features.6:2'")
    assert torch.allclose(negated(acts), -acts["features.6"][:, 2])
    assert channel_shorthand("features.6") is None and channel_shorthand("a:b") is None
    with pytest.raises(ValueError, match="arithmetic on a str"):
        parse_objective("'features.6' + 1")


def test_render_command_shorthand_save_at_and_scale(network, tmp_path, capsys):
    model, layer, channels, _ = network
    spec = "efficientnet_lite0" if HAVE_MODELS else "fastobj.render.demo:demo_cnn"
    out = tmp_path / "r.png"
    argv = [f"{layer}:{channels - 1}", "--model", spec, "--batch-size", "1", "--size", "16",
            "--steps", "2", "--save-at", "0,1", "--scale", "3", "--stop-early",
            "--no-progress", "--out", str(out)]
    if not HAVE_MODELS:
        argv += ["--model-size", "40", "--normalize", "imagenet"]
    assert _run(render_cli.add_arguments, argv) == 0
    side = 3 * (16 + 4)  # one tile with its 2 px border, tripled
    for path in (out, tmp_path / "r_0000.png", tmp_path / "r_0001.png"):
        assert _png_size(path) == (side, side)
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["features.6:3", "--normalize", "bogus"], "--normalize"),
    (["features.6:3", "--save-at", "1,9"], "--save-at"),
    (["features.6:3", "--scale", "0"], "--scale"),
    (["features.6:3", "--model-size", "0"], "--model-size"),
    (["features.60:3"], "features.60"),
])
def test_render_command_refuses(argv, message, tmp_path, capsys):
    rc = _run(render_cli.add_arguments, argv + ["--steps", "2", "--no-progress",
                                                "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


# --------------------------------------------------------------------------- watching

def test_thresholds_and_callback():
    model = demo_cnn()
    calls = []
    result = render(model, "features.6:3", batch_size=2, image_size=10, steps=3,
                    thresholds=(0, 2, 3), progress=False,
                    callback=lambda step, loss, images: calls.append((step, loss, images)))
    assert sorted(result.intermediate) == [0, 2, 3]
    assert torch.equal(result.intermediate[3], result.images)
    assert torch.equal(calls[-1][2], result.images)  # the callback sees each step's result
    assert not torch.equal(result.intermediate[0], result.intermediate[2])
    assert [c[0] for c in calls] == [1, 2, 3]
    assert [float(c[1]) for c in calls] == result.history
    assert all(c[2].shape == (2, 3, 10, 10) for c in calls)
    for bad in ((4,), (-1,), (1.5,)):
        with pytest.raises(ValueError, match="thresholds"):
            render(model, "features.6:3", steps=3, thresholds=bad, progress=False)


def test_grid_labels_and_upscale():
    images = torch.rand(5, 3, 9, 11, generator=torch.Generator().manual_seed(2)) * 0.5 + 0.5
    grid = make_grid(images, nrow=3, padding=1, labels=["0", "17", "-3", "4", "123"])
    assert grid.shape == (3, 2 * (9 + LABEL_HEIGHT + 1) + 1, 3 * (11 + 1) + 1)
    assert torch.equal(grid[:, 1:10, 1:12], images[0])
    label_row = grid[:, 10:10 + LABEL_HEIGHT, 1:12]
    assert (label_row == 0).any() and (label_row == 1).any()  # black ink on white
    assert int((label_row == 0).sum()) == 3 * 12 * 4  # "0": 12 ink pixels of 2x2, 3 colours
    assert (label_row[:, 2:4, 0:2] == 0).all() and (label_row[:, 4:6, 2:4] == 1).all()
    with pytest.raises(ValueError, match="labels"):
        make_grid(images, labels=["a"] * 5)
    with pytest.raises(ValueError, match="labels for"):
        make_grid(images, labels=["1"])
    big = upscale(images[0], 3)
    assert big.shape == (3, 27, 33) and torch.equal(big[:, ::3, ::3], images[0])
    assert torch.equal(big[:, 1::3, 2::3], images[0])
    with pytest.raises(ValueError, match="factor"):
        upscale(images[0], 0)


def test_fastobj_main_has_layers_and_atlas(capsys):
    from fastobj.cli import build_parser, main

    assert main(["layers", "--size", "16"]) == 0
    assert "features.6" in capsys.readouterr().out
    args = build_parser().parse_args(["atlas", "features.6", "--out", "x"])
    assert args.run is render_cli.run_atlas and args.batch_size == 16
