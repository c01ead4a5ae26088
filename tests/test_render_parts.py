"""Tests of the render parts: image objects (MACO included), views, the step, the callbacks,
the anchor of feature accentuation, and ``render()`` assembling them.

Everything runs on the CPU with the demo CNN and tiny images; references are float64
computations written out here from the definitions.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fastobj.loss import default_loss_summarize
from fastobj.objectives import L2, ChannelActivation, Diversity
from fastobj.render import (
    RECIPES,
    ActivationProbe,
    Anchor,
    FFTImage,
    MacoImage,
    Noise,
    PixelImage,
    RandomCrop,
    RenderStep,
    Snapshots,
    Transparency,
    Views,
    demo_cnn,
    fit_picture,
    make_optimizer,
    render,
    run_steps,
    split_view_sets,
    transparency_alpha,
)
from fastobj.render.accentuate import activation_distance


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _magnitude(size=(12, 10)):
    g = torch.Generator().manual_seed(3)
    return torch.rand((3, size[0], size[1] // 2 + 1), generator=g) + 0.1


# --------------------------------------------------------------------------- image objects

def test_maco_magnitude_stays_fixed_while_the_phase_moves():
    magnitude = _magnitude()
    image = MacoImage(2, (12, 10), magnitude=magnitude, seed=1, decorrelate=False)
    start_phase = torch.angle(torch.fft.rfft2(image.raw().detach().double()))
    opt = torch.optim.SGD(image.parameters(), lr=5.0)
    target = torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(2))
    for _ in range(3):
        opt.zero_grad()
        ((image() - target) ** 2).sum().backward()
        opt.step()
    spectrum = torch.fft.rfft2(image.raw().detach().double())
    # The raw image is standardised: its magnitude is r times one factor per sample, except
    # where the inverse FFT folds a coefficient onto its conjugate (columns 0 and W/2) and at
    # the mean (removed by the standardisation).
    ratio = spectrum.abs()[..., 1:5] / magnitude.double()[..., 1:5]
    per_sample = ratio.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample), rtol=1e-5)
    moved = (torch.angle(spectrum) - start_phase)[..., 1:5].abs()
    assert moved.max() > 0.1  # the phase did change
    std = image.raw().detach().double().flatten(1).std(dim=1)
    assert torch.allclose(std, torch.ones(2, dtype=torch.float64), atol=1e-5)


def test_maco_image_refuses_a_start_and_a_wrong_magnitude():
    image = MacoImage(1, (12, 10), magnitude=_magnitude())
    with pytest.raises(ValueError, match="cannot start from a picture"):
        image.start_from(torch.rand(3, 12, 10))
    with pytest.raises(ValueError, match=r"shape \(3, 12, 6\)"):
        MacoImage(1, (12, 10), magnitude=torch.ones(3, 12, 5))
    with pytest.raises(ValueError, match="non-negative"):
        MacoImage(1, (12, 10), magnitude=-_magnitude())


def test_maco_samples_do_not_depend_on_the_rest_of_the_batch():
    both = MacoImage(2, (12, 10), magnitude=_magnitude(), seed=4)
    one = MacoImage(1, (12, 10), magnitude=_magnitude())
    with torch.no_grad():
        one.phase.copy_(both.phase[1:])
    assert torch.allclose(one()[0], both()[1], atol=1e-6)


@pytest.mark.parametrize("cls", [FFTImage, PixelImage])
@pytest.mark.parametrize("decorrelate", [True, False])
def test_start_from_reproduces_the_pictures(cls, decorrelate):
    pictures = torch.rand(3, 3, 11, 14, generator=torch.Generator().manual_seed(0))
    pictures[0, 0, 0, 0], pictures[1, 1, 2, 3] = 0.0, 1.0  # the ends of the range
    image = cls(3, (11, 14), decorrelate=decorrelate, value_range=(-1.0, 2.0))
    image.start_from(pictures * 3 - 1)
    margin = 3 * 0.5 / 255  # values at the ends move half an 8-bit step inside
    assert torch.allclose(image().detach(), pictures * 3 - 1, atol=margin + 1e-5)


def test_image_objects_know_their_seed_size_and_range():
    image = FFTImage(2, (5, 7), seed=11, value_range=(-2.5, 2.5))
    assert (image.batch, image.size, image.seed, image.value_range) == (2, (5, 7), 11, (-2.5, 2.5))
    out = image()
    assert out.min() >= -2.5 and out.max() <= 2.5
    assert torch.equal(FFTImage(2, (5, 7), seed=11).spectrum, image.spectrum)
    for batch, size, value_range in ((0, 4, (0, 1)), (1, 4, (1.0, 1.0)), (1, (0, 3), (0, 1))):
        with pytest.raises(ValueError, match="FFTImage"):
            FFTImage(batch, size, value_range=value_range)


# --------------------------------------------------------------------------- views

def test_views_are_view_major_and_replay_draws_the_same_views():
    images = torch.rand(2, 3, 16, 12)
    views = Views(3, RandomCrop((0.4, 0.6), 0.2, output_size=8), None, Noise(0.1, 0.05), seed=7)
    out = views(images)
    assert out.shape == (6, 3, 8, 8)
    again = views.replay(images)
    assert torch.equal(out, again)
    assert not torch.equal(views(images), out)  # the generator moved on
    plain = Views(3, None, None, None, seed=0)(images)
    for k in range(3):  # rows k*B .. k*B + B-1 are view k of images 0 .. B-1
        assert torch.equal(plain[k * 2:(k + 1) * 2], images)


def test_random_crop_stays_inside_and_crops_what_it_says():
    crop = RandomCrop((0.25, 0.3), 0.5)
    crop.generator = torch.Generator().manual_seed(0)
    boxes = crop.boxes(500)
    side, cx, cy = boxes.unbind(1)
    assert bool((side >= 0.25).all() and (side <= 0.3).all())
    for centre in (cx, cy):
        assert bool((centre - side / 2 >= 0).all() and (centre + side / 2 <= 1).all())
    # a crop of the left half, resampled at the same size, is a 2x stretch of that half
    ramp = torch.arange(8, dtype=torch.float64).expand(1, 3, 8, 8).clone()
    half = RandomCrop((0.5, 0.5), 0.0)
    half.boxes = lambda n: torch.tensor([[0.5, 0.25, 0.5]], dtype=torch.float64).expand(n, 3)
    out = half(ramp)
    # output pixel centres read x = -0.25, 0.25, ..., 3.25 (the border clamps the first)
    assert torch.allclose(out[0, 0, 4], torch.tensor([0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75,
                                                       3.25], dtype=torch.float64))


def test_split_view_sets():
    acts = {"a": torch.arange(12.0).view(6, 2), "img": torch.zeros(3, 1)}
    sets = split_view_sets(acts, 2, 3, whole=("img",))
    assert torch.equal(sets[1]["a"], acts["a"][3:]) and sets[1]["img"] is acts["img"]
    with pytest.raises(ValueError, match="needs 6 rows"):
        split_view_sets({"a": torch.zeros(5, 2)}, 2, 3)


class _Recorder:
    """An objective that records what each view set shows it, and returns a known value."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []

    @property
    def target(self):
        return self.inner.target

    def __call__(self, acts):
        self.seen.append({k: v.detach().clone() for k, v in acts.items()})
        return self.inner(acts)


def test_every_view_carries_its_images_target():
    model = demo_cnn()
    channels = [1, 4, 9]
    recorder = _Recorder(ChannelActivation("features.6", channels))
    result = render(model, recorder, batch_size=3, image_size=16, steps=1, views=4,
                    transforms=None, lr=0.0, progress=False)
    assert len(recorder.seen) == 4  # one evaluation per view set
    for view_set in recorder.seen:  # without transforms every view equals its image
        assert torch.allclose(view_set["features.6"], recorder.seen[0]["features.6"])
    acts = recorder.seen[0]["features.6"].double()
    expected = -torch.stack([acts[b, c].mean() for b, c in enumerate(channels)]).mean()
    assert result.history[0] == pytest.approx(float(expected), rel=1e-6)


def test_diversity_compares_images_not_views_of_one_image():
    model = demo_cnn()
    objective = Diversity("features.3")
    one = render(model, objective, batch_size=3, image_size=16, steps=1, lr=0.0,
                 transforms=None, progress=False)
    four = render(model, objective, batch_size=3, image_size=16, steps=1, lr=0.0,
                  transforms=None, views=4, progress=False)
    # Four identical views: Diversity of the view sets equals that of the images. Comparing
    # every view with every other would add the (maximal) similarity of an image to itself.
    assert four.history[0] == pytest.approx(one.history[0], rel=1e-6)


def test_max_batch_bounds_passes_not_the_result():
    model = demo_cnn()
    objective = ChannelActivation("features.6", [1, 2, 3]) + 0.5 * Diversity("features.5")
    kw = dict(batch_size=3, image_size=20, steps=3, views=4, optimizer="sgd", lr=2.0,
              progress=False, transparency=True)
    whole = render(model, objective, max_batch=None, **kw)
    for max_batch in (1, 2, 3, 6, 9, "auto"):  # slices of one view set, passes of 1, 2, 3
        parts = render(model, objective, max_batch=max_batch, **kw)
        assert parts.history == pytest.approx(whole.history, rel=1e-5)
        assert torch.allclose(parts.images, whole.images, atol=1e-5)
        assert torch.allclose(parts.transparency, whole.transparency, rtol=1e-4,
                              atol=1e-6 * whole.transparency.max())
    for bad in (0, "half"):
        with pytest.raises(ValueError, match="max_batch"):
            render(model, objective, max_batch=bad, **kw)


def test_channels_last_views_give_the_same_render():
    model = demo_cnn()
    kw = dict(batch_size=2, image_size=20, steps=2, optimizer="sgd", lr=2.0, progress=False)
    plain = render(model, "features.6:3", channels_last=False, **kw)
    nhwc = render(model, "features.6:3", channels_last=True, **kw)
    assert torch.allclose(plain.images, nhwc.images, atol=1e-5)
    assert nhwc.history == pytest.approx(plain.history, rel=1e-5)

    class Viewing(nn.Module):  # a model that .view()s a convolution's output
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = self.conv(x)
            return y.view(y.shape[0], -1)

    with pytest.raises(RuntimeError, match="channels_last=False"):
        render(Viewing(), "conv:1", channels_last=True, **kw)
    render(Viewing(), "conv:1", channels_last=False, **kw)


# --------------------------------------------------------------------------- step, callbacks

def test_render_step_matches_a_float64_reference_gradient():
    model = demo_cnn().double().requires_grad_(False)
    image = PixelImage(2, (9, 13), seed=5).double()
    views = Views(2, None, None, None, seed=0)
    objective = ChannelActivation("features.4", [3, 7]) - 0.5 * L2("image", 0.2)
    with ActivationProbe(model, ["features.4"]) as probe:
        step = RenderStep(image, views, probe, objective, make_optimizer("sgd",
                          image.parameters(), 0.0), image_targets=["image"])
        state = step()
    x = image().detach().requires_grad_()
    acts = model.features[:5](torch.cat([x, x]))
    loss = sum(default_loss_summarize(objective({"features.4": a, "image": x}))
               for a in acts.split(2)) / 2
    (grad,) = torch.autograd.grad(loss, x)
    assert float(state.loss) == pytest.approx(float(loss.detach()), rel=1e-6)
    assert torch.allclose(state.image_grad.double(), grad, rtol=1e-5, atol=1e-12)


def test_transparency_accumulates_the_image_gradients():
    model = demo_cnn()
    grads = []
    result = render(model, "features.6:2", batch_size=2, image_size=12, steps=3,
                    transparency=True, progress=False,
                    callbacks=[lambda state: grads.append(state.image_grad.clone())])
    assert torch.allclose(result.transparency, sum(g.abs() for g in grads), rtol=1e-6)
    assert result.transparency.shape == (2, 3, 12, 12)


def test_transparency_alpha_known_values():
    total = torch.zeros(1, 3, 2, 5)
    total[0, :, 0] = torch.tensor([1.0, 2, 3, 4, 5])
    total[0, :, 1] = torch.tensor([6.0, 7, 8, 9, 10])
    total[0, 0] *= 2  # the channel mean is then 4/3 of the values above
    alpha = transparency_alpha(total, percentile=80)
    ceiling = 8 * 4 / 3  # the 8th of 10 values
    expected = torch.clamp(total[0].mean(0), max=ceiling) / ceiling
    assert torch.allclose(alpha[0], expected)
    assert torch.equal(transparency_alpha(torch.zeros(3, 4, 4)), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="percentile"):
        transparency_alpha(total, percentile=0)


def test_loop_closes_callbacks_on_error():
    closed = []

    class Closing:
        def __call__(self, state):
            raise RuntimeError("boom")

        def close(self):
            closed.append(True)

    model = demo_cnn()
    with pytest.raises(RuntimeError, match="boom"):
        render(model, "features.6:2", batch_size=1, image_size=12, steps=2, progress=False,
               callbacks=[Closing()])
    assert closed == [True] and _no_hooks(model)


def test_snapshots_and_run_steps_directly():
    model = demo_cnn()
    image = FFTImage(2, 14, seed=2)
    snapshots = Snapshots([0, 2])
    snapshots.start(image)
    with ActivationProbe(model, ["features.6"]) as probe:
        step = RenderStep(image, Views(1, seed=0), probe, ChannelActivation("features.6", 1),
                          make_optimizer("adam", image.parameters(), 0.05))
        losses = run_steps(step, 3, [snapshots, Transparency()])
    assert len(losses) == 3 and sorted(snapshots.images) == [0, 2]
    assert _no_hooks(model)


# --------------------------------------------------------------------------- recipes, checks

def test_maco_recipe_and_explicit_arguments_win():
    model = demo_cnn()
    result = render(model, "features.6:3", param="maco", batch_size=2, image_size=40, steps=1,
                    progress=False)
    assert result.views == RECIPES["maco"].views == 6
    assert isinstance(result.parameterization, MacoImage)
    seen = []
    render(model, "features.6:3", param="maco", batch_size=2, image_size=40, steps=1,
           views=2, lr=0.5, optimizer=lambda params, lr: seen.append(lr) or
           torch.optim.SGD(params, lr=lr), progress=False)
    assert seen == [0.5]


def test_a_ready_image_object_must_agree_with_the_arguments():
    model = demo_cnn()
    image = FFTImage(3, 16)
    for kw, message in ((dict(batch_size=4), "batch_size=4"), (dict(image_size=20),
                        "image_size=20"), (dict(decorrelate=False), "decorrelate=False")):
        with pytest.raises(ValueError, match=message):
            render(model, "features.6:3", param=image, steps=1, progress=False, **kw)
    result = render(model, "features.6:3", param=image, batch_size=3, image_size=16, steps=1,
                    progress=False)
    assert result.parameterization is image


def test_views_object_and_bad_arguments():
    model = demo_cnn()
    views = Views(2, None, None, None, seed=1)
    assert render(model, "features.6:3", batch_size=2, image_size=12, steps=1, views=views,
                  progress=False).views == 2
    with pytest.raises(ValueError, match="inside the Views"):
        render(model, "features.6:3", steps=1, views=views, transforms=None, progress=False)
    for kw, message in ((dict(views=0), "views"), (dict(steps=-1), "steps"),
                        (dict(batch_size=0), "batch_size")):
        with pytest.raises(ValueError, match=message):
            render(model, "features.6:3", image_size=12, progress=False, **kw)
    with pytest.raises(TypeError, match="param"):
        render(model, "features.6:3", param=3, steps=1, progress=False)
    assert _no_hooks(model)


# --------------------------------------------------------------------------- accentuation

def test_activation_distance_against_float64():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 5, 4, 7, generator=g), torch.randn(3, 5, 4, 7, generator=g)
    expected = ((a.double() - b.double()) ** 2).sum(1).sqrt().mean((1, 2))
    assert torch.allclose(activation_distance(a, b).double(), expected, rtol=1e-6)
    tokens = torch.randn(2, 6, 5, generator=g)
    expected = (tokens.double() ** 2).sum(2).sqrt().mean(1)
    assert torch.allclose(activation_distance(tokens, torch.zeros_like(tokens)).double(),
                          expected, rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        activation_distance(a, b[:2])


def test_anchor_balance_matches_the_gradient_ratio():
    model = demo_cnn().double().requires_grad_(False)
    pictures = torch.rand(2, 3, 10, 12, generator=torch.Generator().manual_seed(6),
                          dtype=torch.float64)
    image = PixelImage(2, (10, 12)).double().start_from(pictures)
    with torch.no_grad():  # move away from the picture so the anchor has a gradient
        image.pixels.add_(0.3 * torch.randn(image.pixels.shape,
                                             generator=torch.Generator().manual_seed(7)))
    objective = ChannelActivation("features.4", [2, 5])
    anchor = Anchor("features.2", pictures, weight=0.7)
    views = Views(1, None, None, None, seed=0)
    with ActivationProbe(model, ["features.4", "features.2"]) as probe, \
            ActivationProbe(model, ["features.2"], stop_early=True) as anchor_probe:
        step = RenderStep(image, views, probe, objective,
                          make_optimizer("sgd", image.parameters(), 0.0), anchor=anchor,
                          anchor_probe=anchor_probe)
        state = step()
    # Reference: the two gradients with respect to the parameters, per sample.
    x = image.pixels.detach().clone().requires_grad_()
    images = torch.sigmoid(torch.einsum("ij,bjhw->bihw", image.color_matrix, x))
    obj = default_loss_summarize(objective({"features.4": model.features[:5](images)}))
    (g_obj,) = torch.autograd.grad(obj, x, retain_graph=True)
    dist = activation_distance(model.features[:3](images), model.features[:3](pictures))
    (g_dist,) = torch.autograd.grad(dist.mean(), x)
    beta = g_obj.abs().flatten(1).sum(1) / g_dist.abs().flatten(1).sum(1)
    assert torch.allclose(anchor.balance_weights.double(), beta, rtol=1e-4)
    expected_loss = obj + 0.7 * (beta * dist).mean()
    assert float(state.loss) == pytest.approx(float(expected_loss.detach()), rel=1e-5)
    assert not anchor.needs_balance


def test_accentuation_starts_at_the_photo_and_balances():
    model = demo_cnn()
    photo = torch.rand(3, 18, 22, generator=torch.Generator().manual_seed(8))
    result = render(model, "features.6:3", start=photo, steps=0, progress=False)
    assert result.images.shape == (1, 3, 18, 22)
    assert torch.allclose(result.images[0], photo, atol=0.5 / 255 + 1e-5)
    result = render(model, "features.6:3", start=photo, batch_size=2, image_size=16, steps=3,
                    progress=False)
    assert result.anchor_weights.shape == (2,)
    assert bool(torch.isfinite(result.anchor_weights).all() and (result.anchor_weights > 0).all())
    off = render(model, "features.6:3", start=photo, anchor_weight=0, steps=1, progress=False)
    assert off.anchor_weights is None
    with pytest.raises(ValueError, match="anchor_layer"):
        render(model, L2("image"), start=photo, steps=1, progress=False)
    with pytest.raises(ValueError, match="2 start pictures for a batch of 3"):
        render(model, "features.6:3", start=torch.rand(2, 3, 8, 8), batch_size=3, steps=1,
               progress=False)
    assert _no_hooks(model)


def test_anchor_waits_for_a_gradient_before_balancing():
    images = torch.rand(2, 3, 4, 4, requires_grad=True)
    params = [images]
    anchor = Anchor("layer", torch.rand(2, 3, 4, 4), weight=2.0)
    objective_grad = torch.full((2, 3, 4, 4), 0.5)
    anchor_grad = torch.zeros(2, 3, 4, 4)
    anchor_grad[0] = 0.25  # sample 1's image still equals its picture: no gradient yet
    combined = anchor.balance(images, params, objective_grad, anchor_grad)
    assert anchor.balance_weights[0] == 2.0 and torch.isnan(anchor.balance_weights[1])
    assert anchor.needs_balance
    assert torch.allclose(combined[0], torch.full((3, 4, 4), 0.5 + 2.0 * 2.0 * 0.25))
    assert torch.equal(combined[1], objective_grad[1])
    assert float(anchor.penalty(torch.tensor([1.0, 5.0]))) == pytest.approx(2.0 * 2.0 / 2)
    anchor_grad[1] = 0.5
    anchor.balance(images, params, objective_grad, anchor_grad)
    assert anchor.balance_weights.tolist() == [2.0, 1.0] and not anchor.needs_balance


def test_fit_picture_crops_about_the_centre():
    wide = torch.zeros(1, 3, 4, 8)
    wide[..., 2:6] = 1.0  # the middle half is white
    assert torch.equal(fit_picture(wide, (4, 4)), torch.ones(1, 3, 4, 4))
    tall = wide.transpose(2, 3)
    assert torch.equal(fit_picture(tall, (4, 4)), torch.ones(1, 3, 4, 4))
    assert fit_picture(torch.rand(2, 3, 30, 20), (9, 6)).shape == (2, 3, 9, 6)


# --------------------------------------------------------------------------- commands

def _main(argv):
    from fastobj.cli import main

    return main(argv)


def test_render_command_maco_views_and_transparency(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    out = tmp_path / "maco.png"
    rc = _main(["render", "features.6:3", "--param", "maco", "--views", "2", "--size", "32",
                "--batch-size", "2", "--steps", "2", "--transparency", "--no-progress",
                "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "2 view(s)" in printed and "maco_rgba.png" in printed
    rgba = Image.open(tmp_path / "maco_rgba.png")
    assert rgba.mode == "RGBA" and rgba.size == Image.open(out).size
    raw = np.load(tmp_path / "maco_transparency.npy")
    assert raw.shape == (2, 3, 32, 32) and raw.dtype == np.float32 and (raw >= 0).all()


def test_accentuate_command_writes_the_photo_then_the_results(tmp_path, capsys):
    from PIL import Image

    photo = tmp_path / "photo.jpg"
    pixels = (torch.rand(30, 40, 3, generator=torch.Generator().manual_seed(0)) * 255)
    Image.fromarray(pixels.to(torch.uint8).numpy()).save(photo)
    out = tmp_path / "accent.png"
    rc = _main(["accentuate", str(photo), "ChannelActivation('features.6', [1, 2])",
                "--batch-size", "2", "--size", "24", "--steps", "2", "--no-progress",
                "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert Image.open(out).size == (2 * (24 + 2) + 2, 2 * (24 + 2) + 2)  # photo + 2 images


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "photo.png"),  # missing
    (lambda p: p.write_bytes(b"this is not an image"), "photo.png"),
    (lambda p: p.write_bytes(_png_bytes()[:60]), "photo.png"),  # truncated
])
def test_accentuate_refuses_a_bad_photo_and_writes_nothing(tmp_path, capsys, make, message):
    photo = tmp_path / "photo.png"
    make(photo)
    out = tmp_path / "out.png"
    rc = _main(["accentuate", str(photo), "features.6:3", "--steps", "1", "--no-progress",
                "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == (["photo.png"] if photo.exists()
                                                          else [])


def _png_bytes():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()
