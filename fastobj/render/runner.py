"""``render()``: the parts of :mod:`fastobj.render` put together for the common case.

A render is built from public parts that can also be assembled by hand:

* an image object (:mod:`.param`: :class:`~.param.FFTImage`, :class:`~.param.PixelImage`,
  :class:`~.param.MacoImage`);
* a view pipeline (:class:`~.views.Views`: K random views per image, the model's
  preprocessing);
* an optimizer (:func:`~.step.make_optimizer`);
* the model's side (:mod:`.probe`: :func:`~.probe.borrowed`, :class:`~.probe.ActivationProbe`);
* one step (:class:`~.step.RenderStep`), a thin loop (:func:`~.callbacks.run_steps`) and
  callbacks (:mod:`.callbacks`: progress, snapshots, the transparency map);
* for feature accentuation, an :class:`~.accentuate.Anchor`.

:func:`render` chooses each part from its arguments, with the defaults of a *recipe* that
depends on the image: Lucid's for "fft" and "pixel" (128 pixels, Adam at 0.05, one view per
step through padding, jitter, scale and rotation), MACO's for "maco" (512 pixels, NAdam at 0.1,
six crops per step with noise). An argument given explicitly always wins over the recipe.

The model is only borrowed: for the run its parameters stop requiring gradients and it is in
eval mode; afterwards each flag is restored and every hook removed, on success, on error and on
``KeyboardInterrupt`` alike.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from ..loss import targets_of
from .accentuate import Anchor, fit_picture, load_pictures
from .callbacks import EveryStep, ProgressBar, Snapshots, Transparency, run_steps
from .expression import parse_objective
from .param import ImageParameterization, MacoImage, Size, make_parameterization, pair
from .preprocess import model_preprocess
from .probe import (
    IMAGE_TARGET,
    ActivationProbe,
    borrowed,
    check_targets,
    is_image_target,
    run_device,
)
from .step import OptimizerSpec, RenderStep, make_optimizer
from .transforms import Noise, default_transforms, maco_transforms
from .views import Views

__all__ = ["CPU_MAX_BATCH", "IMAGE_TARGET", "RECIPES", "Recipe", "RenderResult", "render"]

_DEFAULT = "default"
#: On a CPU, the most model inputs per forward slice when ``max_batch="auto"``. On this
#: project's 2-core machine, EfficientNet-Lite0 rendering 16 images took 30-35 ms per image
#: and step in slices of 4, against 49-55 ms in one batch of 16 (and 40-62 ms for one image
#: alone): large batches overflow the caches (``fastobj.benchmarks.render_throughput``).
CPU_MAX_BATCH = 4
#: Mixed into ``seed`` for the views' generator, so the views and the image's start do not
#: draw the same random numbers.
_VIEWS_SEED_MIX = 0x5DEECE66D


@dataclass(frozen=True)
class Recipe:
    """The defaults :func:`render` uses for an image kind (each overridable)."""

    image_size: int
    lr: float
    optimizer: str
    views: int
    maco_crops: bool  # MACO crops plus noise, else Lucid's transforms

    def transforms(self, canvas: Sequence[int], model_size: Optional[Sequence[int]]) -> nn.Module:
        if not self.maco_crops:
            return default_transforms()
        # Crops go straight to the model's input size; without one, they keep about their own
        # size (the mean of the crops' side fractions).
        crops = maco_transforms(model_size)
        if model_size is None:
            fraction = sum(crops.fraction) / 2
            crops.output_size = tuple(max(1, round(fraction * side)) for side in canvas)
        return crops

    def noise(self) -> Optional[nn.Module]:
        return Noise(0.05, 0.025) if self.maco_crops else None


#: Lucid's recipe for "fft" and "pixel", MACO's (Fel et al. 2023) for "maco".
RECIPES: Dict[str, Recipe] = {
    "fft": Recipe(image_size=128, lr=0.05, optimizer="adam", views=1, maco_crops=False),
    "pixel": Recipe(image_size=128, lr=0.05, optimizer="adam", views=1, maco_crops=False),
    "maco": Recipe(image_size=512, lr=0.1, optimizer="nadam", views=6, maco_crops=True),
}


@dataclass
class RenderResult:
    """What :func:`render` returns.

    Attributes:
        images: the final images, ``(B, 3, H, W)`` float32 in the image's value range
            (``[0, 1]`` by default), detached, on the CPU.
        history: the summarised loss (the value minimised) of every step, as floats.
        parameterization: the optimised image object (on the run's device).
        seconds: wall-clock time of the optimisation loop.
        steps: the number of optimizer steps taken.
        intermediate: the images after each step count asked for in ``thresholds``
            (``{step: (B, 3, H, W)}`` on the CPU; step 0 is the start).
        transparency: with ``transparency=True``, ``|∂loss/∂image|`` summed over the steps,
            ``(B, 3, H, W)`` float32 on the CPU (see
            :func:`~fastobj.render.callbacks.transparency_alpha`); else None.
        anchor_weights: with a start picture and an anchor, the balance ``β`` of each sample
            (see :mod:`fastobj.render.accentuate`); else None.
        views: the views made of each image per step.
    """

    images: torch.Tensor
    history: List[float]
    parameterization: nn.Module
    seconds: float = 0.0
    steps: int = 0
    intermediate: Dict[int, torch.Tensor] = field(default_factory=dict)
    transparency: Optional[torch.Tensor] = None
    anchor_weights: Optional[torch.Tensor] = None
    views: int = 1


def _check_count(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"render: {name} must be an int of at least {low}, got {value!r}")


def _check_thresholds(thresholds: Sequence[int], steps: int) -> List[int]:
    """The step counts at which to keep images; each must lie in ``[0, steps]``."""
    for value in thresholds:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= steps:
            raise ValueError(f"render: thresholds must be step counts from 0 to steps={steps}, "
                             f"got {value!r}")
    return list(thresholds)


def _image_object(param: Union[str, ImageParameterization], batch_size: Optional[int],
                  image_size: Optional[Size], decorrelate: Optional[bool], seed: Optional[int],
                  recipe: Recipe) -> ImageParameterization:
    """The image object: built from ``param``'s name, or ``param`` itself after checking that
    no argument it would ignore says otherwise."""
    if isinstance(param, ImageParameterization):
        if batch_size is not None and batch_size != param.batch:
            raise ValueError(f"render: batch_size={batch_size} but the image object given as "
                             f"param holds {param.batch} images")
        if image_size is not None and pair(image_size, "render") != param.size:
            raise ValueError(f"render: image_size={image_size!r} but the image object given as "
                             f"param is {param.height}x{param.width}")
        if decorrelate is not None and bool(decorrelate) != param.decorrelate:
            raise ValueError(f"render: decorrelate={decorrelate} but the image object given as "
                             f"param has decorrelate={param.decorrelate}")
        return param
    if not isinstance(param, str):
        raise TypeError(f"render: param must be 'fft', 'pixel', 'maco' or an "
                        f"ImageParameterization, got {type(param).__name__}")
    size = recipe.image_size if image_size is None else image_size
    return make_parameterization(param, 8 if batch_size is None else batch_size, size,
                                 decorrelate=True if decorrelate is None else decorrelate,
                                 seed=seed)


def _views(views: Union[None, int, Views], transforms: Any, preprocess: Any, model: nn.Module,
           image: ImageParameterization, recipe: Recipe, seed: Optional[int],
           channels_last: bool) -> Views:
    """The view pipeline: ``views`` itself, or one built from the count, transforms and
    preprocessing asked for (the recipe's where not)."""
    if isinstance(views, Views):
        if not (isinstance(transforms, str) and transforms == _DEFAULT) or \
                not (isinstance(preprocess, str) and preprocess == "model"):
            raise ValueError("render: give transforms and preprocess inside the Views object, "
                             "not beside it")
        return views
    count = recipe.views if views is None else views
    _check_count("views", count, 1)
    if isinstance(preprocess, str):
        if preprocess != "model":
            raise ValueError(f"render: preprocess={preprocess!r}: use 'model', None, or a "
                             "module/callable applied after the transforms")
        preprocess = model_preprocess(model)
    noise = None
    if isinstance(transforms, str):
        if transforms != _DEFAULT:
            raise ValueError(f"render: transforms={transforms!r}: use {_DEFAULT!r}, None, or a "
                             "module/callable mapping an image batch to a model input")
        model_size = getattr(preprocess, "size", None)
        transforms, noise = recipe.transforms(image.size, model_size), recipe.noise()
    views_seed = None if seed is None else (int(seed) ^ _VIEWS_SEED_MIX)
    return Views(count, transforms, preprocess, noise, seed=views_seed,
                 channels_last=channels_last)


def _start_picture(start: Any, image_size: Optional[Size]) -> torch.Tensor:
    """``(N, 3, H, W)`` start pictures from tensors or image files, fitted to ``image_size``."""
    if isinstance(start, (str, os.PathLike)) or (
            isinstance(start, (list, tuple)) and start
            and all(isinstance(s, (str, os.PathLike)) for s in start)):
        pictures = load_pictures(start if isinstance(start, (list, tuple)) else [start],
                                 image_size)
    elif isinstance(start, torch.Tensor):
        pictures = start.detach().float()
        if pictures.dim() == 3:
            pictures = pictures.unsqueeze(0)
        if pictures.dim() != 4 or pictures.shape[1] != 3:
            raise ValueError(f"render: start must be (3, H, W) or (B, 3, H, W), got shape "
                             f"{tuple(start.shape)}")
        if image_size is not None:
            pictures = fit_picture(pictures, pair(image_size, "render"))
    else:
        raise TypeError("render: start must be a tensor, an image file's path or a list of "
                        f"paths, got {type(start).__name__}")
    return pictures


def render(model: nn.Module, objective: Any, *, param: Union[str, ImageParameterization] = "fft",
           batch_size: Optional[int] = None, image_size: Optional[Size] = None,
           steps: int = 256, lr: Optional[float] = None,
           optimizer: Optional[OptimizerSpec] = None, seed: Optional[int] = 0,
           device: Union[None, str, torch.device] = None, decorrelate: Optional[bool] = None,
           views: Union[None, int, Views] = None, transforms: Any = _DEFAULT,
           preprocess: Any = "model", max_batch: Union[None, int, str] = "auto",
           channels_last: Optional[bool] = None, start: Any = None,
           anchor_layer: Any = None, anchor_weight: float = 1.0, transparency: bool = False,
           autocast_bf16: bool = False, stop_early: bool = False, progress: bool = True,
           summarize: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
           thresholds: Sequence[int] = (),
           callback: Optional[Callable[[int, torch.Tensor, torch.Tensor], Any]] = None,
           callbacks: Sequence[Callable[[Any], Any]] = ()) -> RenderResult:
    """Optimise a batch of images to maximise ``objective`` on ``model``.

    Args:
        model: the network. Not modified: it is frozen and in eval mode during the run, then
            its flags are restored. Its device is the run's device unless ``device`` says so.
        objective: a fastobj objective (or any object with ``.target`` and
            ``__call__(activations)``), or a string for
            :func:`~fastobj.render.expression.parse_objective` (an expression, or Lucent's
            ``"layer:channel"``). Targets are submodules of ``model`` (objects or dotted
            names), modules inside the views (their output, per view), the image object itself
            or :data:`IMAGE_TARGET` (``"image"``: the image batch before the views).
        param: the image: "fft" (spectrum with 1/f scaling), "pixel", "maco" (phase only,
            natural magnitude), or a ready :class:`~fastobj.render.param.ImageParameterization`
            (then ``batch_size``, ``image_size`` and ``decorrelate`` must be left out or agree
            with it). The name also picks the recipe (:data:`RECIPES`) that supplies defaults.
        batch_size: the number of images B (default 8, or the number of start pictures).
        image_size: ``H`` (square) or ``(H, W)``; default the recipe's (128, or 512 for
            MACO), or the start picture's size.
        steps: optimizer steps.
        lr, optimizer: the learning rate and "adam", "nadam", "adamw", "sgd" or a callable
            ``optimizer(parameters, lr)``; default the recipe's (Adam at 0.05; NAdam at 0.1
            for MACO).
        seed: seeds the images' starts and the views' draws (CPU generators, so a seed gives
            the same starts and crops on every device). ``None`` draws from torch's global RNG.
        device: where to run; default the model's device (CPU for a model without tensors).
        decorrelate: give the raw channels natural colour correlations (default True).
        views: K, the random views of each image per step (default the recipe's: 1, or 6
            for MACO), or a ready :class:`~fastobj.render.views.Views`. Objectives are
            evaluated on each view set (one view of every image) and averaged over the K sets:
            per-sample targets apply to every view of their image, and Diversity compares
            images, not views of one image.
        transforms: "default" (the recipe's: :func:`~fastobj.render.transforms.
            default_transforms`, or MACO's crops and noise), ``None`` for none, or any
            module/callable mapping an image batch to a model input.
        preprocess: applied after the transforms: "model" (the model's declared input size
            and normalisation, see :func:`~fastobj.render.preprocess.model_preprocess`),
            ``None``, or a module/callable such as :class:`~fastobj.render.preprocess.
            Preprocess`.
        max_batch: the most model inputs in one forward pass (None: all ``K·B`` at once).
            From ``B`` up, the views go through the model in passes of whole view sets, each
            back-propagated before the next, which bounds the memory; below ``B``, each view
            set's forward pass runs in slices, which is faster where large batches overflow a
            CPU's caches. The result does not depend on it. "auto": :data:`CPU_MAX_BATCH` on a
            CPU, None elsewhere.
        channels_last: lay the model inputs out channels-last in memory (same values; faster
            convolutions: 1.15-1.2x for EfficientNet-Lite0 on this project's CPU). None: on a
            CPU. A model that ``.view()``s a convolution's output needs False.
        start: start from pictures instead of random images: a tensor ``(3, H, W)`` or
            ``(N, 3, H, W)`` in ``[0, 1]``, or image file paths (PNG, JPEG...). One picture
            starts every sample. With a start, an :class:`~fastobj.render.accentuate.Anchor`
            keeps ``anchor_layer``'s activations near the picture's (feature accentuation).
        anchor_layer: the layer the anchor watches; default the objective's first model-side
            target.
        anchor_weight: α, the anchor's weight after automatic balancing; 0 turns it off.
        transparency: accumulate ``|∂loss/∂image|`` over the run (``result.transparency``).
        autocast_bf16: run the views, the model and the objective under bfloat16 autocast (the
            image object stays float32; the loss is cast to float32 before the backward pass).
            CUDA only; elsewhere it raises ``ValueError``.
        stop_early: stop each forward pass once every model-side target has been computed.
        progress: show a tqdm progress bar.
        summarize: maps the objective's value to the scalar to minimise; default
            :func:`fastobj.loss.default_loss_summarize` (``-mean``).
        thresholds: step counts (0 to ``steps``) after which to keep a copy of the images,
            returned in ``RenderResult.intermediate``.
        callback: called after every step as ``callback(step, loss, images)`` (see
            :class:`~fastobj.render.callbacks.EveryStep`).
        callbacks: more callables called with each step's
            :class:`~fastobj.render.step.StepState`.

    Returns:
        :class:`RenderResult` with ``images`` (B, 3, H, W) on the CPU and the loss ``history``.
    """
    _check_count("steps", steps, 0)
    run = run_device(model, device)
    if autocast_bf16 and run.type != "cuda":
        raise ValueError(f"render: autocast_bf16=True needs a CUDA device; this run is on {run}")
    if isinstance(objective, str):
        objective = parse_objective(objective)
    thresholds = _check_thresholds(thresholds, steps)
    recipe = RECIPES.get(param if isinstance(param, str) else
                         ("maco" if isinstance(param, MacoImage) else "fft"), RECIPES["fft"])

    pictures = None
    if start is not None:
        given = isinstance(param, ImageParameterization)
        pictures = _start_picture(start, param.size if given else image_size)
        if image_size is None and not given:
            image_size = tuple(pictures.shape[-2:])
        if batch_size is None and not given:
            batch_size = pictures.shape[0]
        wanted = param.batch if given else batch_size
        if pictures.shape[0] not in (1, wanted):
            raise ValueError(f"render: {pictures.shape[0]} start pictures for a batch of "
                             f"{wanted}; give one picture or one per sample")
    if batch_size is not None:
        _check_count("batch_size", batch_size, 1)
    image = _image_object(param, batch_size, image_size, decorrelate, seed, recipe).to(run)
    if pictures is not None:
        pictures = pictures.to(run).expand(image.batch, -1, -1, -1)
        image.start_from(pictures)
    if isinstance(views, Views) and channels_last is not None:
        raise ValueError("render: give channels_last inside the Views object, not beside it")
    if channels_last is None:
        channels_last = run.type == "cpu"
    if isinstance(max_batch, str):
        if max_batch != "auto":
            raise ValueError(f"render: max_batch must be a positive int, None or 'auto', got "
                             f"{max_batch!r}")
        max_batch = CPU_MAX_BATCH if run.type == "cpu" else None
    view_pipeline = _views(views, transforms, preprocess, model, image, recipe, seed,
                           bool(channels_last)).to(run)

    targets = targets_of(objective)
    check_targets(model, targets)
    view_modules = {id(m) for m in view_pipeline.modules()}
    image_targets = [t for t in targets if is_image_target(t) or t is image]
    view_targets = [t for t in targets if isinstance(t, nn.Module) and id(t) in view_modules]
    model_targets = [t for t in targets if not any(t is u for u in image_targets + view_targets)]
    anchor = None
    if pictures is not None and anchor_weight != 0:
        if anchor_layer is None:
            if not model_targets:
                raise ValueError("render: a start picture needs an anchor_layer (the objective "
                                 "has no model-side target to default to); or anchor_weight=0")
            anchor_layer = model_targets[0]
        check_targets(model, [anchor_layer])
        anchor = Anchor(anchor_layer, pictures, anchor_weight)

    opt = make_optimizer(recipe.optimizer if optimizer is None else optimizer,
                         image.parameters(), recipe.lr if lr is None else lr)
    snapshots = Snapshots(thresholds)
    snapshots.start(image)
    watchers: List[Callable[[Any], Any]] = [snapshots]
    accumulated = Transparency() if transparency else None
    if accumulated is not None:
        watchers.append(accumulated)
    if callback is not None:
        watchers.append(EveryStep(callback))
    watchers.extend(callbacks)
    if progress:
        watchers.append(ProgressBar(steps))
    autocast = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if autocast_bf16
                else None)

    start_time = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(borrowed(model))
        probe_targets = model_targets + ([anchor.layer] if anchor is not None else [])
        probe = stack.enter_context(ActivationProbe(model, probe_targets, stop_early))
        view_probe = (stack.enter_context(ActivationProbe(view_pipeline, view_targets))
                      if view_targets else None)
        anchor_probe = (stack.enter_context(ActivationProbe(model, [anchor.layer], True))
                        if anchor is not None else None)
        step = RenderStep(image, view_pipeline, probe, objective, opt, summarize=summarize,
                          view_probe=view_probe, image_targets=image_targets, anchor=anchor,
                          anchor_probe=anchor_probe, max_batch=max_batch, autocast=autocast)
        try:
            losses = run_steps(step, steps, watchers)
        except RuntimeError as exc:
            if view_pipeline.channels_last and "view size is not compatible" in str(exc):
                raise RuntimeError(f"{exc} (the model .view()s a tensor that channels-last "
                                   "inputs lay out differently: pass channels_last=False)"
                                   ) from exc
            raise
    seconds = time.perf_counter() - start_time
    with torch.no_grad():
        final = image().detach().float().cpu()
    return RenderResult(
        images=final, history=torch.stack(losses).cpu().tolist() if losses else [],
        parameterization=image, seconds=seconds, steps=steps, intermediate=snapshots.images,
        transparency=None if accumulated is None or accumulated.total is None
        else accumulated.total.cpu(),
        anchor_weights=None if anchor is None else anchor.balance_weights.cpu(),
        views=view_pipeline.count)
