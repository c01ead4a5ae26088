"""Capturing the activations that objectives read.

Targets are modules or names of submodules ("layer3.1.conv2"); the captured mapping is keyed by
the targets exactly as given. Every hook added here is removed again on every path: after a
normal run, when the model's forward raises, and when a capture object is garbage-collected.
"""
from __future__ import annotations

import warnings
import weakref
from typing import Any, Dict, Iterable, List, Optional

import torch
import torch.nn as nn

from .checks import listify, unique_targets
from .layout import plain_target


def resolve_target(model: Optional[nn.Module], target: Any, owner: str = "fastobj") -> nn.Module:
    """The module a target denotes: the module itself, or ``model``'s submodule of that name.

    A layout target (:mod:`fastobj.layout`) denotes the module of its plain target.
    """
    target = plain_target(target)
    if isinstance(target, nn.Module):
        return target
    if isinstance(target, str):
        if model is None:
            raise ValueError(f"{owner}: target {target!r} is a submodule name, but no model was "
                             "given to resolve it against")
        try:
            return model.get_submodule(target)
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n]
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise KeyError(f"{owner}: the model has no submodule named {target!r} "
                           f"(its submodules: {shown})") from None
    raise TypeError(f"{owner}: a target must be an nn.Module or a submodule name (str), got "
                    f"{type(target).__name__}")


class ModuleOutputsHook:
    """Forward hooks that keep the first output of each target module until consumed.

    ``outputs`` maps each target (as given) to its captured tensor, or None before the
    forward pass reaches it. Use as a context manager, or call :meth:`remove_hooks`.
    """

    def __init__(self, target_modules: Iterable[Any], model: Optional[nn.Module] = None) -> None:
        self.hooks: List[torch.utils.hooks.RemovableHandle] = []  # first: __del__ reads it
        self._targets = unique_targets(target_modules)
        self.outputs: Dict[Any, Optional[torch.Tensor]] = dict.fromkeys(self._targets, None)
        try:
            for target in self._targets:
                module = resolve_target(model, target, "ModuleOutputsHook")
                self.hooks.append(module.register_forward_hook(self._make_hook(target)))
        except BaseException:
            self.remove_hooks()
            raise

    def _make_hook(self, target: Any):
        # A weak reference: the module keeps the hook alive, and a hook holding this object
        # strongly would keep it (and its captured outputs) alive too, so __del__ never ran.
        owner = weakref.ref(self)

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            self = owner()
            if self is None:
                return
            if self.outputs[target] is None:
                self.outputs[target] = output
            else:
                warnings.warn(f"ModuleOutputsHook: the hook on {target!r} was called multiple "
                              "times before its output was consumed; keeping the first output",
                              stacklevel=2)
        return hook

    @property
    def targets(self) -> List[Any]:
        return list(self.outputs.keys())

    @property
    def is_ready(self) -> bool:
        return all(v is not None for v in self.outputs.values())

    def consume_outputs(self) -> Dict[Any, Optional[torch.Tensor]]:
        """Return the captured outputs and reset for the next forward pass."""
        if not self.is_ready:
            missing = [t for t, v in self.outputs.items() if v is None]
            warnings.warn(f"ModuleOutputsHook: no output was captured for {missing!r}; the "
                          "forward pass did not reach these targets", stacklevel=2)
        outputs, self.outputs = self.outputs, dict.fromkeys(self._targets, None)
        return outputs

    def remove_hooks(self) -> None:
        for handle in self.hooks:
            handle.remove()
        self.hooks = []

    def __enter__(self) -> "ModuleOutputsHook":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove_hooks()

    def __del__(self) -> None:
        self.remove_hooks()


class ActivationFetcher:
    """Single use: run the model once and return the target activations, hooks removed."""

    def __init__(self, model: nn.Module, targets: Iterable[Any]) -> None:
        self.model = model
        self.layers = ModuleOutputsHook(targets, model)

    def __call__(self, input_t: Any) -> Dict[Any, Optional[torch.Tensor]]:
        if not self.layers.hooks and self.layers.targets:
            raise RuntimeError("ActivationFetcher is single use: its hooks were removed after "
                               "the first call; create a new ActivationFetcher")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model(input_t)
            missing = [t for t, v in self.layers.outputs.items() if v is None]
            if missing:
                raise KeyError(f"ActivationFetcher: the forward pass produced no output for "
                               f"target(s) {missing!r}")
            return self.layers.consume_outputs()
        finally:
            self.layers.remove_hooks()


def collect_activations(model: nn.Module, targets: Any,
                        model_input: Optional[torch.Tensor] = None) -> Dict[Any, torch.Tensor]:
    """Run ``model(model_input)`` once and return ``{target: activation}``.

    ``targets`` is one target or a list (modules or submodule names; de-duplicated in order).
    ``model_input`` defaults to ``torch.zeros(1, 3, 224, 224)``.
    """
    if model_input is None:
        model_input = torch.zeros(1, 3, 224, 224)
    return ActivationFetcher(model, unique_targets(listify(targets)))(model_input)
