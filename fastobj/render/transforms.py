"""Random image transforms applied between the parameterization and the model.

Feature visualizations are optimized through small random transforms so that the image must
excite the target under many shifts, scales and rotations, not only through one fragile
high-frequency pattern. Every random transform here draws its own parameters **for each sample
of the batch**: sample 3 may be shifted left while sample 4 is rotated right. The resampling is
vectorised over the batch (one ``gather`` or one ``affine_grid`` + ``grid_sample`` call per
transform), so the cost does not grow with the number of distinct draws.

Random parameters come from the transform's ``generator`` attribute (a CPU
``torch.Generator``) when set, else from torch's global RNG; :func:`seed_transforms` sets the
generator on every transform of a chain, which is how :func:`fastobj.render.render` makes a
run reproducible from its ``seed``. All transforms keep the batch size, and all but
:class:`Pad` keep the image size.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "RandomTransform",
    "Pad",
    "Jitter",
    "RandomScale",
    "RandomRotation",
    "default_transforms",
    "seed_transforms",
]


class RandomTransform(nn.Module):
    """Base class of transforms that draw per-sample parameters from ``self.generator``."""

    def __init__(self) -> None:
        super().__init__()
        self.generator: Optional[torch.Generator] = None

    def _randint(self, high: int, n: int) -> torch.Tensor:
        return torch.randint(high, (n,), generator=self.generator)

    def _choice(self, values: torch.Tensor, n: int) -> torch.Tensor:
        """``n`` independent draws, uniformly among ``values`` (a 1-D CPU tensor)."""
        return values[self._randint(values.numel(), n)]


def seed_transforms(module: nn.Module, generator: Optional[torch.Generator]) -> nn.Module:
    """Make every :class:`RandomTransform` inside ``module`` draw from ``generator``."""
    for sub in module.modules():
        if isinstance(sub, RandomTransform):
            sub.generator = generator
    return module


class Pad(nn.Module):
    """Pad every side by ``pad`` pixels: ``mode`` is "constant" (with ``value``), "reflect" or
    "replicate". Padding with mid-grey (the default) lets later shifts and rotations reveal a
    neutral border instead of wrapping content around."""

    def __init__(self, pad: int, mode: str = "constant", value: float = 0.5) -> None:
        super().__init__()
        if pad < 0:
            raise ValueError(f"pad must be non-negative, got {pad}")
        if mode not in ("constant", "reflect", "replicate"):
            raise ValueError(f"unknown padding mode {mode!r}")
        self.pad, self.mode, self.value = int(pad), mode, float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad == 0:
            return x
        p = (self.pad,) * 4
        if self.mode == "constant":
            return F.pad(x, p, mode="constant", value=self.value)
        return F.pad(x, p, mode=self.mode)

    def extra_repr(self) -> str:
        return f"pad={self.pad}, mode={self.mode!r}, value={self.value}"


class Jitter(RandomTransform):
    """Shift each sample by a random whole number of pixels in ``[-d, d]`` along each axis.

    The size is kept; pixels shifted in from outside repeat the nearest edge pixel. Whole-pixel
    shifts move values exactly (no interpolation blur): two ``gather`` calls, rows then columns.
    """

    def __init__(self, d: int) -> None:
        super().__init__()
        if d < 0:
            raise ValueError(f"jitter distance must be non-negative, got {d}")
        self.d = int(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.d == 0:
            return x
        b, c, h, w = x.shape
        shifts = (self._randint(2 * self.d + 1, 2 * b) - self.d).to(x.device).view(2, b, 1)
        rows = (torch.arange(h, device=x.device) + shifts[0]).clamp_(0, h - 1)  # (B, H)
        cols = (torch.arange(w, device=x.device) + shifts[1]).clamp_(0, w - 1)  # (B, W)
        x = x.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, w))
        return x.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))

    def extra_repr(self) -> str:
        return f"d={self.d}"


def _resample(x: torch.Tensor, theta: torch.Tensor, padding_mode: str) -> torch.Tensor:
    """Bilinear resampling of each sample through its own 2x3 affine map (normalised coords)."""
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode,
                         align_corners=False)


class RandomScale(RandomTransform):
    """Zoom each sample about its centre by a factor drawn uniformly from ``scales``.

    A factor above 1 magnifies (the borders leave the frame), below 1 shrinks (the border is
    filled by ``padding_mode``: "reflection", "border" or "zeros"). The size is kept, so
    samples with different factors still form one batch.
    """

    def __init__(self, scales: Sequence[float], padding_mode: str = "reflection") -> None:
        super().__init__()
        values = torch.as_tensor(list(scales), dtype=torch.float64).flatten()
        if values.numel() == 0 or bool((values <= 0).any()):
            raise ValueError("scales must be a non-empty sequence of positive numbers")
        self.register_buffer("scales", values, persistent=False)
        self.padding_mode = padding_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        inv = 1.0 / self._choice(self.scales.cpu(), b)
        theta = torch.zeros(b, 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = inv
        theta[:, 1, 1] = inv
        return _resample(x, theta, self.padding_mode)

    def extra_repr(self) -> str:
        return f"scales={self.scales.tolist()}, padding_mode={self.padding_mode!r}"


class RandomRotation(RandomTransform):
    """Rotate each sample about its centre by an angle in degrees.

    ``degrees`` is either a sequence of angles (one is drawn uniformly per sample) or a single
    number ``a``, meaning a uniform angle in ``[-a, a]``. Rotation is done in pixel space, so
    non-square images are not sheared.
    """

    def __init__(self, degrees: Union[float, Sequence[float]],
                 padding_mode: str = "reflection") -> None:
        super().__init__()
        if isinstance(degrees, (int, float)):
            self.max_degrees: Optional[float] = abs(float(degrees))
            values = torch.zeros(0, dtype=torch.float64)
        else:
            self.max_degrees = None
            values = torch.as_tensor(list(degrees), dtype=torch.float64).flatten()
            if values.numel() == 0:
                raise ValueError("degrees must be a number or a non-empty sequence")
        self.register_buffer("angles", values, persistent=False)
        self.padding_mode = padding_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        if self.max_degrees is not None:
            u = torch.rand(b, generator=self.generator, dtype=torch.float64)
            deg = (2 * u - 1) * self.max_degrees
        else:
            deg = self._choice(self.angles.cpu(), b)
        rad = deg * (math.pi / 180.0)
        cos, sin = torch.cos(rad), torch.sin(rad)
        # Rotation in pixel coordinates, expressed in affine_grid's normalised coordinates.
        theta = torch.zeros(b, 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = cos
        theta[:, 0, 1] = -sin * (h / w)
        theta[:, 1, 0] = sin * (w / h)
        theta[:, 1, 1] = cos
        return _resample(x, theta, self.padding_mode)

    def extra_repr(self) -> str:
        what = (f"max_degrees={self.max_degrees}" if self.max_degrees is not None
                else f"angles={self.angles.tolist()}")
        return f"{what}, padding_mode={self.padding_mode!r}"


def default_transforms() -> nn.Sequential:
    """The default robustness chain (each random step drawn per sample).

    Pad 12 px of mid-grey, jitter up to 8 px, zoom by one of 0.90, 0.92, ..., 1.10, rotate by
    a whole number of degrees in [-10, 10], jitter up to 4 px. The output is 24 px larger than
    the image on each axis.
    """
    return nn.Sequential(
        Pad(12, mode="constant", value=0.5),
        Jitter(8),
        RandomScale([1.0 + (i - 5) / 50.0 for i in range(11)]),
        RandomRotation(list(range(-10, 11))),
        Jitter(4),
    )
