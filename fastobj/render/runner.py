"""The optimization loop that renders feature visualizations.

:func:`render` optimizes a batch of images (an image parameterization, see
:mod:`fastobj.render.param`) so that a model's activations, captured by forward hooks,
maximise a fastobj objective. Each step: build the images, apply the random transforms (drawn
per sample, see :mod:`fastobj.render.transforms`), run the model, hand the captured
activations to the objective, summarise its value to a scalar to minimise (by default
``-mean``), back-propagate into the image parameters and take an optimizer step.

The model is only borrowed: for the run its parameters stop requiring gradients and it is put
in eval mode; afterwards each parameter's ``requires_grad`` flag and each submodule's
``training`` flag are restored and every hook is removed, on success, on error and on
``KeyboardInterrupt`` alike.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..hooks import ModuleOutputsHook, resolve_target
from ..layout import plain_target
from ..loss import default_loss_summarize, targets_of
from .expression import parse_objective
from .param import ImageParameterization, Size, make_parameterization
from .preprocess import model_preprocess
from .transforms import RandomTransform, default_transforms

__all__ = ["IMAGE_TARGET", "RenderResult", "render"]

#: The target name that means "the rendered image batch": the parameterization's output,
#: ``(B, 3, H, W)`` in ``[0, 1]``, *before* the random transforms. Use it for image priors such
#: as ``TotalVariation("image")`` or ``L2("image", 0.5)``. The name is reserved: a model
#: submodule that is itself called "image" must be targeted by passing the module object.
IMAGE_TARGET = "image"

_DEFAULT = "default"


class _StopForward(Exception):
    """Raised from a forward hook to cut the model's forward pass short (``stop_early``)."""


@dataclass
class RenderResult:
    """What :func:`render` returns.

    Attributes:
        images: the final images, ``(B, 3, H, W)`` float32 in ``[0, 1]``, detached, on the CPU.
        history: the summarised loss (the value minimised) of every step, as floats.
        parameterization: the optimized parameterization module (on the run's device).
        seconds: wall-clock time of the optimization loop.
        steps: the number of optimizer steps taken.
        intermediate: the images after each step count asked for in ``thresholds``
            (``{step: (B, 3, H, W)}`` on the CPU; step 0 is the start).
    """

    images: torch.Tensor
    history: List[float]
    parameterization: nn.Module
    seconds: float = 0.0
    steps: int = 0
    intermediate: Dict[int, torch.Tensor] = field(default_factory=dict)


def _model_device(model: nn.Module) -> Optional[torch.device]:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return None


def _pick_device(model: nn.Module, device: Union[None, str, torch.device]) -> torch.device:
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


def _make_optimizer(optimizer: Union[str, Callable[..., torch.optim.Optimizer]],
                    params: List[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if callable(optimizer):
        return optimizer(params, lr)
    name = str(optimizer).lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"unknown optimizer {optimizer!r}; use 'adam', 'sgd' or a callable "
                     "optimizer(parameters, lr)")


def _check_target_names(model: nn.Module, targets: Iterable[Any]) -> None:
    """Refuse (ValueError) a target name that is neither a submodule nor :data:`IMAGE_TARGET`."""
    for target in map(plain_target, targets):
        if isinstance(target, str) and not _is_image_name(target):
            try:
                resolve_target(model, target, "unknown target")
            except KeyError as exc:
                raise ValueError(f"{exc.args[0]}; {IMAGE_TARGET!r} names the rendered "
                                 "image") from None


@contextlib.contextmanager
def _borrowed(model: nn.Module):
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


@contextlib.contextmanager
def _seeded(transform: Any, generator: torch.Generator):
    """Point every random transform inside ``transform`` at ``generator`` for the run."""
    saved: List[Tuple[RandomTransform, Optional[torch.Generator]]] = []
    if isinstance(transform, nn.Module):
        saved = [(m, m.generator) for m in transform.modules() if isinstance(m, RandomTransform)]
    try:
        for m, _ in saved:
            m.generator = generator
        yield
    finally:
        for m, previous in saved:
            m.generator = previous


class _StopAfterTargets:
    """Forward hooks that raise :class:`_StopForward` once every given module has run.

    Registered after the capture hooks, so on each module the activation is stored first.
    """

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        self.pending = {id(m) for m in modules}
        self.seen: set = set()
        self.handles = [m.register_forward_hook(self._hook) for m in modules]

    def reset(self) -> None:
        self.seen = set()

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self.seen.add(id(module))
        if self.seen >= self.pending:
            raise _StopForward()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def render(model: nn.Module, objective: Any, *, batch_size: int = 8,
           image_size: Size = 128, steps: int = 256, lr: float = 0.05,
           optimizer: Union[str, Callable[..., torch.optim.Optimizer]] = "adam",
           seed: Optional[int] = 0, device: Union[None, str, torch.device] = None,
           param: Union[str, ImageParameterization] = "fft", decorrelate: bool = True,
           transforms: Any = _DEFAULT, preprocess: Any = "model", autocast_bf16: bool = False,
           stop_early: bool = False, progress: bool = True,
           summarize: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
           thresholds: Sequence[int] = (),
           callback: Optional[Callable[[int, torch.Tensor, torch.Tensor], Any]] = None,
           ) -> RenderResult:
    """Optimize a batch of images to maximise ``objective`` on ``model``.

    Args:
        model: the network. Not modified: it is frozen and in eval mode during the run, then
            its flags are restored. Its device is the run's device unless ``device`` says so.
        objective: a fastobj objective (or any object with ``.target`` and
            ``__call__(activations)``), or a string for
            :func:`~fastobj.render.expression.parse_objective` (an expression, or Lucent's
            ``"layer:channel"``). Targets are submodules of ``model`` (objects or dotted
            names such as ``"features.3"``), image-side modules (the parameterization, a
            transform), or :data:`IMAGE_TARGET` (``"image"``: the image batch before transforms).
        batch_size: number of images B, each with its own random start and transforms.
        image_size: ``H`` (square) or ``(H, W)``.
        steps: optimizer steps.
        lr: learning rate.
        optimizer: "adam", "sgd" (plain SGD), or a callable ``optimizer(parameters, lr)``
            returning a ``torch.optim.Optimizer`` (a class such as ``torch.optim.AdamW`` works).
        seed: seeds the images' starts and the transforms' draws (CPU generators, so a seed
            gives the same starts on every device). ``None`` uses torch's global RNG.
        device: where to run; default the model's device (CPU for a model without tensors).
        param: "fft" (spectrum with 1/f scaling), "pixel", or a ready
            :class:`~fastobj.render.param.ImageParameterization` (then ``batch_size``,
            ``image_size``, ``decorrelate`` and the start seed are its own).
        decorrelate: give the raw channels natural colour correlations (see ``param.py``).
        transforms: "default" (:func:`~fastobj.render.transforms.default_transforms`), ``None``
            for none, or any module/callable mapping an image batch to a model input.
        preprocess: applied after the transforms: "model" (the model's declared input size
            and normalisation, see :func:`~fastobj.render.preprocess.model_preprocess`; none
            if it declares nothing), ``None``, or a module/callable such as
            :class:`~fastobj.render.preprocess.Preprocess`.
        autocast_bf16: run the transforms, the model and the objective under bfloat16
            autocast (the parameterization stays float32, and the summarised loss is cast to
            float32 before the backward pass). CUDA only; elsewhere it raises ``ValueError``.
        stop_early: stop the model's forward pass as soon as every model-side target has been
            computed, skipping the layers after the deepest one.
        progress: show a tqdm progress bar. Its loss is refreshed at most twice a second
            (reading it waits for the device) and at the last step.
        summarize: maps the objective's value to the scalar to minimise; default
            :func:`fastobj.loss.default_loss_summarize` (``-mean``).
        thresholds: step counts (0 to ``steps``) after which to keep a copy of the images,
            returned in ``RenderResult.intermediate``.
        callback: called after every step as ``callback(step, loss, images)``: the steps
            taken so far (from 1), that step's summarised loss (a detached 0-dim tensor) and
            the images after it (detached, on the run's device; computing them costs one
            parameterization pass per step).

    Returns:
        :class:`RenderResult` with ``images`` (B, 3, H, W) on the CPU and the loss ``history``.
    """
    if summarize is None:
        summarize = default_loss_summarize
    if steps < 0:
        raise ValueError(f"steps must be non-negative, got {steps}")
    run_device = _pick_device(model, device)
    if autocast_bf16 and run_device.type != "cuda":
        raise ValueError(f"autocast_bf16=True needs a CUDA device; this run is on {run_device}")

    if isinstance(objective, str):
        objective = parse_objective(objective)
    keep = set(_check_thresholds(thresholds, steps))
    targets = targets_of(objective)
    _check_target_names(model, targets)

    generator = None if seed is None else torch.Generator().manual_seed(int(seed))
    if isinstance(param, nn.Module):
        image_param = param
    else:
        image_param = make_parameterization(param, batch_size, image_size, decorrelate,
                                            generator=generator)
    image_param = image_param.to(run_device)
    if isinstance(transforms, str):
        if transforms != _DEFAULT:
            raise ValueError(f"transforms={transforms!r}: use {_DEFAULT!r}, None, or a "
                             "module/callable mapping an image batch to a model input")
        transform = default_transforms()
    else:
        transform = transforms
    if isinstance(transform, nn.Module):
        transform = transform.to(run_device)
    if transform is None:
        transform = _identity
    if isinstance(preprocess, str):
        if preprocess != "model":
            raise ValueError(f"preprocess={preprocess!r}: use 'model', None, or a "
                             "module/callable applied after the transforms")
        preprocess = model_preprocess(model)
    if isinstance(preprocess, nn.Module):
        preprocess = preprocess.to(run_device)
    model_input_of = _chain(transform, preprocess)

    wants_image = any(_is_image_name(t) for t in targets)
    hooked = [t for t in targets if not _is_image_name(t)]
    model_modules = {id(m) for m in model.modules()}
    model_side = [m for m in (resolve_target(model, t, "render") for t in hooked)
                  if id(m) in model_modules]

    opt = _make_optimizer(optimizer, list(image_param.parameters()), lr)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if autocast_bf16
                else contextlib.nullcontext())
    bar = _progress_bar(steps, progress)
    losses: List[torch.Tensor] = []
    intermediate: Dict[int, torch.Tensor] = {}
    if 0 in keep:
        intermediate[0] = _snapshot(image_param)
    shown_at = 0.0
    capture = stopper = None
    start = time.perf_counter()
    try:
        with _borrowed(model), _seeded(transform, generator):
            capture = ModuleOutputsHook(hooked, model=model) if hooked else None
            stopper = _StopAfterTargets(model_side) if stop_early and model_side else None
            for step in range(steps):
                opt.zero_grad(set_to_none=True)
                images = image_param()  # float32 even under autocast: FFT and colour stage
                with autocast:
                    model_input = model_input_of(images)
                    if model_side or not stop_early:
                        if stopper is not None:
                            stopper.reset()
                        try:
                            model(model_input)
                        except _StopForward:
                            pass
                    acts: Dict[Any, Any] = {}
                    if capture is not None:
                        missing = [t for t, v in capture.outputs.items() if v is None]
                        if missing:
                            raise RuntimeError(f"no activation was captured for target(s) "
                                               f"{missing!r}: they did not run in the forward "
                                               "pass")
                        acts = capture.consume_outputs()
                    if wants_image:
                        acts[IMAGE_TARGET] = images
                    value = summarize(objective(acts))
                if value.dim() != 0:
                    raise ValueError(f"summarize must return a scalar, got shape "
                                     f"{tuple(value.shape)}")
                value = value.float()
                value.backward()
                opt.step()
                losses.append(value.detach())
                if callback is not None or step + 1 in keep:
                    with torch.no_grad():
                        current = image_param().detach().float()
                    if step + 1 in keep:
                        intermediate[step + 1] = current.cpu()
                    if callback is not None:
                        callback(step + 1, value.detach(), current)
                if bar is not None:
                    bar.update(1)
                    now = time.perf_counter()
                    if now - shown_at >= 0.5 or step == steps - 1:
                        shown_at = now
                        bar.set_postfix(loss=f"{value.item():.4g}")
    finally:
        if stopper is not None:
            stopper.remove()
        if capture is not None:
            capture.remove_hooks()
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    final = _snapshot(image_param)
    history = torch.stack(losses).cpu().tolist() if losses else []
    return RenderResult(images=final, history=history, parameterization=image_param,
                        seconds=seconds, steps=steps, intermediate=intermediate)


def _is_image_name(target: Any) -> bool:
    return isinstance(target, str) and target == IMAGE_TARGET


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _snapshot(image_param: nn.Module) -> torch.Tensor:
    """The parameterization's current images: float32, on the CPU, outside autograd."""
    with torch.no_grad():
        return image_param().detach().float().cpu()


def _chain(transform: Callable[[torch.Tensor], torch.Tensor],
           preprocess: Optional[Callable[[torch.Tensor], torch.Tensor]]
           ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The map from the image batch to the model input: the transforms, then preprocessing."""
    if preprocess is None or getattr(preprocess, "is_identity", False):
        return transform
    return lambda images: preprocess(transform(images))


def _check_thresholds(thresholds: Iterable[int], steps: int) -> List[int]:
    """The step counts at which to keep images; each must lie in ``[0, steps]``."""
    checked = []
    for value in thresholds:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= steps:
            raise ValueError(f"render: thresholds must be step counts from 0 to steps={steps}, "
                             f"got {value!r}")
        checked.append(value)
    return checked


def _progress_bar(steps: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc="render", unit="step", leave=False)
