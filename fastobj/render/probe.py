"""The model's side of a render: borrowing the model, choosing the device, reading activations.

* :func:`borrowed`: for a run, the model's parameters stop requiring gradients and it is in
  eval mode; afterwards every flag is restored, on success, on error and on
  ``KeyboardInterrupt`` alike.
* :func:`run_device`: the device a run uses (the model's, unless asked otherwise).
* :func:`check_targets`: refuse a target name that names no submodule, before anything runs.
* :class:`ActivationProbe`: forward hooks on the target modules for the length of a run; a call
  runs the model on an input and returns ``{target: activation}``, optionally cutting the
  forward pass short once every target has been computed. Its hooks capture only during its
  own calls, so several probes can watch one model, and they are removed when it closes.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import torch
from torch import nn

from ..checks import unique_targets
from ..hooks import resolve_target
from ..layout import plain_target

__all__ = ["IMAGE_TARGET", "ActivationProbe", "borrowed", "check_targets", "is_image_target",
           "run_device"]

#: The target name that means "the rendered image batch": the image object's output,
#: ``(B, 3, H, W)`` in its value range, *before* the views. Use it for image priors such as
#: ``TotalVariation("image")`` or ``L2("image", 0.5)``. The name is reserved: a model submodule
#: that is itself called "image" must be targeted by passing the module object.
IMAGE_TARGET = "image"


def is_image_target(target: Any) -> bool:
    """Whether ``target`` names the rendered image batch (:data:`IMAGE_TARGET`)."""
    target = plain_target(target)
    return isinstance(target, str) and target == IMAGE_TARGET


def _model_device(model: nn.Module) -> Optional[torch.device]:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return None


def run_device(model: nn.Module, device: Union[None, str, torch.device] = None) -> torch.device:
    """The device of a run on ``model``: ``device`` if given (it must be the model's device
    type), else the model's, else the CPU."""
    model_device = _model_device(model)
    if device is None:
        return model_device or torch.device("cpu")
    device = torch.device(device)
    if model_device is not None and (
            model_device.type != device.type
            or (device.index is not None and model_device.index not in (None, device.index))):
        raise ValueError(f"the model is on {model_device} but device={device!s} was asked for; "
                         "move the model first (model.to(device))")
    return device


def check_targets(model: nn.Module, targets: Iterable[Any]) -> None:
    """Refuse (ValueError) a target name that is neither a submodule of ``model`` nor
    :data:`IMAGE_TARGET`."""
    for target in map(plain_target, targets):
        if isinstance(target, str) and not is_image_target(target):
            try:
                resolve_target(model, target, "unknown target")
            except KeyError as exc:
                raise ValueError(f"{exc.args[0]}; {IMAGE_TARGET!r} names the rendered "
                                 "image") from None


@contextlib.contextmanager
def borrowed(model: nn.Module) -> Iterator[nn.Module]:
    """Freeze the model and put it in eval mode; restore both flags on exit, whatever happens."""
    grads = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        for p, _ in grads:
            p.requires_grad_(False)
        model.eval()
        yield model
    finally:
        for p, flag in grads:
            p.requires_grad_(flag)
        for m, flag in modes:
            m.training = flag


class _StopForward(Exception):
    """Raised from a forward hook to cut the model's forward pass short."""


class ActivationProbe:
    """Hooks on the modules of ``targets``; calling the probe runs ``forward`` on an input
    and returns ``{target: activation}`` (keys exactly as given).

    Args:
        model: resolves target names; also the default ``forward``.
        targets: modules or submodule names (layout targets read their plain target's module).
        stop_early: end each forward pass as soon as every target module has run.
        forward: what a call runs; default ``model`` (a :class:`~fastobj.render.views.Views`
            followed by the model, say, to capture a transform's output).

    Each target keeps the first output its module produces during a call. A call raises
    ``RuntimeError`` when a target's module did not run. Use as a context manager, or call
    :meth:`close`; the hooks capture nothing outside the probe's own calls.
    """

    def __init__(self, model: nn.Module, targets: Sequence[Any], stop_early: bool = False,
                 forward: Optional[Callable[[torch.Tensor], Any]] = None) -> None:
        self.forward = model if forward is None else forward
        self.targets = unique_targets(targets)
        self.stop_early = bool(stop_early)
        self._by_module: Dict[int, List[Any]] = {}
        modules: Dict[int, nn.Module] = {}
        for target in self.targets:
            module = resolve_target(model, target, "render")
            modules[id(module)] = module
            self._by_module.setdefault(id(module), []).append(target)
        self._outputs: Dict[Any, Any] = {}
        self._active = False
        self._handles = [m.register_forward_hook(self._hook) for m in modules.values()]

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if not self._active:
            return
        for target in self._by_module[id(module)]:
            self._outputs.setdefault(target, output)
        if self.stop_early and len(self._outputs) == len(self.targets):
            raise _StopForward()

    @contextlib.contextmanager
    def capturing(self) -> Iterator[Dict[Any, Any]]:
        """Capture while the context is open: the mapping yielded fills with
        ``{target: output}`` as the target modules run (a forward pass cut short by
        ``stop_early`` ends the context quietly)."""
        if not self._handles and self.targets:
            raise RuntimeError("ActivationProbe: the probe is closed")
        outputs: Dict[Any, Any] = {}
        self._outputs = outputs
        self._active = True
        try:
            yield outputs
        except _StopForward:
            pass
        finally:
            self._active = False
            self._outputs = {}

    def check(self, outputs: Dict[Any, Any]) -> Dict[Any, Any]:
        """``outputs``, or a RuntimeError naming the targets whose module did not run."""
        missing = [t for t in self.targets if t not in outputs]
        if missing:
            raise RuntimeError(f"no activation was captured for target(s) {missing!r}: they did "
                               "not run in the forward pass")
        return outputs

    def __call__(self, model_input: torch.Tensor,
                 max_batch: Optional[int] = None) -> Dict[Any, Any]:
        """Run ``forward(model_input)`` and return ``{target: activation}``.

        With ``max_batch``, the forward pass runs on consecutive slices of at most ``max_batch``
        rows and each target's activations are concatenated (every output must be a tensor
        with the batch first): the same values, with each layer working on smaller batches,
        which is faster where large batches spill out of the processor's caches.
        """
        rows = model_input.shape[0] if model_input.dim() else 0
        if max_batch is None or rows <= max_batch:
            return self._run(model_input)
        parts = [self._run(chunk) for chunk in model_input.split(max_batch)]
        joined = {}
        for target in parts[0]:
            values = [part[target] for part in parts]
            if not all(isinstance(v, torch.Tensor) for v in values):
                raise ValueError(f"render: the output of {target!r} is not a tensor, so the "
                                 "forward pass cannot run in slices; leave max_batch unset")
            joined[target] = torch.cat(values)
        return joined

    def _run(self, model_input: torch.Tensor) -> Dict[Any, Any]:
        with self.capturing() as outputs:
            if self.targets or not self.stop_early:
                self.forward(model_input)
        return self.check(outputs)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> "ActivationProbe":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
