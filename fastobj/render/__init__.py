"""Rendering feature visualizations with fastobj objectives.

* :func:`render` runs the optimization loop and returns a :class:`RenderResult`.
* :mod:`.param`: image parameterizations (:class:`FFTImage`, :class:`PixelImage`).
* :mod:`.transforms`: per-sample random transforms and :func:`default_transforms`.
* :mod:`.preprocess`: :class:`Preprocess`, a model's input size and normalisation.
* :mod:`.expression`: :func:`parse_objective`, the safe parser behind ``fastobj render``
  (Lucent's ``"layer:channel"`` included).
* :mod:`.models`: :func:`efficientnet_lite0` (pretrained, offline) and :func:`list_layers`.
* :mod:`.atlas`: :func:`render_atlas`, one image per channel of a layer, resumable.
* :mod:`.atlas_page`: :func:`write_atlas_page`, the atlas as a static offline web page.
* :mod:`.atlas_layers`: :func:`render_layer_atlases`, several layers in turn, with an index.
* :mod:`.demo`: :class:`DemoCNN` and :class:`DemoViT`, small deterministic networks for demos
  and tests.
* :mod:`.png`: :func:`make_grid`, :func:`upscale` and :func:`save_png`.
* :mod:`.cli`: the ``fastobj render``, ``layers`` and ``atlas`` commands.
* :func:`lucent_objective`: use a fastobj objective where Lucent expects an objective function.

Nothing here touches CUDA or Triton at import time.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from .atlas import AtlasEntry, AtlasResult, render_atlas
from .atlas_layers import render_layer_atlases
from .atlas_page import write_atlas_page
from .demo import DemoCNN, DemoViT, demo_cnn, demo_vit
from .expression import OBJECTIVE_NAMES, parse_objective
from .models import LayerInfo, efficientnet_lite0, list_layers
from .param import FFTImage, ImageParameterization, PixelImage, make_parameterization
from .png import make_grid, save_png, upscale
from .preprocess import Preprocess, model_preprocess
from .runner import IMAGE_TARGET, RenderResult, render
from .transforms import (Jitter, Pad, RandomAffine, RandomRotation, RandomScale, RandomTransform,
                         default_transforms, seed_transforms)

__all__ = [
    "render", "RenderResult", "IMAGE_TARGET",
    "ImageParameterization", "FFTImage", "PixelImage", "make_parameterization",
    "RandomTransform", "Pad", "Jitter", "RandomScale", "RandomRotation", "RandomAffine",
    "default_transforms",
    "seed_transforms",
    "parse_objective", "OBJECTIVE_NAMES",
    "Preprocess", "model_preprocess",
    "efficientnet_lite0", "list_layers", "LayerInfo",
    "render_atlas", "AtlasEntry", "AtlasResult", "render_layer_atlases", "write_atlas_page",
    "DemoCNN", "demo_cnn", "DemoViT", "demo_vit",
    "make_grid", "upscale", "save_png",
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
