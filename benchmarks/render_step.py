"""The render-step op: one forward and backward of a render step, objective included.

The number a user feels is the time of one optimisation step, not of one objective. This op
times what a step of ``fastobj render`` computes between the image batch and its gradient: the
demo CNN's full forward pass (:func:`fastobj.render.demo.demo_cnn`, seeded, frozen), the
objective ``ChannelActivation('features.6', 3) + 0.5 * Diversity('features.5')`` summarised as
``-mean`` (render's default), and the backward pass to the images. The parameterization, the
random transforms and the optimizer update are left out: they do not depend on the objective.

Two objectives run on the same model and the same images: fastobj's, and the classic one (the
channel slice plus the pairwise Diversity loop of :mod:`.baselines`). The objective alone
(forward and backward from the two activations) is a second op, so the sweep can report the
share of the step spent in the objective.
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import torch

import fastobj
from fastobj.render.demo import DemoCNN, demo_cnn

from . import baselines

CHANNEL_LAYER, CHANNEL = 6, 3  # ChannelActivation('features.6', 3)
DIVERSITY_LAYER, DIVERSITY_WEIGHT = 5, 0.5  # 0.5 * Diversity('features.5')
IMAGE_CHANNELS = 3

_models: Dict[Tuple[torch.device, torch.dtype], DemoCNN] = {}


def model_on(device: torch.device, dtype: torch.dtype) -> DemoCNN:
    """The demo CNN on ``device`` in ``dtype``, frozen (built once per device and dtype)."""
    key = (torch.device(device), dtype)
    if key not in _models:
        _models[key] = demo_cnn().to(device=device, dtype=dtype).requires_grad_(False)
    return _models[key]


def forward(model: DemoCNN, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run the whole model, as a render step does; return the Diversity and channel layers'
    activations."""
    acts = {}
    x = images
    for index, layer in enumerate(model.features):
        x = layer(x)
        acts[index] = x
    model.classifier(torch.flatten(model.pool(x), 1))
    return acts[DIVERSITY_LAYER], acts[CHANNEL_LAYER]


def make_images(dims, dtype, device, gen) -> Tuple[torch.Tensor]:
    """A batch of images in [0, 1), dims (B, 3, H, W)."""
    if len(dims) != 4 or dims[1] != IMAGE_CHANNELS:
        raise ValueError(f"render_step: shape must be (B, 3, H, W), got {tuple(dims)}")
    return (torch.rand(tuple(dims), device=device, generator=gen).to(dtype),)


def make_activations(dims, dtype, device, gen) -> Tuple[torch.Tensor, torch.Tensor]:
    """The two target activations of the images :func:`make_images` draws with ``gen``."""
    (images,) = make_images(dims, dtype, device, gen)
    with torch.no_grad():
        return forward(model_on(device, dtype), images)


ObjectiveFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def fastobj_objective(model: DemoCNN) -> ObjectiveFn:
    """fastobj's objective on (Diversity layer, channel layer) activations, summarised."""
    diversity_key, channel_key = model.features[DIVERSITY_LAYER], model.features[CHANNEL_LAYER]
    objective = (fastobj.ChannelActivation(channel_key, CHANNEL)
                 + DIVERSITY_WEIGHT * fastobj.Diversity(diversity_key))
    return lambda div_acts, chan_acts: fastobj.default_loss_summarize(
        objective({diversity_key: div_acts, channel_key: chan_acts}))


def classic_objective(model: DemoCNN) -> ObjectiveFn:
    """The same objective as Lucid, Lucent and Captum compute it (pairwise Diversity loop)."""
    del model  # the classic code indexes the activations directly
    return lambda div_acts, chan_acts: -(
        chan_acts[:, CHANNEL] + DIVERSITY_WEIGHT * baselines.diversity(div_acts)).mean()


def _per_device(objective: Callable[[DemoCNN], ObjectiveFn]):
    """``objective`` built once per (device, dtype), on that device's model."""
    built: Dict[Tuple[torch.device, torch.dtype], ObjectiveFn] = {}

    def get(device: torch.device, dtype: torch.dtype) -> ObjectiveFn:
        if (device, dtype) not in built:
            built[device, dtype] = objective(model_on(device, dtype))
        return built[device, dtype]
    return get


def step_provider(objective: Callable[[DemoCNN], ObjectiveFn]) -> Callable[[], Callable]:
    """Provider builder: images -> the summarised objective through the model's forward."""
    def build():
        get = _per_device(objective)
        return lambda images: get(images.device, images.dtype)(
            *forward(model_on(images.device, images.dtype), images))
    return build


def objective_provider(objective: Callable[[DemoCNN], ObjectiveFn]) -> Callable[[], Callable]:
    """Provider builder: the two activations -> the summarised objective (no model)."""
    def build():
        get = _per_device(objective)
        return lambda div_acts, chan_acts: get(div_acts.device, div_acts.dtype)(div_acts,
                                                                                  chan_acts)
    return build
