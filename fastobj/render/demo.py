"""A small convolutional network for demos, tests and the ``fastobj render`` default.

The network is random but deterministic: its weights come from a seeded generator, so every
machine builds the same model without downloading anything. It is not trained, so its
visualizations show the textures its random filters respond to, which is enough to exercise
the rendering loop end to end.

Layout (names usable as objective targets)::

    features.0  Conv2d(3, 16, 3, padding=1)
    features.1  ReLU
    features.2  Conv2d(16, 24, 3, stride=2, padding=1)
    features.3  ReLU
    features.4  Conv2d(24, 32, 3, stride=2, padding=1)
    features.5  ReLU
    features.6  Conv2d(32, 48, 3, padding=1)
    features.7  ReLU
    pool        AdaptiveAvgPool2d(1)
    classifier  Linear(48, 10)  (applied to the flattened pooled features)
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["DemoCNN", "demo_cnn"]


class DemoCNN(nn.Module):
    """Four conv+ReLU layers in ``features``, then global average pooling and a linear head.

    Args:
        seed: seed of the generator that draws the weights (He-normal convolutions, zero
            biases except a small constant on the first layer so early channels are not
            all dead on a grey image).
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        widths = [3, 16, 24, 32, 48]
        strides = [1, 2, 2, 1]
        layers = []
        for c_in, c_out, stride in zip(widths[:-1], widths[1:], strides):
            layers.append(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1))
            layers.append(nn.ReLU())
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(widths[-1], 10)
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """Redraw every weight from a generator seeded with ``seed`` (global RNG untouched)."""
        gen = torch.Generator().manual_seed(int(seed))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen)
                                    * math.sqrt(2.0 / fan_in))
                module.bias.zero_()
            elif isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen)
                                    / math.sqrt(module.in_features))
                module.bias.zero_()
        first = self.features[0]
        # Images live in [0, 1]; centre the first layer's response on mid-grey input.
        first.bias.copy_(-0.5 * first.weight.sum(dim=(1, 2, 3)) + 0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(self.pool(x), 1))


def demo_cnn(seed: int = 0) -> DemoCNN:
    """The default model of ``fastobj render``: ``DemoCNN(seed)`` in eval mode."""
    return DemoCNN(seed).eval()
