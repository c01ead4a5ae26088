"""fastobj.render.spectrum: the shipped natural-image spectrum, resizing half-spectra in
frequency (rows in fftfreq order), and spectra measured from images."""
import math
import os

import numpy as np
import pytest
import torch

from fastobj.render import natural_spectrum, resize_spectrum, save_png, spectrum_from_images
from fastobj.render.color import decorrelate_colors
from fastobj.render.spectrum import NATURAL_SPECTRUM_FILE

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STORED = os.path.join(REPOSITORY, "fastobj", "render", NATURAL_SPECTRUM_FILE)


def _frequencies(height, width):
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None].expand(height, width // 2 + 1)
    fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :].expand(height, width // 2 + 1)
    return fy, fx


# --- natural_spectrum ---------------------------------------------------------------------------

@pytest.mark.parametrize("height, width", [(37, 50), (64, 31), (2, 2), (224, 224), (128, 128)])
def test_natural_spectrum_shape_and_values(height, width):
    spectrum = natural_spectrum(height, width)
    assert spectrum.dtype == torch.float32 and spectrum.shape == (3, height, width // 2 + 1)
    assert torch.isfinite(spectrum).all() and (spectrum > 0).all()
    assert spectrum.double().mean().item() == pytest.approx(1.0, rel=1e-5)


def test_natural_spectrum_at_stored_size_is_the_stored_array():
    stored = torch.from_numpy(np.load(STORED).astype(np.float64))
    spectrum = natural_spectrum(128, 128).double()
    expected = stored.clone()
    expected[:, 0, 0] = (stored[:, 1, 0] + stored[:, -1, 0] + stored[:, 0, 1]) / 3
    torch.testing.assert_close(spectrum, expected / expected.mean(), rtol=1e-6, atol=0)


def test_natural_spectrum_has_the_shape_of_natural_images():
    """Amplitude falls between f^-0.7 and f^-2.3 per octave, and the axes carry more energy
    than the diagonals, in every channel."""
    spectrum = natural_spectrum(96, 160).double()
    fy, fx = _frequencies(96, 160)
    f, theta = torch.sqrt(fy * fy + fx * fx), torch.atan2(fy, fx)
    for channel in spectrum:
        octave_means = [channel[(f >= lo) & (f < 2 * lo)].mean() for lo in (1 / 64, 1 / 16, 1 / 4)]
        for coarse, fine in zip(octave_means, octave_means[1:]):
            exponent = math.log2(coarse / fine) / 2  # two octaves apart
            assert 0.7 < exponent < 2.3
        band = (f >= 1 / 16) & (f < 1 / 4)
        axes = (theta.abs() < 0.15) | ((theta.abs() - math.pi / 2).abs() < 0.15)
        diagonals = (theta.abs() - math.pi / 4).abs() < 0.15
        assert channel[band & axes].mean() > 1.1 * channel[band & diagonals].mean()


def test_stored_spectrum_is_small():
    """(tests/test_packaging.py checks that the wheel ships it.)"""
    stored = np.load(STORED)
    assert stored.shape == (3, 128, 65) and stored.dtype == np.float16
    assert os.path.getsize(STORED) < 64 * 1024


# --- resize_spectrum ----------------------------------------------------------------------------

@pytest.mark.parametrize("height, width", [(16, 18), (15, 17), (7, 2)])
def test_resize_to_same_size_only_normalises(height, width):
    spectrum = torch.rand(3, height, width // 2 + 1, dtype=torch.float64) + 0.1
    resized = resize_spectrum(spectrum, height, width // 2 * 2)
    torch.testing.assert_close(resized.double(), spectrum / spectrum.mean(), rtol=1e-6, atol=0)


@pytest.mark.parametrize("height, width", [(50, 80), (45, 79), (33, 20)])
def test_resize_keeps_a_positive_vertical_frequency_positive(height, width):
    """A bump at +1/4 cycle/px vertically (row 8 of 32) and 1/8 horizontally must land at +1/4,
    not at -1/4 (row 24), whatever the parity of the new size."""
    spectrum = torch.ones(1, 32, 17, dtype=torch.float64)
    spectrum[0, 8, 4] = 5.0
    resized = resize_spectrum(spectrum, height, width).double()[0]
    fy, fx = _frequencies(height, width)
    excess = resized - resized.min()
    row, column = divmod(int(excess.argmax()), excess.shape[1])
    assert abs(fy[row, 0] - 0.25) <= 1 / height and abs(fx[0, column] - 0.125) <= 1 / width
    assert excess[fy[:, 0] < 0].max() == 0  # nothing leaks to negative vertical frequencies
    weights = excess.sum(dim=1)
    centroid = (weights * fy[:, 0]).sum() / weights.sum()
    assert centroid.item() == pytest.approx(0.25, abs=0.25 / height)


def test_resize_is_linear_in_frequency_when_enlarging():
    """A spectrum linear in the horizontal frequency is reproduced exactly at the new
    frequencies; one that depends only on |fy| likewise (the Nyquist row wraps)."""
    fy, fx = _frequencies(16, 20)
    spectrum = (1.0 + 3.0 * fx + 2.0 * fy.abs())[None]
    ty, tx = _frequencies(48, 60)
    expected = (1.0 + 3.0 * tx + 2.0 * ty.abs())[None]
    torch.testing.assert_close(resize_spectrum(spectrum, 48, 60).double(),
                               expected / expected.mean(), rtol=1e-6, atol=0)


def test_resize_antialiases_when_shrinking():
    """A smooth spectrum plus rows alternating -1 and +1, shrunk to a quarter, keeps the smooth
    part and loses the alternation; sampling without a filter would keep every fourth row, all
    -1s."""
    fy, _ = _frequencies(64, 64)
    smooth = 3.0 + torch.cos(2 * math.pi * fy)
    alternating = torch.ones_like(smooth)
    alternating[0::2] = -1.0
    resized = resize_spectrum((smooth + alternating)[None], 16, 64).double()
    ty, _ = _frequencies(16, 64)
    expected = 3.0 + torch.cos(2 * math.pi * ty)
    # the filter also blurs the smooth part a little: 0.65% at most here
    torch.testing.assert_close(resized[0], expected / expected.mean(), rtol=0.01, atol=0)


def test_resize_round_trip_of_a_smooth_spectrum():
    fy, fx = _frequencies(24, 30)
    smooth = ((2 + torch.cos(2 * math.pi * (fy - 0.1))) * (2 + torch.cos(2 * math.pi * fx)))[None]
    back = resize_spectrum(resize_spectrum(smooth, 72, 90), 24, 30).double()
    # Interpolating up and filtering down each blur a little: 1.6% at most for this curvature.
    torch.testing.assert_close(back, smooth / smooth.mean(), rtol=0.02, atol=0)


BAD_SHAPE = "resize_spectrum: spectrum must be a \\(C, h, w // 2 \\+ 1\\) tensor"
BAD_VALUES = "resize_spectrum: spectrum must be finite, non-negative and not all zero"


@pytest.mark.parametrize("spectrum, error, message", [
    (torch.ones(3, 8), ValueError, BAD_SHAPE), (torch.ones(3, 1, 5), ValueError, BAD_SHAPE),
    (torch.ones(3, 8, 1), ValueError, BAD_SHAPE), (np.ones((3, 8, 5)), TypeError, BAD_SHAPE),
    (-torch.ones(3, 8, 5), ValueError, BAD_VALUES),
    (torch.full((3, 8, 5), float("nan")), ValueError, BAD_VALUES),
    (torch.zeros(3, 8, 5), ValueError, BAD_VALUES),
], ids=["2d", "one_row", "one_column", "numpy", "negative", "nan", "zero"])
def test_resize_rejects_bad_spectrum(spectrum, error, message):
    with pytest.raises(error, match=message):
        resize_spectrum(spectrum, 8, 8)


@pytest.mark.parametrize("function", [natural_spectrum, lambda h, w: resize_spectrum(
    torch.ones(3, 8, 5), h, w), lambda h, w: spectrum_from_images(torch.rand(1, 3, 8, 8), h, w)])
@pytest.mark.parametrize("height, width, bad", [(1, 8, "height"), (8, 0, "width"),
                                                (8.0, 8, "height"), (8, True, "width")])
def test_bad_size_names_function_and_argument(function, height, width, bad):
    with pytest.raises(ValueError, match=f"(natural_spectrum|resize_spectrum|spectrum_from_images)"
                                         f": {bad} must be an int of at least 2"):
        function(height, width)


# --- spectrum_from_images -----------------------------------------------------------------------

def _cosine_image(height, width, channel, ky, kx):
    """RGB image whose decorrelated channel ``channel`` is cos(2 pi (ky y / H + kx x / W)) and
    whose other decorrelated channels are flat."""
    y = torch.arange(height, dtype=torch.float64)[:, None]
    x = torch.arange(width, dtype=torch.float64)[None, :]
    raw = torch.zeros(1, 3, height, width, dtype=torch.float64)
    raw[0, channel] = torch.cos(2 * math.pi * (ky * y / height + kx * x / width))
    return decorrelate_colors(raw)[0] + 0.5


@pytest.mark.parametrize("channel, ky, kx", [(0, 0, 5), (1, 3, 1), (2, 4, 6), (0, -4, 6)])
def test_a_cosine_puts_its_magnitude_at_its_frequency_and_channel(channel, ky, kx):
    height, width = 30, 44
    spectrum = spectrum_from_images([_cosine_image(height, width, channel, ky, kx)],
                                    height, width).double()
    assert spectrum.shape == (3, height, width // 2 + 1)
    peak = spectrum[channel]
    row, column = divmod(int(peak.argmax()), peak.shape[1])
    assert (row, column) == (ky % height, kx)
    others = [c for c in range(3) if c != channel]
    assert spectrum[others].max() < 1e-6 * peak.max()


def test_images_are_scaled_to_cover_then_centre_cropped():
    """4 horizontal cycles across a 16 x 32 image: scaled by 1/2 to 8 x 16 and cropped to 8 x 8
    they are 2 cycles (stretching to 8 x 8 would give 4)."""
    image = _cosine_image(16, 32, 0, 0, 4)
    peak = spectrum_from_images(image[None], 8, 8)[0]
    assert divmod(int(peak.argmax()), peak.shape[1]) == (0, 2)


def test_folder_paths_tensors_and_batch_agree(tmp_path):
    images = torch.rand(3, 3, 12, 18)
    for i, image in enumerate(images):
        save_png(image, tmp_path / f"photo_{i}.png")
    (tmp_path / "notes.txt").write_text("not an image, skipped by suffix\n")
    quantised = (images * 255).round() / 255
    from_folder = spectrum_from_images(tmp_path, 10, 14)
    from_paths = spectrum_from_images([str(tmp_path / f"photo_{i}.png") for i in range(3)], 10, 14)
    from_list = spectrum_from_images(list(quantised), 10, 14)
    from_batch = spectrum_from_images(quantised, 10, 14)
    assert from_folder.shape == (3, 10, 8) and (from_folder > 0).all()
    for other in (from_paths, from_list, from_batch):
        torch.testing.assert_close(other, from_folder, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("images, error, message", [
    ("empty_folder", ValueError, "holds no image files"),
    ("text_only_folder", ValueError, "holds no image files"),
    ("a_file", ValueError, "is not a folder"),
    ([], ValueError, "images is empty"),
    (torch.rand(0, 3, 8, 8), ValueError, "images is empty"),
    (torch.rand(2, 4, 8, 8), ValueError, "must be \\(B, 3, H, W\\)"),
    (torch.rand(3, 8, 8), ValueError, "must be \\(B, 3, H, W\\)"),
    ([torch.rand(3, 8, 8), torch.rand(8, 8)], ValueError, "images\\[1\\] must be .* got shape"),
    ([torch.rand(3, 8, 8), 3.5], TypeError, "images\\[1\\] must be .* got float"),
    ([torch.full((3, 8, 8), float("nan"))], ValueError, "images\\[0\\] has non-finite"),
    (42, TypeError, "images must be a folder"),
])
def test_spectrum_from_images_rejects_bad_images(tmp_path, images, error, message):
    if isinstance(images, str) and images == "empty_folder":
        images = tmp_path
    elif isinstance(images, str) and images == "text_only_folder":
        (tmp_path / "a.txt").write_text("x")
        images = str(tmp_path)
    elif isinstance(images, str) and images == "a_file":
        save_png(torch.rand(3, 8, 8), tmp_path / "one.png")
        images = str(tmp_path / "one.png")
    with pytest.raises(error, match="spectrum_from_images: " + ".*" + message):
        spectrum_from_images(images, 8, 8)


def test_window_keeps_a_photo_edge_off_the_frequency_axis():
    """A horizontal ramp jumps from its right edge back to its left when seen as periodic; its
    rfft would fall only as 1/f along the horizontal axis. Hann-windowed, it is gone by the
    sixth coefficient."""
    x = torch.linspace(0, 1, 40, dtype=torch.float64)
    ramp = decorrelate_colors(torch.zeros(1, 3, 24, 40, dtype=torch.float64)
                              + torch.stack([x, 0 * x, 0 * x])[None, :, None, :])[0]
    axis = spectrum_from_images([ramp + 0.2], 24, 40)[0, 0].double()
    assert axis[6:].max() < 0.01 * axis[1]
