"""The render loop and what watches it.

:func:`run_steps` is the whole loop: call the step function ``steps`` times and hand every
:class:`~fastobj.render.step.StepState` to each callback; when the loop ends, normally or by an
exception, every callback that has a ``close()`` method is closed.

A callback is any callable taking a ``StepState``. Those provided:

* :class:`ProgressBar`: a tqdm bar over steps, its loss refreshed at most twice a second.
* :class:`Snapshots`: copies of the images after chosen step counts.
* :class:`Transparency`: ``|∂loss/∂image|`` summed over the steps (MACO's transparency map);
  :func:`transparency_alpha` turns it into an alpha channel.
* :class:`EveryStep`: calls ``fn(step, loss, images)`` after every step.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import torch

from .step import StepState

__all__ = ["EveryStep", "ProgressBar", "Snapshots", "Transparency", "run_steps",
           "transparency_alpha"]


def run_steps(step: Callable[[], StepState], steps: int,
              callbacks: Iterable[Callable[[StepState], Any]] = ()) -> List[torch.Tensor]:
    """Take ``steps`` steps, calling every callback after each; returns the step losses
    (detached 0-dim tensors, on the run's device)."""
    callbacks = list(callbacks)
    losses: List[torch.Tensor] = []
    try:
        for _ in range(steps):
            state = step()
            losses.append(state.loss)
            for callback in callbacks:
                callback(state)
    finally:
        for callback in callbacks:
            close = getattr(callback, "close", None)
            if close is not None:
                close()
    return losses


class ProgressBar:
    """A tqdm progress bar over ``steps``; its loss is refreshed at most every ``every``
    seconds (reading it waits for the device) and at the last step."""

    def __init__(self, steps: int, desc: str = "render", every: float = 0.5) -> None:
        from tqdm.auto import tqdm

        self.steps, self.every, self.shown_at = steps, every, 0.0
        self.bar = tqdm(total=steps, desc=desc, unit="step", leave=False)

    def __call__(self, state: StepState) -> None:
        self.bar.update(1)
        now = time.perf_counter()
        if now - self.shown_at >= self.every or state.step == self.steps:
            self.shown_at = now
            self.bar.set_postfix(loss=f"{state.loss.item():.4g}")

    def close(self) -> None:
        self.bar.close()


class Snapshots:
    """Keeps the images (float32, on the CPU) after each step count in ``at``
    (``images[step]``); :meth:`start` records step 0 before the loop."""

    def __init__(self, at: Sequence[int]) -> None:
        self.at = set(at)
        self.images: Dict[int, torch.Tensor] = {}

    def start(self, image: Callable[[], torch.Tensor]) -> None:
        if 0 in self.at:
            with torch.no_grad():
                self.images[0] = image().detach().float().cpu()

    def __call__(self, state: StepState) -> None:
        if state.step in self.at:
            self.images[state.step] = state.images().cpu()


class Transparency:
    """``|∂loss/∂image|`` summed over the steps: where the render's pixels mattered to the loss.

    ``total`` is ``(B, 3, H, W)`` float32 on the run's device (None before the first step).
    """

    def __init__(self) -> None:
        self.total: Optional[torch.Tensor] = None

    def __call__(self, state: StepState) -> None:
        grad = state.image_grad.detach().abs().float()
        self.total = grad if self.total is None else self.total + grad


def transparency_alpha(total: torch.Tensor, percentile: float = 80.0) -> torch.Tensor:
    """The alpha channel of a transparency map: ``(B, 3, H, W)`` (or ``(3, H, W)``) summed
    gradients to ``(B, H, W)`` (or ``(H, W)``) in ``[0, 1]``.

    Each image's map is averaged over the colour channels, clipped at its ``percentile``-th
    percentile and divided by its maximum, so the top ``100 - percentile`` % of pixels are
    opaque (MACO's display). An image whose map is all zeros gets alpha 0.
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"transparency_alpha: percentile must be in (0, 100], got {percentile}")
    single = total.dim() == 3
    maps = (total.unsqueeze(0) if single else total).float().mean(dim=1)
    if maps.dim() != 3:
        raise ValueError(f"transparency_alpha: expected (B, 3, H, W) or (3, H, W), got shape "
                         f"{tuple(total.shape)}")
    flat = maps.flatten(1)
    rank = max(1, round(percentile / 100 * flat.shape[1]))
    ceiling = flat.kthvalue(rank, dim=1).values.view(-1, 1, 1)
    alpha = torch.minimum(maps, ceiling) / ceiling.clamp_min(torch.finfo(maps.dtype).tiny)
    return alpha[0] if single else alpha


class EveryStep:
    """Calls ``fn(step, loss, images)`` after every step: the step count (from 1), the
    step's loss (a detached 0-dim tensor) and the images after the step (detached, on the run's
    device; computing them costs one pass of the image object per step)."""

    def __init__(self, fn: Callable[[int, torch.Tensor, torch.Tensor], Any]) -> None:
        self.fn = fn

    def __call__(self, state: StepState) -> None:
        self.fn(state.step, state.loss, state.images())
