"""The view pipeline: what the model sees of the images at each step.

:class:`Views` turns a batch of ``B`` images into ``K·B`` model inputs: ``K`` random views of
every image (``count=K``), each drawn independently through the transforms (random crops,
jitter, rotation...), then the model's preprocessing (resize, normalise), then optional noise.
The views are laid out view-major: rows ``k·B .. k·B + B - 1`` hold view ``k`` of images
``0 .. B-1``. Such a block of ``B`` rows is a *view set*, one view of every image.

Objectives are evaluated on each view set separately and averaged over the ``K`` view sets
(:func:`split_view_sets`). So a per-sample target (``ChannelActivation(layer, [c0, c1, ...])``,
``batch_index=b``) applies to every view of its image, and objectives that compare the samples
of a batch (Diversity, Alignment) compare *different images* seen the same way, never two
views of one image.

A ``Views`` owns a CPU generator seeded with ``seed``; every random transform inside it draws
from that generator while the views are made, so a seed gives the same views on every device.
:meth:`Views.replay` makes the same views of other images (the photograph that feature
accentuation compares against, say).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Union

import torch
from torch import nn

from .transforms import draws_from

__all__ = ["Views", "split_view_sets"]

Transform = Union[nn.Module, Callable[[torch.Tensor], torch.Tensor]]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class _Step(nn.Module):
    """A callable that is not a module, held as a module so ``Views`` can contain it."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _as_module(step: Optional[Transform], name: str) -> nn.Module:
    if step is None:
        return _Step(_identity)
    if isinstance(step, nn.Module):
        return step
    if callable(step):
        return _Step(step)
    raise TypeError(f"Views: {name} must be an nn.Module, a callable or None, got "
                    f"{type(step).__name__}")


class Views(nn.Module):
    """``count`` random views of each image: transforms, then preprocessing, then noise.

    Args:
        count: views per image, ``K`` (at least 1).
        transforms: applied to the ``K·B`` repeated images (each row draws its own random
            parameters); None for none.
        preprocess: the model's preprocessing (e.g. :class:`~fastobj.render.preprocess.
            Preprocess`), applied after the transforms; None for none.
        noise: applied last, in the model's input units (e.g. :class:`~fastobj.render.
            transforms.Noise`); None for none.
        seed: seeds the view generator; None draws its seed from torch's global RNG.
        channels_last: lay the views out channels-last in memory (same values): convolutions
            on a CPU run faster on such inputs (see ``render``'s ``channels_last``).
    """

    def __init__(self, count: int = 1, transforms: Optional[Transform] = None,
                 preprocess: Optional[Transform] = None, noise: Optional[Transform] = None,
                 seed: Optional[int] = None, channels_last: bool = False) -> None:
        super().__init__()
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"Views: count must be a positive int, got {count!r}")
        self.count = count
        self.transforms = _as_module(transforms, "transforms")
        self.preprocess = _as_module(preprocess, "preprocess")
        self.noise = _as_module(noise, "noise")
        if seed is None:
            seed = int(torch.randint(2 ** 62, (1,)))
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.channels_last = bool(channels_last)
        self._last_state: Optional[torch.Tensor] = None

    def _make(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(f"Views: expected a (B, C, H, W) image batch, got shape "
                             f"{tuple(images.shape)}")
        x = images.repeat(self.count, 1, 1, 1) if self.count > 1 else images
        with draws_from(self, self.generator):
            x = self.noise(self.preprocess(self.transforms(x)))
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The ``(K·B, ...)`` model inputs, view-major, with fresh random draws."""
        self._last_state = self.generator.get_state()
        return self._make(images)

    def replay(self, images: torch.Tensor) -> torch.Tensor:
        """The views of ``images`` drawn exactly as the last :meth:`forward` drew its own
        (same crops, shifts and noise); the generator then continues where it was."""
        if self._last_state is None:
            raise RuntimeError("Views.replay: no views have been drawn yet")
        after = self.generator.get_state()
        self.generator.set_state(self._last_state)
        try:
            return self._make(images)
        finally:
            self.generator.set_state(after)

    def extra_repr(self) -> str:
        return f"count={self.count}, seed={self.seed}, channels_last={self.channels_last}"


def split_view_sets(activations: Dict[Any, Any], count: int, batch: int,
                    whole: Any = ()) -> List[Dict[Any, Any]]:
    """Cut ``{target: (count·batch, ...)}`` into ``count`` mappings of ``batch`` rows each.

    Targets listed in ``whole`` are passed to every view set unchanged (the image batch,
    which is not viewed). Every other value must be a tensor with ``count·batch`` rows.
    """
    if count == 1:
        return [activations]
    sets: List[Dict[Any, Any]] = [{} for _ in range(count)]
    for target, value in activations.items():
        if target in whole:
            for view_set in sets:
                view_set[target] = value
            continue
        if not isinstance(value, torch.Tensor) or value.dim() == 0 \
                or value.shape[0] != count * batch:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
            raise ValueError(f"views: the activation of {target!r} has shape {shape}; with "
                             f"{count} views of {batch} images it needs {count * batch} rows "
                             "(batch first)")
        for k, part in enumerate(value.split(batch)):
            sets[k][target] = part
    return sets
