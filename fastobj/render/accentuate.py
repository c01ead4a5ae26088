"""Feature accentuation: start from a photograph and push an objective, staying near it.

Instead of a random start, the image object starts equal to a photograph
(:meth:`~fastobj.render.param.ImageParameterization.start_from`), and the objective is pushed
while an :class:`Anchor` keeps one layer's activations near the photograph's: the penalty is
the distance, at every position, between the layer's activation vectors (over channels) on a
view of the image and on the *same* view of the photograph (same crop, shift and noise),
averaged over positions and views. The render then shows what in the photograph the unit
responds to, rather than inventing a new picture (Hamblin et al., 2024, "feature
accentuation").

Balancing: the objective and the penalty have unrelated scales, so each sample's penalty is
weighted by ``weight · β_b``, where ``β_b = Σ|∂objective/∂θ_b| / Σ|∂penalty/∂θ_b|`` over the
sample's parameters ``θ_b``, measured once, at the first step where the penalty has a gradient
(the first step, unless the image equals the photograph exactly). ``weight`` (α, default 1)
then says how much more the photograph counts than the objective. The published method
balances the whole batch with one ratio; here each sample has its own, so a batch that
accentuates several units of one photograph treats each alike.
"""
from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .param import Size, pair

__all__ = ["Anchor", "activation_distance", "fit_picture", "load_pictures"]


def fit_picture(pictures: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """``(N, 3, h, w)`` pictures cropped about their centre to the aspect of ``size`` (H, W),
    then resized to it (bilinear, antialiased when shrinking)."""
    height, width = size
    _, _, h, w = pictures.shape
    if h * width > w * height:  # too tall: keep the full width
        keep_h, keep_w = max(1, round(w * height / width)), w
    else:
        keep_h, keep_w = h, max(1, round(h * width / height))
    top, left = (h - keep_h) // 2, (w - keep_w) // 2
    cropped = pictures[:, :, top:top + keep_h, left:left + keep_w]
    if (keep_h, keep_w) == (height, width):
        return cropped
    return F.interpolate(cropped, size=(height, width), mode="bilinear", align_corners=False,
                         antialias=keep_h > height or keep_w > width).clamp(0, 1)


def load_pictures(paths: Sequence[Union[str, "os.PathLike[str]"]],
                  size: Optional[Size] = None) -> torch.Tensor:
    """Image files as one ``(N, 3, H, W)`` batch in ``[0, 1]``: every picture fitted to
    ``size`` (:func:`fit_picture`), by default the first picture's size."""
    from .imageio import load_image

    pictures = [load_image(path) for path in paths]
    target = pair(size, "load_pictures") if size is not None else tuple(pictures[0].shape[-2:])
    return torch.cat([fit_picture(p.unsqueeze(0), target) for p in pictures])


def activation_distance(activation: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per sample, the mean over positions of the Euclidean distance between activation
    vectors: ``(B, C, H, W)`` (channels first), ``(B, L, C)`` (tokens, channels last) or
    ``(B, C)``; returns ``(B,)`` float32."""
    if activation.shape != reference.shape:
        raise ValueError(f"Anchor: the activation has shape {tuple(activation.shape)} but the "
                         f"photograph's has {tuple(reference.shape)}")
    channel_dim = {4: 1, 3: 2, 2: 1}.get(activation.dim())
    if channel_dim is None:
        raise ValueError(f"Anchor: the layer's activation must be (B, C, H, W), (B, L, C) or "
                         f"(B, C), got shape {tuple(activation.shape)}")
    difference = activation.float() - reference.float()
    distance = torch.linalg.vector_norm(difference, dim=channel_dim)
    return distance.flatten(1).mean(dim=1) if distance.dim() > 1 else distance


class Anchor:
    """Keeps ``layer``'s activations near those of ``picture`` (see the module docstring).

    Args:
        layer: the layer (a submodule name or module of the model) whose activations are kept.
        picture: ``(B, 3, H, W)`` images, the same size as the rendered ones, in their value
            range (the photograph, repeated for every sample that starts from it).
        weight: α, the penalty's weight after balancing (0 turns the penalty off).
    """

    def __init__(self, layer: Any, picture: torch.Tensor, weight: float = 1.0) -> None:
        weight = float(weight)
        if not weight >= 0:
            raise ValueError(f"Anchor: weight must be non-negative, got {weight}")
        if picture.dim() != 4 or picture.shape[1] != 3:
            raise ValueError(f"Anchor: picture must be (B, 3, H, W), got "
                             f"{tuple(picture.shape)}")
        self.layer = layer
        self.picture = picture.detach()
        self.weight = weight
        #: β per sample; NaN until measured.
        self.balance_weights = torch.full((picture.shape[0],), float("nan"),
                                          device=picture.device)

    @property
    def needs_balance(self) -> bool:
        return self.weight > 0 and bool(torch.isnan(self.balance_weights).any())

    def distance(self, activation: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return activation_distance(activation, reference)

    def penalty(self, distance: torch.Tensor) -> torch.Tensor:
        """The term added to the loss for per-sample ``distance`` (``(B,)``)."""
        beta = torch.nan_to_num(self.balance_weights, nan=0.0)
        return self.weight * (beta * distance).mean()

    def balance(self, images: torch.Tensor, parameters: List[torch.Tensor],
                objective_grad: torch.Tensor, anchor_grad: torch.Tensor) -> torch.Tensor:
        """Measure β for the samples whose penalty has a gradient, from the image gradients of
        the objective and of ``distance.mean()``, carried back to the parameters; return the
        images' gradient of the weighted sum."""
        batch = images.shape[0]
        for p in parameters:
            if p.dim() == 0 or p.shape[0] != batch:
                raise ValueError("Anchor: balancing needs image parameters with the batch as "
                                 f"their first axis; got a parameter of shape {tuple(p.shape)}")
        sums = []
        for grad in (objective_grad, anchor_grad):
            per_parameter = torch.autograd.grad(images, parameters, grad, retain_graph=True)
            sums.append(sum(g.detach().abs().flatten(1).sum(dim=1).double()
                            for g in per_parameter))
        objective_sum, anchor_sum = sums
        measured = anchor_sum > 0
        pending = torch.isnan(self.balance_weights)
        ratio = (objective_sum / anchor_sum.clamp_min(1e-300)).float()
        self.balance_weights = torch.where(pending & measured, ratio, self.balance_weights)
        beta = torch.nan_to_num(self.balance_weights, nan=0.0).view(-1, 1, 1, 1)
        return objective_grad + self.weight * beta * anchor_grad
