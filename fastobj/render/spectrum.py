"""Magnitude spectra of natural images, for images optimised in phase only (MACO).

A MACO image is the inverse 2-D real FFT of a fixed magnitude times a learnt phase, so its
magnitude must come from somewhere. Here it is the mean ``|rfft2|`` of natural photographs,
taken in the decorrelated colour basis: with ``M`` the colour matrix that
:func:`.color.decorrelate_colors` applies (``rgb = M @ raw``), each photo's RGB pixels are
mapped to ``raw = M^-1 @ rgb`` first, so that the spectrum is that of the raw channels an
image parameterization produces before its colour stage. (``M^-1`` is computed from
:data:`.color.COLOR_CORRELATION_SVD_SQRT`, which is ``M`` times a scalar; the normalisation
below removes that scalar, as it is shared by the three channels.)

Every spectrum here is a float32 ``(3, H, W // 2 + 1)`` tensor laid out as
``torch.fft.rfft2`` of an ``(H, W)`` image lays out its coefficients: rows in ``fftfreq``
order (``0, 1/H, ..., -1/H`` cycles per pixel), columns in ``rfftfreq`` order (``0 .. 1/2``).
Only its shape matters (the image is standardised after the inverse FFT), so each is
normalised to mean 1; its zero-frequency entry, which in a photograph holds the mean
brightness and dwarfs the rest, is replaced by the mean of its three nearest neighbours
(rows ``+-1/H`` of column 0, row 0 of column ``1/W``), so the spectrum is smooth and positive
and the brightness is left to the colour stage.

* :func:`natural_spectrum`: the spectrum shipped with fastobj (``data/natural_spectrum.npy``,
  made by ``scripts/make_natural_spectrum.py`` from photographs that ship with scikit-image),
  resized to the render size.
* :func:`spectrum_from_images`: the same statistic from your own images.
* :func:`resize_spectrum`: any spectrum resized to another image size.
"""
from __future__ import annotations

import os
from importlib import resources
from typing import Any, Iterator, List, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .color import COLOR_CORRELATION_SVD_SQRT, decorrelate_colors
from .imageio import load_image

__all__ = ["natural_spectrum", "spectrum_from_images", "resize_spectrum", "NATURAL_SPECTRUM_FILE"]

NATURAL_SPECTRUM_FILE = "data/natural_spectrum.npy"
"""Where the shipped spectrum lies, relative to the ``fastobj.render`` package."""

ImagesArg = Union[str, "os.PathLike[str]", Sequence[Any], torch.Tensor]


def _check_size(function: str, height: Any, width: Any) -> None:
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"{function}: {name} must be an int of at least 2, got {value!r}")


def _finish(spectrum: torch.Tensor) -> torch.Tensor:
    """Replace the zero-frequency entry by its neighbours' mean and normalise to mean 1."""
    spectrum = spectrum.clone()
    spectrum[:, 0, 0] = (spectrum[:, 1, 0] + spectrum[:, -1, 0] + spectrum[:, 0, 1]) / 3
    return (spectrum / spectrum.mean()).float()


def _axis_weights(source: torch.Tensor, target: torch.Tensor, source_step: float,
                  target_step: float, periodic: bool) -> torch.Tensor:
    """``(len(target), len(source))`` weights of a linear resampling between frequency grids.

    Each target frequency takes a triangle-weighted mean of the source frequencies within
    ``max(source_step, target_step)`` of it: linear interpolation when enlarging, an
    antialiasing triangle filter when shrinking (as Pillow's bilinear resize does). On a
    ``periodic`` axis distances wrap at 1 cycle per pixel (``-1/2`` and ``+1/2`` are the same
    frequency).
    """
    distance = target[:, None] - source[None, :]
    if periodic:
        distance = torch.remainder(distance + 0.5, 1.0) - 0.5
    weights = (1.0 - distance.abs() / max(source_step, target_step)).clamp(min=0.0)
    return weights / weights.sum(dim=1, keepdim=True)


def resize_spectrum(spectrum: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize a ``(C, h, w // 2 + 1)`` half-spectrum to ``(C, height, width // 2 + 1)``,
    normalised to mean 1.

    Each coefficient is placed at its frequency in cycles per pixel and the grid is resampled
    linearly in frequency (with a triangle antialiasing filter when shrinking). Rows are read
    in ``fftfreq`` order, so positive and negative vertical frequencies keep their places and
    the resampling wraps around at the Nyquist row, exactly as if the rows were ``fftshift``-ed
    to a centred layout, resized and shifted back, but without that layout's half-row offset
    for even sizes. Columns are ``rfftfreq`` ordered; the source's width is taken as
    ``2 * (w - 1)`` for its ``w`` columns (even), a relative error of at most ``1 / w`` in
    frequency for odd widths. At the first and last columns the filter averages over the
    columns on their one side only, which for a spectrum symmetric in the vertical frequency
    equals the average over both sides.
    Resizing to the same size returns the spectrum unchanged (but normalised).
    """
    _check_size("resize_spectrum", height, width)
    if not isinstance(spectrum, torch.Tensor):
        raise TypeError("resize_spectrum: spectrum must be a (C, h, w // 2 + 1) tensor, got "
                        f"{type(spectrum).__name__}")
    if spectrum.dim() != 3 or spectrum.shape[1] < 2 or spectrum.shape[2] < 2:
        raise ValueError("resize_spectrum: spectrum must be a (C, h, w // 2 + 1) tensor with "
                         f"h >= 2 and w // 2 + 1 >= 2, got shape {tuple(spectrum.shape)}")
    source = spectrum.detach().double().cpu()
    if not torch.isfinite(source).all() or (source < 0).any() or not (source > 0).any():
        raise ValueError("resize_spectrum: spectrum must be finite, non-negative and not all zero")
    rows, columns = source.shape[1:]
    source_width = 2 * (columns - 1)
    row_weights = _axis_weights(torch.fft.fftfreq(rows, dtype=torch.float64),
                                torch.fft.fftfreq(height, dtype=torch.float64),
                                1.0 / rows, 1.0 / height, periodic=True)
    column_weights = _axis_weights(torch.fft.rfftfreq(source_width, dtype=torch.float64),
                                   torch.fft.rfftfreq(width, dtype=torch.float64),
                                   1.0 / source_width, 1.0 / width, periodic=False)
    resized = row_weights @ source @ column_weights.T
    return (resized / resized.mean()).float()


def natural_spectrum(height: int, width: int) -> torch.Tensor:
    """The shipped natural-image magnitude spectrum, float32 ``(3, height, width // 2 + 1)``,
    mean 1, resized with :func:`resize_spectrum` from the stored 128 x 128 one (which
    ``scripts/make_natural_spectrum.py`` describes and regenerates)."""
    _check_size("natural_spectrum", height, width)
    stored = resources.files("fastobj.render").joinpath(NATURAL_SPECTRUM_FILE)
    with stored.open("rb") as f:
        spectrum = torch.from_numpy(np.load(f).astype(np.float32))
    return _finish(resize_spectrum(spectrum, height, width))


def _image_files(function: str, folder: str) -> List[str]:
    readable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    files = sorted(os.path.join(folder, name) for name in os.listdir(folder)
                   if os.path.splitext(name)[1].lower() in readable)
    if not files:
        raise ValueError(f"{function}: images folder {folder!r} holds no image files "
                         f"(looked for {', '.join(sorted(readable & {'.png', '.jpg', '.jpeg'}))} "
                         "and the other suffixes Pillow reads)")
    return files


def _each_image(function: str, images: ImagesArg) -> Iterator[torch.Tensor]:
    """Yield ``images`` one ``(3, H, W)`` tensor at a time, reading files only when reached."""
    if isinstance(images, (str, os.PathLike)):
        folder = os.fspath(images)
        if not os.path.isdir(folder):
            raise ValueError(f"{function}: images must be a folder, a list of image paths or "
                             f"of (3, H, W) tensors, or a (B, 3, H, W) tensor; {folder!r} is not "
                             "a folder")
        images = _image_files(function, folder)
    elif isinstance(images, torch.Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{function}: an images tensor must be (B, 3, H, W), got shape "
                             f"{tuple(images.shape)}")
    elif not isinstance(images, (list, tuple)):
        raise TypeError(f"{function}: images must be a folder, a list of image paths or of "
                        f"(3, H, W) tensors, or a (B, 3, H, W) tensor, got {type(images).__name__}")
    if len(images) == 0:
        raise ValueError(f"{function}: images is empty")
    for i, item in enumerate(images):
        if isinstance(item, (str, os.PathLike)):
            yield load_image(item)
        elif not isinstance(item, torch.Tensor):
            raise TypeError(f"{function}: images[{i}] must be an image path or a (3, H, W) "
                            f"tensor, got {type(item).__name__}")
        elif item.dim() != 3 or item.shape[0] != 3:
            raise ValueError(f"{function}: images[{i}] must be an image path or a (3, H, W) "
                             f"tensor, got shape {tuple(item.shape)}")
        elif not torch.isfinite(item).all():
            raise ValueError(f"{function}: images[{i}] has non-finite values")
        else:
            yield item.detach().float().cpu()


def _cover_and_crop(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Scale ``image`` (keeping its aspect ratio, antialiased bilinear) until it covers
    ``height x width``, then cut out the centre ``height x width``."""
    h, w = image.shape[1:]
    scale = max(height / h, width / w)
    size = (max(height, round(h * scale)), max(width, round(w * scale)))
    if size != (h, w):
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False,
                              antialias=True)[0]
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return image[:, top:top + height, left:left + width]


def spectrum_from_images(images: ImagesArg, height: int, width: int) -> torch.Tensor:
    """The mean magnitude spectrum of ``images`` at ``height x width``, float32
    ``(3, height, width // 2 + 1)``, in the same basis and normalisation as
    :func:`natural_spectrum` (see the module's docstring).

    ``images`` is a folder (every file in it with a suffix Pillow reads, read with
    :func:`.imageio.load_image`), a list of image paths or of ``(3, H, W)`` tensors in
    ``[0, 1]``, or a ``(B, 3, H, W)`` tensor. Each image is scaled, keeping its aspect ratio,
    until it covers ``height x width`` (antialiased bilinear), and its centre
    ``height x width`` is cut out. It is then mapped to the decorrelated colour basis, each
    channel's mean is subtracted, and it is multiplied by a 2-D Hann window before its
    orthonormal ``rfft2``, so that a photo's non-periodic edges do not add a false cross of
    energy along the frequency axes. Images smaller than the target are enlarged, which adds
    no fine detail: their spectrum falls off too fast at high frequencies.
    """
    _check_size("spectrum_from_images", height, width)
    to_raw = torch.linalg.inv(COLOR_CORRELATION_SVD_SQRT.double())
    window = torch.outer(torch.hann_window(height, dtype=torch.float64),
                         torch.hann_window(width, dtype=torch.float64))
    total = torch.zeros(3, height, width // 2 + 1, dtype=torch.float64)
    count = 0
    for image in _each_image("spectrum_from_images", images):
        raw = decorrelate_colors(_cover_and_crop(image, height, width).double()[None], to_raw)[0]
        raw = (raw - raw.mean(dim=(1, 2), keepdim=True)) * window
        total += torch.fft.rfft2(raw, norm="ortho").abs()
        count += 1
    return _finish(total / count)
