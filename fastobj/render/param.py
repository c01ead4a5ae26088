"""Image objects: modules whose ``forward()`` returns the batch of images being optimised.

Every image object is an ``nn.Module`` with no input. Calling it returns a ``(B, 3, H, W)``
tensor in its value range (``[0, 1]`` by default), differentiable with respect to the module's
parameters, which are what the optimizer changes. It knows its batch size, its size, the seed
its start was drawn from and its value range. Three bases are offered:

* :class:`PixelImage` optimises one value per pixel and channel.
* :class:`FFTImage` optimises the image's 2-D real Fourier spectrum, with every frequency's
  coefficient scaled by ``1 / frequency ** decay_power``, so gradient steps change low
  frequencies more than high ones: smoother, more natural images than pixels give.
* :class:`MacoImage` optimises only the *phase* of the spectrum; the magnitude is fixed to the
  spectrum of natural images (magnitude-constrained optimisation, "MACO"), which keeps the
  image's power at every frequency natural whatever the objective asks for.

All end with the same colour stage: optionally a fixed linear map that gives the three raw
channels the colour correlations of natural images (``decorrelate=True``, see
:mod:`fastobj.render.color`), then a sigmoid
scaled into the value range. The optimizer therefore works on roughly decorrelated channels.

Each of the B samples has its own random start, drawn from a CPU ``torch.Generator`` seeded
with ``seed``, so a seed gives the same start on every device. :meth:`ImageParameterization.
start_from` instead sets the parameters so that the images equal given pictures (a photograph
to accentuate, say).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .color import color_matrix, decorrelate_colors
from .spectrum import natural_spectrum

__all__ = [
    "ImageParameterization",
    "PixelImage",
    "FFTImage",
    "MacoImage",
    "IMAGE_KINDS",
    "make_parameterization",
    "pair",
]

Size = Union[int, Sequence[int]]
ValueRange = Tuple[float, float]

#: Keeps the logit of a start picture finite where it is exactly 0 or 1 (half an 8-bit step).
_START_MARGIN = 0.5 / 255


def pair(size: Size, owner: str = "image") -> Tuple[int, int]:
    """``(H, W)`` from an int (square) or a pair; both must be positive."""
    if isinstance(size, int) and not isinstance(size, bool):
        h = w = size
    else:
        try:
            h, w = (int(s) for s in size)
        except (TypeError, ValueError):
            raise ValueError(f"{owner}: size must be an int or (H, W), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{owner}: size must be positive, got {size!r}")
    return h, w


class ImageParameterization(nn.Module):
    """Base class: ``batch`` images of ``size`` (int or ``(H, W)``) in ``value_range``.

    Subclasses implement :meth:`raw`, which returns unbounded ``(B, 3, H, W)`` values, and
    :meth:`_set_raw`, its inverse for :meth:`start_from`; the base class applies the colour
    stage (optional decorrelation, then a sigmoid scaled into ``value_range``).
    """

    def __init__(self, batch: int, size: Size, decorrelate: bool = True,
                 seed: Optional[int] = None, value_range: ValueRange = (0.0, 1.0)) -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"{name}: batch must be a positive int, got {batch!r}")
        low, high = (float(v) for v in value_range)
        if not low < high:
            raise ValueError(f"{name}: value_range must be (low, high) with low < high, got "
                             f"{value_range!r}")
        self.batch = batch
        self.height, self.width = pair(size, name)
        self.decorrelate = bool(decorrelate)
        self.seed = None if seed is None else int(seed)
        self.value_range = (low, high)
        self.register_buffer("color_matrix", color_matrix(), persistent=False)

    @property
    def size(self) -> Tuple[int, int]:
        return self.height, self.width

    def _generator(self) -> Optional[torch.Generator]:
        """A fresh CPU generator seeded with ``seed`` (None: torch's global RNG)."""
        return None if self.seed is None else torch.Generator().manual_seed(self.seed)

    def raw(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _set_raw(self, raw: torch.Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self) -> torch.Tensor:
        x = self.raw()
        if self.decorrelate:
            x = decorrelate_colors(x, self.color_matrix)
        low, high = self.value_range
        return low + (high - low) * torch.sigmoid(x)

    @torch.no_grad()
    def start_from(self, images: torch.Tensor) -> "ImageParameterization":
        """Set the parameters so that ``self()`` equals ``images`` (``(B, 3, H, W)`` or one
        ``(3, H, W)`` picture for every sample, in the value range); returns ``self``.

        Values at the ends of the range are moved half an 8-bit step inside it, where the
        sigmoid can still move them.
        """
        name = type(self).__name__
        if images.dim() == 3:
            images = images.unsqueeze(0).expand(self.batch, -1, -1, -1)
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, self.height, self.width) or \
                images.shape[0] != self.batch:
            raise ValueError(f"{name}.start_from: expected images of shape ({self.batch}, 3, "
                             f"{self.height}, {self.width}), got {tuple(images.shape)}")
        low, high = self.value_range
        unit = ((images.double() - low) / (high - low)).clamp(_START_MARGIN, 1 - _START_MARGIN)
        x = torch.logit(unit)
        if self.decorrelate:
            x = decorrelate_colors(x, torch.linalg.inv(self.color_matrix.double().cpu()))
        self._set_raw(x.to(self.color_matrix.device))
        return self

    def extra_repr(self) -> str:
        return (f"batch={self.batch}, size=({self.height}, {self.width}), "
                f"decorrelate={self.decorrelate}, seed={self.seed}, "
                f"value_range={self.value_range}")


class PixelImage(ImageParameterization):
    """One free value per pixel and channel, initialised from ``N(0, sd²)``.

    With the default small ``sd`` every sample starts as a slightly noisy mid-range image.
    """

    def __init__(self, batch: int, size: Size, decorrelate: bool = True, sd: float = 0.01,
                 seed: Optional[int] = None, value_range: ValueRange = (0.0, 1.0)) -> None:
        super().__init__(batch, size, decorrelate, seed, value_range)
        shape = (self.batch, 3, self.height, self.width)
        self.pixels = nn.Parameter(torch.randn(shape, generator=self._generator()) * sd)

    def raw(self) -> torch.Tensor:
        return self.pixels

    def _set_raw(self, raw: torch.Tensor) -> None:
        self.pixels.copy_(raw)


def spectrum_scale(height: int, width: int, decay_power: float) -> torch.Tensor:
    """``1 / max(f, 1/max(H, W)) ** decay_power`` for the ``(H, W//2 + 1)`` rfft frequencies."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    freq = torch.sqrt(fy * fy + fx * fx)
    return 1.0 / freq.clamp(min=1.0 / max(height, width)) ** decay_power


class FFTImage(ImageParameterization):
    """The image as a real 2-D Fourier spectrum with ``1/frequency`` decay.

    The parameter ``spectrum`` holds the real and imaginary parts of the
    ``(B, 3, H, W//2 + 1)`` half-spectrum, initialised from ``N(0, sd²)``. The image is the
    orthonormal inverse real FFT of ``spectrum * scale``, where ``scale`` is
    ``1 / max(f, 1/max(H, W)) ** decay_power`` for the frequency magnitude ``f`` (cycles per
    pixel), then divided by 4 to keep the sigmoid's input in its responsive range at the start.
    """

    output_scale = 4.0

    def __init__(self, batch: int, size: Size, decorrelate: bool = True, sd: float = 0.01,
                 decay_power: float = 1.0, seed: Optional[int] = None,
                 value_range: ValueRange = (0.0, 1.0)) -> None:
        super().__init__(batch, size, decorrelate, seed, value_range)
        self.decay_power = float(decay_power)
        self.register_buffer(
            "scale", spectrum_scale(self.height, self.width, self.decay_power), persistent=False)
        shape = (self.batch, 3, self.height, self.width // 2 + 1, 2)
        self.spectrum = nn.Parameter(torch.randn(shape, generator=self._generator()) * sd)

    def raw(self) -> torch.Tensor:
        coeffs = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(coeffs, s=(self.height, self.width), norm="ortho")
        return image / self.output_scale

    def _set_raw(self, raw: torch.Tensor) -> None:
        coeffs = torch.fft.rfft2(raw * self.output_scale, norm="ortho") / self.scale.to(raw)
        self.spectrum.copy_(torch.view_as_real(coeffs))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", decay_power={self.decay_power}"


class MacoImage(ImageParameterization):
    """Magnitude-constrained image: only the phase of the spectrum is optimised.

    The parameter ``phase`` (``(B, 3, H, W//2 + 1)``, drawn uniformly from ``(-π, π)``) and a
    fixed magnitude ``r`` make the half-spectrum ``r·e^{iφ}``; its inverse real FFT is
    standardised per sample (zero mean, unit standard deviation), then goes through the colour
    stage. ``r`` is the mean Fourier magnitude of natural photographs in the decorrelated colour
    basis (:func:`fastobj.render.spectrum.natural_spectrum`, resized to the image), or the
    ``magnitude`` given (``(3, H, W//2 + 1)``, for instance from
    :func:`fastobj.render.spectrum.spectrum_from_images` on your own pictures). Since the image
    is standardised, only the shape of ``r`` matters, not its scale.

    Where this departs from the published pipeline (Fel et al., NeurIPS 2023), which draws
    ``φ`` from ``N(0, 1)``, standardises it over the whole batch before use and optimises it
    with NAdam at learning rate 1.0:

    * The phase is used as drawn, uniform on the circle. A standardised phase has a mean
      resultant ``E[e^{iφ}] = e^{-1/2} ≈ 0.61``: 61% of every coefficient adds up in phase at
      the origin, so the start is a spike in the image's corner (about 60 standard deviations
      on a 256-pixel canvas) holding 37% of the image's variance, which the standardisation
      then takes from the rest. Uniform phases have no coherent part.
    * On the raw phase the learning rate is 0.1: at 1.0 every phase jumps by about a radian
      per step and the render does not settle. On EfficientNet-Lite0's flamingo and strawberry
      classes (256 pixels, two crops, 40 steps) the loss reached -9.6 with the published
      pipeline, -2.6 with uniform phases at 1.0 and -15 at 0.1, whose renders show flamingos
      and strawberry seeds with no corner spike.
    * The image's standardisation is per sample, so a sample never depends on the rest of the
      batch.

    Otherwise the recipe is the paper's: NAdam, several random crops per step (see
    :func:`fastobj.render.transforms.maco_transforms`), a 512-pixel canvas;
    :func:`fastobj.render.render` applies those defaults for ``param="maco"``.

    A MACO image cannot start from a photograph: its magnitude is fixed, so it can never equal
    one (:meth:`start_from` raises ``ValueError``); accentuate with :class:`FFTImage`.
    """

    def __init__(self, batch: int, size: Size, decorrelate: bool = True,
                 magnitude: Optional[torch.Tensor] = None, seed: Optional[int] = None,
                 value_range: ValueRange = (0.0, 1.0)) -> None:
        super().__init__(batch, size, decorrelate, seed, value_range)
        half = (3, self.height, self.width // 2 + 1)
        if magnitude is None:
            magnitude = natural_spectrum(self.height, self.width)
        magnitude = torch.as_tensor(magnitude, dtype=torch.float32)
        if tuple(magnitude.shape) != half:
            raise ValueError(f"MacoImage: magnitude must have shape {half} for a "
                             f"{self.height}x{self.width} image, got {tuple(magnitude.shape)}")
        if not bool(torch.isfinite(magnitude).all()) or bool((magnitude < 0).any()):
            raise ValueError("MacoImage: magnitude must be finite and non-negative")
        self.register_buffer("magnitude", magnitude.clone(), persistent=False)
        uniform = torch.rand((self.batch,) + half, generator=self._generator())
        self.phase = nn.Parameter((2 * uniform - 1) * math.pi)

    def raw(self) -> torch.Tensor:
        spectrum = torch.polar(self.magnitude.expand_as(self.phase), self.phase)
        image = torch.fft.irfft2(spectrum, s=(self.height, self.width))
        dims = (1, 2, 3)
        image = image - image.mean(dim=dims, keepdim=True)
        return image / image.std(dim=dims, keepdim=True).clamp_min(1e-12)

    def _set_raw(self, raw: torch.Tensor) -> None:
        raise ValueError("MacoImage cannot start from a picture: its Fourier magnitude is fixed, "
                         "so it can never equal one; use FFTImage (param='fft') to accentuate a "
                         "photograph")


IMAGE_KINDS: Dict[str, Callable[..., ImageParameterization]] = {
    "fft": FFTImage, "pixel": PixelImage, "maco": MacoImage}


def make_parameterization(kind: str, batch: int, size: Size, decorrelate: bool = True,
                          seed: Optional[int] = None) -> ImageParameterization:
    """Build the image object named ``kind`` ("fft", "pixel" or "maco"); its start is drawn
    from a CPU generator seeded with ``seed`` (None: torch's global RNG)."""
    try:
        cls = IMAGE_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown image kind {kind!r}; choose one of "
                         f"{', '.join(sorted(IMAGE_KINDS))}") from None
    return cls(batch, size, decorrelate=decorrelate, seed=seed)

