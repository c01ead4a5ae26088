"""Rendering feature visualizations with fastobj objectives.

:func:`render` puts the parts together for the common case and returns a
:class:`RenderResult`; every part is public, to assemble by hand:

* :mod:`.param`: image objects (:class:`FFTImage`, :class:`PixelImage`, :class:`MacoImage`).
* :mod:`.views`: :class:`Views`, K random views per image (transforms, then the model's
  preprocessing); :mod:`.transforms`: the random transforms and the two recipes'
  (:func:`default_transforms`, :func:`maco_transforms`, :class:`Noise`);
  :mod:`.preprocess`: :class:`Preprocess`, a model's input size and normalisation.
* :mod:`.probe`: the model's side (:func:`borrowed`, :func:`run_device`,
  :func:`check_targets`, :class:`ActivationProbe`).
* :mod:`.step`: :class:`RenderStep` (one optimisation step) and :func:`make_optimizer`;
  :mod:`.callbacks`: :func:`run_steps` (the loop) and the callbacks (:class:`ProgressBar`,
  :class:`Snapshots`, :class:`Transparency`, :class:`EveryStep`).
* :mod:`.accentuate`: :class:`Anchor`, feature accentuation's penalty.
* :mod:`.expression`: :func:`parse_objective`, the safe parser behind ``fastobj render``
  (Lucent's ``"layer:channel"`` included).
* :mod:`.models`: :func:`efficientnet_lite0` (pretrained, offline) and :func:`list_layers`.
* :mod:`.atlas`: :func:`render_atlas`, one image per channel of a layer, resumable.
* :mod:`.atlas_page`: :func:`write_atlas_page`, the atlas as a static offline web page.
* :mod:`.atlas_layers`: :func:`render_layer_atlases`, several layers in turn, with an index.
* :mod:`.demo`: :class:`DemoCNN` and :class:`DemoViT`, small deterministic networks for demos
  and tests.
* :mod:`.png`: :func:`make_grid` and :func:`upscale`, a batch laid out as one picture.
* :mod:`.imageio`: :func:`load_image`, :func:`save_png` and :func:`save_rgba_png`, with Pillow.
* :mod:`.spectrum`: :func:`natural_spectrum`, :func:`spectrum_from_images` and
  :func:`resize_spectrum`, magnitude spectra for images optimised in phase only.
* :mod:`.cli`: the ``fastobj render``, ``accentuate``, ``layers`` and ``atlas`` commands.
* :func:`lucent_objective`: use a fastobj objective where Lucent expects an objective function.

Nothing here touches CUDA or Triton at import time.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from .accentuate import Anchor, fit_picture, load_pictures
from .atlas import AtlasEntry, AtlasResult, render_atlas
from .atlas_layers import render_layer_atlases
from .atlas_page import write_atlas_page
from .callbacks import (
    EveryStep,
    ProgressBar,
    Snapshots,
    Transparency,
    run_steps,
    transparency_alpha,
)
from .demo import DemoCNN, DemoViT, demo_cnn, demo_vit
from .expression import OBJECTIVE_NAMES, parse_objective
from .imageio import ImageFileError, load_image, save_png, save_rgba_png
from .models import LayerInfo, efficientnet_lite, efficientnet_lite0, list_layers
from .param import FFTImage, ImageParameterization, MacoImage, PixelImage, make_parameterization
from .png import make_grid, upscale
from .preprocess import Preprocess, model_preprocess
from .probe import IMAGE_TARGET, ActivationProbe, borrowed, check_targets, run_device
from .runner import RECIPES, Recipe, RenderResult, render
from .spectrum import natural_spectrum, resize_spectrum, spectrum_from_images
from .step import RenderStep, StepState, make_optimizer
from .transforms import (
    Jitter,
    Noise,
    Pad,
    RandomAffine,
    RandomCrop,
    RandomRotation,
    RandomScale,
    RandomTransform,
    default_transforms,
    draws_from,
    maco_transforms,
)
from .views import Views, split_view_sets

__all__ = [
    "render", "RenderResult", "IMAGE_TARGET", "RECIPES", "Recipe",
    "ImageParameterization", "FFTImage", "PixelImage", "MacoImage", "make_parameterization",
    "Views", "split_view_sets",
    "RandomTransform", "Pad", "Jitter", "RandomScale", "RandomRotation", "RandomAffine",
    "RandomCrop", "Noise", "default_transforms", "maco_transforms", "draws_from",
    "Preprocess", "model_preprocess",
    "ActivationProbe", "borrowed", "check_targets", "run_device",
    "RenderStep", "StepState", "make_optimizer",
    "run_steps", "ProgressBar", "Snapshots", "Transparency", "EveryStep",
    "transparency_alpha",
    "Anchor", "fit_picture", "load_pictures",
    "parse_objective", "OBJECTIVE_NAMES",
    "efficientnet_lite", "efficientnet_lite0", "list_layers", "LayerInfo",
    "render_atlas", "AtlasEntry", "AtlasResult", "render_layer_atlases", "write_atlas_page",
    "DemoCNN", "demo_cnn", "DemoViT", "demo_vit",
    "make_grid", "upscale", "save_png", "save_rgba_png", "load_image", "ImageFileError",
    "natural_spectrum", "spectrum_from_images", "resize_spectrum",
    "lucent_objective",
]


def lucent_objective(loss: Any,
                     summarize: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                     ) -> Callable[[Callable[[Any], torch.Tensor]], torch.Tensor]:
    """Adapt a fastobj objective to Lucent's calling convention.

    Lucent calls an objective function with ``T``, where ``T(name)`` returns the activation of
    the layer ``name``, and minimises the scalar it returns. The returned function builds the
    ``{target: T(name)}`` mapping for every target of ``loss`` (``name`` is the target, or the
    plain target of a layout target such as ``Tokens("blocks_3")``; it must be a name ``T``
    understands) and returns ``summarize(loss(mapping))``, by default ``-mean``,
    i.e. the objective is maximised as in fastobj. Wrap the result with Lucent's
    ``objectives.as_objective`` to combine it with Lucent objectives.
    """
    from ..layout import plain_target
    from ..loss import default_loss_summarize, targets_of

    reduce = default_loss_summarize if summarize is None else summarize
    targets = targets_of(loss)

    def objective(T: Callable[[Any], torch.Tensor]) -> torch.Tensor:
        return reduce(loss({target: T(plain_target(target)) for target in targets}))

    objective.__name__ = f"lucent_objective({loss!r})"
    return objective
