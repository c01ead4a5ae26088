"""Random image transforms applied between the parameterization and the model.

Feature visualizations are optimized through small random transforms so that the image must
excite the target under many shifts, scales and rotations, not only through one fragile
high-frequency pattern. Every random transform here draws its own parameters **for each sample
of the batch**: sample 3 may be shifted left while sample 4 is rotated right. The resampling is
vectorised over the batch (one ``gather`` or one ``affine_grid`` + ``grid_sample`` call per
transform), so the cost does not grow with the number of distinct draws. :class:`RandomAffine`
chains geometric transforms (jitter, scale, rotation) into one map per sample and resamples
once; the default chain uses it.

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
    "RandomAffine",
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
    neutral border instead of repeating image content."""

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


def _identity_matrices(b: int) -> torch.Tensor:
    return torch.eye(3, dtype=torch.float64).repeat(b, 1, 1)


def _resample(x: torch.Tensor, inverse: torch.Tensor, padding_mode: str) -> torch.Tensor:
    """Bilinear resampling of each sample through its own pixel-space inverse map.

    ``inverse`` is ``(B, 3, 3)``: for an output position ``u`` (pixels from the image centre,
    homogeneous), ``inverse @ u`` is the input position read.
    """
    _, _, h, w = x.shape
    # affine_grid works in normalised coordinates (-1..1 across the image): conjugate.
    to_pixels = torch.diag(torch.tensor([w / 2.0, h / 2.0, 1.0], dtype=torch.float64))
    to_normal = torch.diag(torch.tensor([2.0 / w, 2.0 / h, 1.0], dtype=torch.float64))
    theta = (to_normal @ inverse @ to_pixels)[:, :2, :]
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode,
                         align_corners=False)


class _Geometric(RandomTransform):
    """A random transform that is one affine map of the plane per sample.

    Subclasses implement :meth:`inverse_matrices`: ``(B, 3, 3)`` float64 maps, in pixels about
    the image centre (x right, y down), from an output position to the input position it
    reads. :class:`RandomAffine` multiplies several of them and resamples once.
    """

    padding_mode = "reflection"

    def inverse_matrices(self, b: int, h: int, w: int) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return _resample(x, self.inverse_matrices(b, h, w), self.padding_mode)


class Jitter(_Geometric):
    """Shift each sample by a random whole number of pixels in ``[-d, d]`` along each axis.

    On its own, the size is kept and pixels shifted in from outside repeat the nearest edge
    pixel; whole-pixel shifts move values exactly (two ``gather`` calls, no interpolation).
    Inside :class:`RandomAffine` it contributes a translation to the combined map.
    """

    def __init__(self, d: int) -> None:
        super().__init__()
        if d < 0:
            raise ValueError(f"jitter distance must be non-negative, got {d}")
        self.d = int(d)

    def _shifts(self, b: int) -> torch.Tensor:
        """``(2, B)`` integer shifts: row 0 along x (columns), row 1 along y (rows)."""
        return (self._randint(2 * self.d + 1, 2 * b) - self.d).view(2, b)

    def inverse_matrices(self, b: int, h: int, w: int) -> torch.Tensor:
        m = _identity_matrices(b)
        if self.d:
            shifts = self._shifts(b).to(torch.float64)
            m[:, 0, 2] = -shifts[0]
            m[:, 1, 2] = -shifts[1]
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.d == 0:
            return x
        b, c, h, w = x.shape
        shifts = self._shifts(b).to(x.device).view(2, b, 1)
        cols = (torch.arange(w, device=x.device) - shifts[0]).clamp_(0, w - 1)  # (B, W)
        rows = (torch.arange(h, device=x.device) - shifts[1]).clamp_(0, h - 1)  # (B, H)
        x = x.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, w))
        return x.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))

    def extra_repr(self) -> str:
        return f"d={self.d}"


class RandomScale(_Geometric):
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
        self.scales = values
        self.padding_mode = padding_mode

    def inverse_matrices(self, b: int, h: int, w: int) -> torch.Tensor:
        inv = 1.0 / self._choice(self.scales, b)
        m = _identity_matrices(b)
        m[:, 0, 0] = inv
        m[:, 1, 1] = inv
        return m

    def extra_repr(self) -> str:
        return f"scales={self.scales.tolist()}, padding_mode={self.padding_mode!r}"


class RandomRotation(_Geometric):
    """Rotate each sample about its centre by an angle in degrees.

    ``degrees`` is either a sequence of angles (one is drawn uniformly per sample) or a single
    number ``a``, meaning a uniform angle in ``[-a, a]``. The rotation is done in pixel units,
    so non-square images are not sheared.
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
        self.angles = values
        self.padding_mode = padding_mode

    def inverse_matrices(self, b: int, h: int, w: int) -> torch.Tensor:
        if self.max_degrees is not None:
            u = torch.rand(b, generator=self.generator, dtype=torch.float64)
            deg = (2 * u - 1) * self.max_degrees
        else:
            deg = self._choice(self.angles, b)
        rad = deg * (math.pi / 180.0)
        cos, sin = torch.cos(rad), torch.sin(rad)
        m = _identity_matrices(b)  # the inverse of a rotation by +angle
        m[:, 0, 0] = cos
        m[:, 0, 1] = sin
        m[:, 1, 0] = -sin
        m[:, 1, 1] = cos
        return m

    def extra_repr(self) -> str:
        what = (f"max_degrees={self.max_degrees}" if self.max_degrees is not None
                else f"angles={self.angles.tolist()}")
        return f"{what}, padding_mode={self.padding_mode!r}"


class RandomAffine(_Geometric):
    """Apply several geometric transforms in order with a single resampling.

    ``RandomAffine(Jitter(8), RandomScale(s), RandomRotation(r), Jitter(4))`` draws each step's
    parameters per sample, as the four transforms in sequence would, but multiplies their maps
    and interpolates once: less blur than resampling four times, and one ``grid_sample``. Each
    step keeps its own ``generator``. The border is filled by ``padding_mode``.
    """

    def __init__(self, *steps: _Geometric, padding_mode: str = "reflection") -> None:
        super().__init__()
        for step in steps:
            if not isinstance(step, _Geometric):
                raise TypeError("RandomAffine takes Jitter, RandomScale, RandomRotation or "
                                f"RandomAffine steps, not {type(step).__name__}")
        self.steps = nn.ModuleList(steps)
        self.padding_mode = padding_mode

    def inverse_matrices(self, b: int, h: int, w: int) -> torch.Tensor:
        # Steps applied as M1 first, then M2, ...: the output reads M1^-1 M2^-1 ... Mn^-1 u.
        inverse = _identity_matrices(b)
        for step in self.steps:
            inverse = inverse @ step.inverse_matrices(b, h, w)
        return inverse

    def extra_repr(self) -> str:
        return f"padding_mode={self.padding_mode!r}"


def default_transforms() -> nn.Sequential:
    """The default robustness chain; every random step is drawn per sample.

    Pad 12 px of mid-grey, then in one resampling: jitter up to 8 px, zoom by one of
    0.90, 0.92, ..., 1.10, rotate by a whole number of degrees in [-10, 10], jitter up to 4 px.
    The model input is 24 px larger than the image on each axis.
    """
    return nn.Sequential(
        Pad(12, mode="constant", value=0.5),
        RandomAffine(
            Jitter(8),
            RandomScale([1.0 + (i - 5) / 50.0 for i in range(11)]),
            RandomRotation(list(range(-10, 11))),
            Jitter(4),
        ),
    )
