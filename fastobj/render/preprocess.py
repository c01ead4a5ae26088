"""What a pretrained network expects of its input: its native size and its normalisation.

A network trained on ImageNet sees 224x224 images normalised with the ImageNet channel mean
and standard deviation. :class:`Preprocess` applies both to the rendered (and randomly
transformed) batch, inside the differentiable pipeline, so a 128-pixel render is seen by the
network at its own resolution, as it was trained.

A model declares its preprocessing with two optional attributes, read by
:func:`model_preprocess` (and so by :func:`fastobj.render.render` and the commands)::

    model.fastobj_input_size = 224            # int or (H, W): resize to this
    model.fastobj_normalize = "imagenet"      # "imagenet", None, or ((mean...), (std...))
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .param import Size, pair

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "INPUT_SIZE_ATTRIBUTE", "NORMALIZE_ATTRIBUTE",
           "Preprocess", "model_preprocess", "parse_normalize"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

INPUT_SIZE_ATTRIBUTE = "fastobj_input_size"
NORMALIZE_ATTRIBUTE = "fastobj_normalize"

#: What the preprocessing arguments accept as a normalisation: a name or (mean, std).
Normalize = Union[None, str, Tuple[Sequence[float], Sequence[float]]]


def _channel_values(values: Any, what: str) -> torch.Tensor:
    """One value for all three channels, or three, as a (1, 3, 1, 1) float64 tensor (cast to
    the images' dtype when applied)."""
    tensor = torch.as_tensor(values, dtype=torch.float64).flatten()
    if tensor.numel() == 1:
        tensor = tensor.expand(3)
    if tensor.numel() != 3:
        raise ValueError(f"Preprocess: {what} needs 1 or 3 values, got {tensor.numel()}")
    return tensor.reshape(1, 3, 1, 1).clone()


def parse_normalize(value: Normalize) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """``(mean, std)`` as (1, 3, 1, 1) tensors, or None for no normalisation.

    ``value`` is "imagenet", "none" (or None), a string "MEAN,STD" (one value each, for all
    channels) or "M1,M2,M3,S1,S2,S3", or a pair ``(mean, std)`` of 1 or 3 numbers each.
    """
    if value is None:
        return None
    if isinstance(value, str):
        name = value.strip().lower()
        if name == "none":
            return None
        if name == "imagenet":
            return _channel_values(IMAGENET_MEAN, "mean"), _channel_values(IMAGENET_STD, "std")
        try:
            numbers = [float(v) for v in name.split(",")]
        except ValueError:
            numbers = []
        if len(numbers) not in (2, 6):
            raise ValueError(f"normalize={value!r}: use 'imagenet', 'none', 'MEAN,STD' or "
                             "'M1,M2,M3,S1,S2,S3'")
        half = len(numbers) // 2
        value = (numbers[:half], numbers[half:])
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise TypeError(f"normalize must be a name or a pair (mean, std), got {value!r}")
    mean, std = _channel_values(value[0], "mean"), _channel_values(value[1], "std")
    if not bool((std > 0).all()):
        raise ValueError(f"normalize: std must be positive, got {std.flatten().tolist()}")
    return mean, std


class Preprocess(nn.Module):
    """Resize an image batch to ``size`` (bilinear), then normalise it per channel.

    Both steps are differentiable. Shrinking uses an antialiasing filter so that a render
    larger than the model's input is not aliased. ``size=None`` keeps the size; ``normalize``
    is anything :func:`parse_normalize` accepts.
    """

    def __init__(self, size: Optional[Size] = None, normalize: Normalize = None) -> None:
        super().__init__()
        self.size = None if size is None else pair(size, "Preprocess")
        stats = parse_normalize(normalize)
        self.register_buffer("mean", None if stats is None else stats[0], persistent=False)
        self.register_buffer("std", None if stats is None else stats[1], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            shrinking = x.shape[-2] > self.size[0] or x.shape[-1] > self.size[1]
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False,
                              antialias=shrinking)
        if self.mean is not None:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return x

    @property
    def is_identity(self) -> bool:
        return self.size is None and self.mean is None

    def extra_repr(self) -> str:
        norm = "none" if self.mean is None else (
            f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}")
        return f"size={self.size}, {norm}"


def model_preprocess(model: nn.Module, size: Optional[Size] = None,
                     normalize: Union[str, Normalize] = "model") -> Preprocess:
    """The preprocessing for ``model``: its declared attributes, overridden by the arguments.

    ``size=None`` takes the model's ``fastobj_input_size`` (if any); ``normalize="model"``
    takes its ``fastobj_normalize`` (if any, else none).
    """
    if size is None:
        size = getattr(model, INPUT_SIZE_ATTRIBUTE, None)
    if isinstance(normalize, str) and normalize == "model":
        normalize = getattr(model, NORMALIZE_ATTRIBUTE, None)
    return Preprocess(size, normalize)
