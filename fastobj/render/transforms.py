"""Random image transforms applied between the image object and the model.

Feature visualizations are optimized through small random transforms so that the image must
excite the target under many shifts, scales and rotations, not only through one fragile
high-frequency pattern. Every random transform here draws its own parameters **for each sample
of the batch**: sample 3 may be shifted left while sample 4 is rotated right. The resampling is
vectorised over the batch (one ``gather`` or one ``affine_grid`` + ``grid_sample`` call per
transform), so the cost does not grow with the number of distinct draws. :class:`RandomAffine`
chains geometric transforms (jitter, scale, rotation) into one map per sample and resamples
once; the default chain uses it.

Two recipes are provided: :func:`default_transforms` (Lucid's: padding, jitter, scale,
rotation) and :func:`maco_transforms` (MACO's: one random crop per view, resized to the model's
input); :class:`Noise` adds MACO's per-view noise after the model's preprocessing.

Random parameters come from the transform's ``generator`` attribute (a CPU
``torch.Generator``) when set, else from torch's global RNG. :func:`draws_from` points every
transform of a chain at one generator for a while, which is how
:class:`fastobj.render.views.Views` makes a run reproducible from its ``seed``.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .param import Size, pair

__all__ = [
    "RandomTransform",
    "Pad",
    "Jitter",
    "RandomScale",
    "RandomRotation",
    "RandomAffine",
    "RandomCrop",
    "Noise",
    "default_transforms",
    "maco_transforms",
    "draws_from",
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


@contextlib.contextmanager
def draws_from(module: nn.Module, generator: Optional[torch.Generator]) -> Iterator[nn.Module]:
    """Make every :class:`RandomTransform` inside ``module`` draw from ``generator`` while the
    context is open; each transform's own generator comes back afterwards."""
    saved: List[Tuple[RandomTransform, Optional[torch.Generator]]] = [
        (m, m.generator) for m in module.modules() if isinstance(m, RandomTransform)]
    try:
        for m, _ in saved:
            m.generator = generator
        yield module
    finally:
        for m, previous in saved:
            m.generator = previous


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


class RandomCrop(RandomTransform):
    """One random crop of each sample, resampled (bilinear) to ``output_size``.

    Each crop's side is a fraction of the image's side drawn uniformly from ``fraction``
    (the same fraction on both axes, so a crop has the image's aspect); its centre, in
    fractions of the image, is drawn per axis from ``N(0.5, centre_sd²)`` and then moved just
    enough for the crop to lie inside the image. ``output_size=None`` keeps the image's size.
    Crops much larger than the output alias (bilinear resampling does not low-pass filter).
    """

    def __init__(self, fraction: Tuple[float, float] = (0.25, 0.30), centre_sd: float = 0.15,
                 output_size: Optional[Size] = None) -> None:
        super().__init__()
        low, high = (float(v) for v in fraction)
        if not 0 < low <= high <= 1:
            raise ValueError(f"RandomCrop: fraction must be (low, high) with 0 < low <= high "
                             f"<= 1, got {fraction!r}")
        if centre_sd < 0:
            raise ValueError(f"RandomCrop: centre_sd must be non-negative, got {centre_sd}")
        self.fraction = (low, high)
        self.centre_sd = float(centre_sd)
        self.output_size = None if output_size is None else pair(output_size, "RandomCrop")

    def boxes(self, n: int) -> torch.Tensor:
        """``(n, 3)`` float64 crops: side fraction, centre x and centre y (fractions)."""
        low, high = self.fraction
        side = low + (high - low) * torch.rand(n, generator=self.generator, dtype=torch.float64)
        centre = 0.5 + self.centre_sd * torch.randn(2, n, generator=self.generator,
                                                    dtype=torch.float64)
        centre = torch.minimum(torch.maximum(centre, side / 2), 1 - side / 2)
        return torch.stack([side, centre[0], centre[1]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        box = self.boxes(b)
        theta = torch.zeros(b, 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = box[:, 0]  # normalised coordinates: -1..1 across the image
        theta[:, 1, 1] = box[:, 0]
        theta[:, 0, 2] = 2 * box[:, 1] - 1
        theta[:, 1, 2] = 2 * box[:, 2] - 1
        out_h, out_w = self.output_size or (h, w)
        grid = F.affine_grid(theta.to(device=x.device, dtype=x.dtype), [b, c, out_h, out_w],
                             align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border",
                             align_corners=False)

    def extra_repr(self) -> str:
        return (f"fraction={self.fraction}, centre_sd={self.centre_sd}, "
                f"output_size={self.output_size}")


class Noise(RandomTransform):
    """Add ``N(0, std²) + U(-uniform, uniform)`` to every value, drawn afresh per call.

    The draw is seeded from ``generator`` (one integer per call) and made on the tensor's own
    device, so no noise crosses from the CPU; a seed gives the same noise on every run on one
    device (the CPU and CUDA generators draw different numbers).
    """

    def __init__(self, std: float = 0.05, uniform: float = 0.025) -> None:
        super().__init__()
        if std < 0 or uniform < 0:
            raise ValueError(f"Noise: std and uniform must be non-negative, got {std}, {uniform}")
        self.std, self.uniform = float(std), float(uniform)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.std == 0 and self.uniform == 0:
            return x
        seed = int(torch.randint(2 ** 62, (1,), generator=self.generator))
        draws = torch.Generator(device=x.device).manual_seed(seed)
        noise = torch.randn(x.shape, generator=draws, device=x.device, dtype=x.dtype) * self.std
        if self.uniform:
            noise += (2 * torch.rand(x.shape, generator=draws, device=x.device, dtype=x.dtype)
                      - 1) * self.uniform
        return x + noise

    def extra_repr(self) -> str:
        return f"std={self.std}, uniform={self.uniform}"


def maco_transforms(output_size: Optional[Size] = None) -> RandomCrop:
    """MACO's view of the image: one crop per view, side 25-30% of the canvas, centre
    ``N(0.5, 0.15²)`` per axis, resampled to ``output_size`` (the model's input size); the
    per-view noise is :class:`Noise` (``std=0.05, uniform=0.025``), added after the model's
    normalisation as in the published implementation."""
    return RandomCrop((0.25, 0.30), 0.15, output_size)
