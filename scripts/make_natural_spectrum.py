"""Regenerate ``fastobj/render/data/natural_spectrum.npy``, the magnitude spectrum MACO uses.

Run ``pip install scikit-image`` first (only this script needs it, and only for the six colour
photographs in its wheel, which it reads as files without importing scikit-image), then
``python scripts/make_natural_spectrum.py``.

1. The mean magnitude spectrum of the photos at 128 x 128 is measured with
   :func:`fastobj.render.spectrum.spectrum_from_images` (each photo scaled to cover 128 x 128
   and centre-cropped, mapped to the decorrelated colour basis, Hann-windowed).
2. Per colour channel, a smooth model is fitted to it in log space::

       ln A(f, theta) = c - alpha ln f + gamma (ln f)^2 + b2 cos(2 theta) + b4 cos(4 theta)

   with ``f`` the frequency in cycles per pixel and ``theta`` its angle from the horizontal
   frequency axis: a power law whose slope changes with scale (``gamma``), an up/down versus
   left/right imbalance (``b2``) and more energy along the axes than the diagonals (``b4``).
   The fit is least squares on the means of ``ln A`` in cells of half an octave by 22.5
   degrees, every cell weighted alike, so the many fine-scale coefficients do not outvote
   the few coarse ones.
3. The fit, not the measurement, is stored (evaluated on the 128 x 128 grid, at zero
   frequency as at the lowest nonzero one, mean 1, float16): six photos are
   few, and a single coefficient's magnitude varies by about half its mean from photo to
   photo, so the raw mean would imprint those photos' particular edges and textures (the
   motorcycles' strong orientations) on every render.

What it printed for scikit-image 0.26.0 (all six photos present), lines shortened::

    channel 0: alpha 2.238 gamma -0.175 b2 -0.063 b4 0.121; amplitude falls as
               f^-0.78 at 1/64, f^-1.27 at 1/16, f^-1.75 at 1/4, f^-2.00 at 1/2 cycle/px
      log-space RMS error: 0.129 against cell means, 0.275 against single coefficients;
      a plain power law (f^-1.38) leaves 0.294 against cell means
    channel 1: alpha 2.486 gamma -0.198 b2 -0.226 b4 0.112;
               f^-0.84, f^-1.39, f^-1.94, f^-2.21
      RMS 0.166 (cells), 0.291 (coefficients); plain power law f^-1.52: 0.365
    channel 2: alpha 2.206 gamma -0.145 b2 -0.315 b4 0.083;
               f^-1.00, f^-1.40, f^-1.80, f^-2.00
      RMS 0.223 (cells), 0.316 (coefficients); plain power law f^-1.50: 0.373
    axes / diagonals energy (measured, 1/16 to 1/4 cycle/px): 1.33 / 1.44 / 1.23
    wrote fastobj/render/data/natural_spectrum.npy: (3, 128, 65) float16, 50,048 bytes

So the amplitude falls as ``f^-0.8`` to ``f^-1`` at coarse scales and steepens to ``f^-2``
near the Nyquist frequency (the antialiasing of the downscaling and the cameras' own blur
take the finest detail); a single power law cannot follow that bend (about twice the error).
The axes carry a quarter to a half more energy than the diagonals (``b4 > 0``), as natural
images are known to, and in the two colour-opponent channels vertical frequencies (horizontal
bands of colour) outweigh horizontal ones (``b2 < 0``). A natural log error of 0.13 to 0.22
against the cell means is a factor of 1.14 to 1.25; against single coefficients it cannot be
much lower than their own scatter across six photos. The Hann window blurs the spectrum by
about two coefficients, which flattens the coarsest octave a little.
"""
from __future__ import annotations

import importlib.util
import math
import os
import sys

import numpy as np
import torch

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPOSITORY)

from fastobj.render.spectrum import NATURAL_SPECTRUM_FILE, spectrum_from_images  # noqa: E402

SIZE = 128
PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png",
          "motorcycle_right.png", "rocket.jpg"]
CHECKED_FREQUENCIES = (1 / 64, 1 / 16, 1 / 4, 1 / 2)


def photo_paths() -> list:
    spec = importlib.util.find_spec("skimage")
    if spec is None:
        sys.exit("scikit-image is not installed: pip install scikit-image")
    folder = os.path.join(spec.submodule_search_locations[0], "data")
    found = [os.path.join(folder, name) for name in PHOTOS
             if os.path.exists(os.path.join(folder, name))]
    missing = sorted(set(PHOTOS) - {os.path.basename(p) for p in found})
    if missing:
        print(f"not in this scikit-image: {', '.join(missing)}")
    if not found:
        sys.exit(f"none of the photos is in {folder}")
    return found


def frequency_grid(size: int):
    """Frequency magnitude and angle of every coefficient of a (size, size // 2 + 1)
    half-spectrum."""
    fy = torch.fft.fftfreq(size, dtype=torch.float64)[:, None].expand(size, size // 2 + 1)
    fx = torch.fft.rfftfreq(size, dtype=torch.float64)[None, :].expand(size, size // 2 + 1)
    return torch.sqrt(fy * fy + fx * fx), torch.atan2(fy, fx)


def features(f: torch.Tensor, theta: torch.Tensor, full: bool = True) -> torch.Tensor:
    """The model's terms at each frequency; without ``full`` only a plain power law
    ``c - alpha ln f``, for comparison."""
    log_f = torch.log(f)
    columns = [torch.ones_like(f), -log_f]
    if full:
        columns += [log_f * log_f, torch.cos(2 * theta), torch.cos(4 * theta)]
    return torch.stack(columns, dim=-1)


def cells(f: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """Cell number of every nonzero frequency: half octaves by 22.5-degree sectors."""
    radial = torch.floor(2 * torch.log2(f * size)).long()
    angular = torch.floor((theta + math.pi / 2) / (math.pi / 8)).long().clamp(max=7)
    return radial * 8 + angular


def fit(log_spectrum: torch.Tensor, f: torch.Tensor, theta: torch.Tensor, cell: torch.Tensor,
        full: bool = True):
    """Least squares on cell means; returns the coefficients and the RMS errors against the
    cell means and against every coefficient."""
    mean_features, mean_values = [], []
    for c in torch.unique(cell):
        inside = cell == c
        mean_features.append(features(f[inside], theta[inside], full).mean(dim=0))
        mean_values.append(log_spectrum[inside].mean())
    x, y = torch.stack(mean_features), torch.stack(mean_values)
    coefficients = torch.linalg.lstsq(x, y[:, None]).solution[:, 0]
    cell_rms = (x @ coefficients - y).pow(2).mean().sqrt().item()
    all_rms = (features(f, theta, full) @ coefficients - log_spectrum).pow(2).mean()
    return coefficients, cell_rms, all_rms.sqrt().item()


def main() -> None:
    paths = photo_paths()
    print(f"photos: {', '.join(os.path.basename(p) for p in paths)}")
    measured = spectrum_from_images(paths, SIZE, SIZE).double()
    f, theta = frequency_grid(SIZE)
    nonzero = f > 0
    cell = cells(f[nonzero], theta[nonzero], SIZE)
    fitted = torch.empty_like(measured)
    for channel in range(3):
        log_measured = torch.log(measured[channel][nonzero])
        coefficients, cell_rms, all_rms = fit(log_measured, f[nonzero], theta[nonzero], cell)
        power_law, power_law_cell_rms, _ = fit(log_measured, f[nonzero], theta[nonzero], cell,
                                               full=False)
        _, alpha, gamma, b2, b4 = coefficients.tolist()
        slopes = ", ".join(f"f^-{alpha - 2 * gamma * math.log(q):.2f} at {q:.3g}"
                           for q in CHECKED_FREQUENCIES)
        print(f"channel {channel}: alpha {alpha:.3f} gamma {gamma:.3f} b2 {b2:.3f} b4 {b4:.3f}; "
              f"amplitude falls as {slopes} cycle/px")
        print(f"  log-space RMS error: {cell_rms:.3f} against cell means, {all_rms:.3f} against "
              f"single coefficients; a plain power law (f^-{power_law[1]:.2f}) leaves "
              f"{power_law_cell_rms:.3f} against cell means")
        fitted[channel] = torch.exp(features(f.clamp(min=1 / SIZE), theta) @ coefficients)
    band = (f >= 1 / 16) & (f < 1 / 4)
    near = math.radians(10)
    axes = (theta.abs() < near) | ((theta.abs() - math.pi / 2).abs() < near)
    diagonals = (theta.abs() - math.pi / 4).abs() < near
    ratios = [(measured[c][band & axes].mean() / measured[c][band & diagonals].mean()).item()
              for c in range(3)]
    print("axes / diagonals energy (measured, 1/16 to 1/4 cycle/px): "
          + " / ".join(f"{r:.2f}" for r in ratios))
    stored = (fitted / fitted.mean()).numpy().astype(np.float16)
    path = os.path.join(REPOSITORY, "fastobj", "render", NATURAL_SPECTRUM_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, stored)
    print(f"wrote {os.path.relpath(path, REPOSITORY)}: {stored.shape} {stored.dtype}, "
          f"{os.path.getsize(path):,} bytes")


if __name__ == "__main__":
    main()
