"""One optimisation step of a render, and the optimizer it uses.

:class:`RenderStep` holds the parts of a render (the image object, the views, the model's
activation probe, the objective, the optimizer, optionally an :class:`~fastobj.render.
accentuate.Anchor`) and takes one step when called:

1. make the images (``image()``) and detach them into a leaf, so that the gradient with respect
   to the images, ``∂loss/∂image``, is kept (the transparency map accumulates it);
2. make the ``K·B`` views and run the model on them, as one batch or in passes of at most
   ``max_batch`` inputs. A pass holds whole view sets and back-propagates before the next, so
   the model's memory is bounded by ``max(max_batch, B)`` inputs; below ``B``, each view set's
   forward pass runs in slices of ``max_batch`` (faster on a CPU whose caches large batches
   overflow). The result does not depend on it;
3. evaluate the objective on each view set, summarise it (``-mean`` by default) and average
   over the ``K`` view sets; add the anchor's penalty; back-propagate;
4. back-propagate the images' gradient into the image object's parameters and take an
   optimizer step.

It returns a :class:`StepState`, which callbacks read (see :mod:`fastobj.render.callbacks`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Dict, Optional, Sequence, Union

import torch

from ..loss import default_loss_summarize
from .param import ImageParameterization
from .probe import ActivationProbe
from .views import Views, split_view_sets

__all__ = ["OPTIMIZERS", "RenderStep", "StepState", "make_optimizer"]

#: The optimizers known by name; any callable ``optimizer(parameters, lr)`` works too.
OPTIMIZERS: Dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam, "nadam": torch.optim.NAdam, "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD}

OptimizerSpec = Union[str, Callable[..., torch.optim.Optimizer]]


def make_optimizer(optimizer: OptimizerSpec, parameters: Sequence[torch.Tensor],
                   lr: float) -> torch.optim.Optimizer:
    """The optimizer named ``optimizer`` (see :data:`OPTIMIZERS`), or ``optimizer(parameters,
    lr)`` for a callable (a class such as ``torch.optim.AdamW`` works)."""
    if callable(optimizer):
        return optimizer(list(parameters), lr)
    try:
        cls = OPTIMIZERS[str(optimizer).lower()]
    except KeyError:
        raise ValueError(f"unknown optimizer {optimizer!r}; use one of "
                         f"{', '.join(OPTIMIZERS)} or a callable optimizer(parameters, lr)"
                         ) from None
    return cls(list(parameters), lr=lr)


@dataclass
class StepState:
    """What one step leaves for the callbacks.

    Attributes:
        step: the steps taken so far, from 1.
        loss: the value minimised at this step, a detached 0-dim float32 tensor (on the run's
            device: reading it waits for the device).
        image_grad: ``∂loss/∂image`` at this step, ``(B, 3, H, W)`` float32 on the run's device.
        image: the image object (already updated by this step).
    """

    step: int
    loss: torch.Tensor
    image_grad: torch.Tensor
    image: ImageParameterization
    _after: Optional[torch.Tensor] = field(default=None, repr=False)

    def images(self) -> torch.Tensor:
        """The images after this step (float32, detached, on the run's device), computed on
        first use: one pass of the image object, shared by every callback."""
        if self._after is None:
            with torch.no_grad():
                self._after = self.image().detach().float()
        return self._after


def _sets_per_pass(max_batch: Optional[int], count: int, batch: int) -> int:
    """How many view sets one pass (forward, objective, backward) takes: all, or as many
    whole sets as fit in ``max_batch`` inputs, at least one."""
    if max_batch is None:
        return count
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"render: max_batch must be a positive int, got {max_batch!r}")
    return max(1, min(count, max_batch // batch))


class RenderStep:
    """One optimisation step of a render; call it to take a step (see the module docstring).

    Args:
        image: the image object; its parameters are what ``optimizer`` updates.
        views: the view pipeline (``K = views.count`` views of each image).
        probe: the model's activation probe; its targets are the objective's model-side
            targets (and the anchor's layer).
        objective: maps ``{target: activation}`` of one view set to a tensor.
        optimizer: over the image object's parameters.
        summarize: the objective's value to the scalar to minimise; default ``-mean``.
        view_probe: captures the outputs of modules inside ``views`` that are targets.
        image_targets: targets that mean the image batch (:data:`~fastobj.render.probe.
            IMAGE_TARGET`, the image object itself): they receive the images, not views.
        anchor: feature accentuation's penalty (:class:`~fastobj.render.accentuate.Anchor`),
            with ``anchor_probe`` reading its layer on the anchor picture's views.
        max_batch: the most model inputs per forward pass (see step 2 above); None: all.
        autocast: a context manager (e.g. bfloat16 autocast) around views, model and
            objective; the summarised loss is cast to float32 before the backward pass.
    """

    def __init__(self, image: ImageParameterization, views: Views, probe: ActivationProbe,
                 objective: Callable[[Dict[Any, Any]], torch.Tensor],
                 optimizer: torch.optim.Optimizer, *,
                 summarize: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 view_probe: Optional[ActivationProbe] = None,
                 image_targets: Sequence[Any] = (), anchor: Any = None,
                 anchor_probe: Optional[ActivationProbe] = None,
                 max_batch: Optional[int] = None,
                 autocast: Optional[Callable[[], ContextManager]] = None) -> None:
        self.image, self.views, self.probe = image, views, probe
        self.objective, self.optimizer = objective, optimizer
        self.summarize = default_loss_summarize if summarize is None else summarize
        self.view_probe = view_probe
        self.image_targets = list(image_targets)
        if anchor is not None and anchor_probe is None:
            raise ValueError("RenderStep: an anchor needs an anchor_probe on its layer")
        self.anchor, self.anchor_probe = anchor, anchor_probe
        self.sets_per_pass = _sets_per_pass(max_batch, views.count, image.batch)
        self.max_batch = max_batch
        self.autocast = autocast or contextlib.nullcontext
        self.steps_taken = 0

    def _summarised(self, acts: Dict[Any, Any]) -> torch.Tensor:
        value = self.summarize(self.objective(acts))
        if value.dim() != 0:
            raise ValueError(f"summarize must return a scalar, got shape {tuple(value.shape)}")
        return value.float()

    def _passes(self, leaf: torch.Tensor):
        """Per model pass: (objective loss, anchor distance per sample or None, last pass?),
        each already divided by the number of view sets ``K``."""
        count, batch = self.views.count, self.image.batch
        with self.autocast():
            if self.view_probe is not None:
                with self.view_probe.capturing() as view_acts:
                    inputs = self.views(leaf)
                self.view_probe.check(view_acts)
            else:
                view_acts, inputs = {}, self.views(leaf)
            anchor_inputs = None
            if self.anchor is not None:
                with torch.no_grad():
                    anchor_inputs = self.views.replay(self.anchor.picture.to(leaf))
        whole = {target: leaf for target in self.image_targets}
        for first in range(0, count, self.sets_per_pass):
            sets = min(count - first, self.sets_per_pass)
            rows = slice(first * batch, (first + sets) * batch)
            with self.autocast():
                acts = self.probe(inputs[rows], self.max_batch)
                acts.update({t: v[rows] for t, v in view_acts.items()})
                acts.update(whole)
                view_sets = split_view_sets(acts, sets, batch, whole=tuple(whole))
                loss = sum(self._summarised(s) for s in view_sets) / count
                distance = None
                if self.anchor is not None:
                    with torch.no_grad():
                        reference = self.anchor_probe(anchor_inputs[rows], self.max_batch)[
                            self.anchor.layer]
                    distance = sum(self.anchor.distance(a, r) for a, r in zip(
                        acts[self.anchor.layer].split(batch), reference.split(batch))) / count
            yield loss, distance, first + sets == count

    def __call__(self) -> StepState:
        self.optimizer.zero_grad(set_to_none=True)
        images = self.image()  # float32 even under autocast: FFT and colour stage
        leaf = images.detach().requires_grad_()
        balancing = self.anchor is not None and self.anchor.needs_balance
        apart = [torch.zeros_like(leaf), torch.zeros_like(leaf)] if balancing else []
        total = torch.zeros((), device=leaf.device)
        distances = torch.zeros(self.image.batch, device=leaf.device)
        for loss, distance, last in self._passes(leaf):
            if distance is not None:
                distances += distance.detach()
            if balancing:  # the objective's and the anchor's gradients apart, to weigh them
                apart[0] += _gradient(loss, leaf, retain=True)
                apart[1] += _gradient(distance.mean(), leaf, retain=not last)
            else:
                if distance is not None:
                    loss = loss + self.anchor.penalty(distance)
                if loss.requires_grad:
                    loss.backward(retain_graph=not last)
            total += loss.detach()
        if balancing:
            leaf.grad = self.anchor.balance(images, list(self.image.parameters()), *apart)
            total += self.anchor.penalty(distances)
        if leaf.grad is None:  # nothing depended on the images
            leaf.grad = torch.zeros_like(leaf)
        images.backward(leaf.grad)
        self.optimizer.step()
        self.steps_taken += 1
        return StepState(self.steps_taken, total, leaf.grad, self.image)


def _gradient(value: torch.Tensor, leaf: torch.Tensor, retain: bool) -> torch.Tensor:
    """``∂value/∂leaf`` (zeros where ``value`` does not depend on ``leaf``)."""
    if not value.requires_grad:
        return torch.zeros_like(leaf)
    grad = torch.autograd.grad(value, leaf, retain_graph=retain, allow_unused=True)[0]
    return torch.zeros_like(leaf) if grad is None else grad
