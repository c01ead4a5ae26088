"""Image parameterizations: modules whose ``forward()`` returns a batch of RGB images.

Every parameterization here is an ``nn.Module`` with no input: calling it returns a
``(B, 3, H, W)`` tensor with values in ``[0, 1]``, differentiable with respect to the module's
parameters, which are what the optimizer changes. Two bases are offered:

* :class:`PixelImage` optimizes one value per pixel and channel.
* :class:`FFTImage` optimizes the image's 2-D real Fourier spectrum, with every frequency's
  coefficient scaled by ``1 / frequency ** decay_power``. Gradient steps then change low
  frequencies more than high ones, which gives smoother, more natural-looking images than
  pixels do for the same number of steps.

Both end with the same colour stage: optionally a fixed linear map that gives the three raw
channels the colour correlations of natural images (``decorrelate=True``), then a sigmoid into
``[0, 1]``. The optimizer therefore works on roughly decorrelated colour channels.

Each of the B samples has its own random start, drawn from a ``torch.Generator`` (seeded by the
caller) on the CPU, so a seed gives the same start on every device.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

__all__ = [
    "COLOR_CORRELATION_SVD_SQRT",
    "ImageParameterization",
    "PixelImage",
    "FFTImage",
    "decorrelate_colors",
    "make_parameterization",
]

Size = Union[int, Sequence[int]]

# Square root (via SVD) of the channel covariance of ImageNet RGB pixels, as estimated for Lucid.
# Column j is the RGB colour that raw channel j contributes.
COLOR_CORRELATION_SVD_SQRT = torch.tensor([
    [0.26, 0.09, 0.02],
    [0.27, 0.00, -0.05],
    [0.27, -0.09, 0.03],
])


def _color_matrix() -> torch.Tensor:
    """The correlation matrix scaled so that its largest column has unit Euclidean norm."""
    m = COLOR_CORRELATION_SVD_SQRT
    return m / m.norm(dim=0).max()


def decorrelate_colors(raw: torch.Tensor, matrix: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Map raw channels to correlated RGB: ``rgb[b, :, y, x] = M @ raw[b, :, y, x]``."""
    m = _color_matrix() if matrix is None else matrix
    return torch.einsum("ij,bjhw->bihw", m.to(device=raw.device, dtype=raw.dtype), raw)


def _pair(size: Size) -> Tuple[int, int]:
    if isinstance(size, int):
        h = w = size
    else:
        h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise ValueError(f"image size must be positive, got {size!r}")
    return h, w


class ImageParameterization(nn.Module):
    """Base class: a batch of ``batch`` images of size ``size`` (int or ``(H, W)``).

    Subclasses implement :meth:`raw`, which returns unbounded ``(B, 3, H, W)`` values; the base
    class applies the colour stage (optional decorrelation, then a sigmoid).
    """

    def __init__(self, batch: int, size: Size, decorrelate: bool = True) -> None:
        super().__init__()
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        self.batch = int(batch)
        self.height, self.width = _pair(size)
        self.decorrelate = bool(decorrelate)
        self.register_buffer("color_matrix", _color_matrix(), persistent=False)

    def raw(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self) -> torch.Tensor:
        x = self.raw()
        if self.decorrelate:
            x = decorrelate_colors(x, self.color_matrix)
        return torch.sigmoid(x)

    def extra_repr(self) -> str:
        return (f"batch={self.batch}, size=({self.height}, {self.width}), "
                f"decorrelate={self.decorrelate}")


class PixelImage(ImageParameterization):
    """One free value per pixel and channel, initialised from ``N(0, sd²)``.

    With the default small ``sd`` every sample starts as a slightly noisy mid-grey image.
    """

    def __init__(self, batch: int, size: Size, decorrelate: bool = True, sd: float = 0.01,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__(batch, size, decorrelate)
        shape = (self.batch, 3, self.height, self.width)
        self.pixels = nn.Parameter(torch.randn(shape, generator=generator) * sd)

    def raw(self) -> torch.Tensor:
        return self.pixels


def _spectrum_scale(height: int, width: int, decay_power: float) -> torch.Tensor:
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
                 decay_power: float = 1.0, generator: Optional[torch.Generator] = None) -> None:
        super().__init__(batch, size, decorrelate)
        self.decay_power = float(decay_power)
        self.register_buffer(
            "scale", _spectrum_scale(self.height, self.width, self.decay_power), persistent=False)
        shape = (self.batch, 3, self.height, self.width // 2 + 1, 2)
        self.spectrum = nn.Parameter(torch.randn(shape, generator=generator) * sd)

    def raw(self) -> torch.Tensor:
        coeffs = torch.view_as_complex(self.spectrum) * self.scale
        image = torch.fft.irfft2(coeffs, s=(self.height, self.width), norm="ortho")
        return image / self.output_scale

    def extra_repr(self) -> str:
        return super().extra_repr() + f", decay_power={self.decay_power}"


_PARAMS = {"fft": FFTImage, "pixel": PixelImage}


def make_parameterization(kind: str, batch: int, size: Size, decorrelate: bool = True,
                          seed: Optional[int] = None,
                          generator: Optional[torch.Generator] = None) -> ImageParameterization:
    """Build the parameterization named ``kind`` ("fft" or "pixel").

    The start is drawn from ``generator`` if given, else from a fresh CPU generator seeded with
    ``seed`` (else the global RNG).
    """
    try:
        cls = _PARAMS[kind]
    except KeyError:
        raise ValueError(f"unknown parameterization {kind!r}; choose one of "
                         f"{', '.join(sorted(_PARAMS))}") from None
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    return cls(batch, size, decorrelate=decorrelate, generator=generator)
