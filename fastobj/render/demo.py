"""Small networks for demos, tests and ``fastobj render``: a CNN (the default) and a ViT.

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

:class:`DemoViT` is the transformer counterpart, random and seeded the same way; its layout is
in its docstring.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DemoCNN", "demo_cnn", "DemoViT", "demo_vit"]


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


class _Attention(nn.Module):
    """Multi-head self-attention over (B, T, C) tokens: ``qkv``, then ``proj``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, t, c))


class _Mlp(nn.Module):
    """``fc1`` (C -> hidden), ``act`` (GELU: the MLP neurons), ``fc2`` (hidden -> C)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _Block(nn.Module):
    """Pre-norm transformer block; its output is the residual stream after it."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DemoViT(nn.Module):
    """A tiny vision transformer with seeded random weights (untrained).

    Layout (names usable as targets; every activation but ``head``'s is (B, T, C) tokens, the
    class token first, then the patch grid row by row)::

        patch_embed     Conv2d(3, 48, 8, stride=8)        (B, 48, h, w) patch features
        blocks.0 .. 2   transformer blocks (4 heads)      (B, 1 + h*w, 48) residual stream
        blocks.i.attn   attention output                   (B, 1 + h*w, 48)
        blocks.i.mlp.act  GELU of the MLP's hidden layer   (B, 1 + h*w, 192): the MLP neurons
        norm            LayerNorm                          (B, 1 + h*w, 48)
        head            Linear(48, 10) of the class token  (B, 10)

    Any image size of at least 8 px works: the grid is (H // 8, W // 8) and the position
    embeddings (drawn for an 8 x 8 grid) are resized bilinearly to it. Read the tokens with
    :class:`fastobj.Tokens` (prefix 1) and the head with :class:`fastobj.Pooled`.

    Args:
        seed: seed of the generator that draws the weights (normal, scaled by 1/sqrt(fan-in);
            LayerNorms start as the identity).
    """

    def __init__(self, seed: int = 0, dim: int = 48, depth: int = 3, heads: int = 4,
                 patch: int = 8, grid: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, grid, grid))
        self.blocks = nn.Sequential(*[_Block(dim, heads, 4 * dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """Redraw every weight from a generator seeded with ``seed`` (global RNG untouched)."""
        gen = torch.Generator().manual_seed(int(seed))
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen)
                                    / math.sqrt(fan_in))
                module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        self.cls_token.copy_(torch.randn(self.cls_token.shape, generator=gen))
        # Small position embeddings, so the image (not the position) dominates the tokens.
        self.pos_embed.copy_(0.1 * torch.randn(self.pos_embed.shape, generator=gen))
        # Images live in [0, 1]; centre the patch embedding's response on mid-grey input.
        embed = self.patch_embed
        embed.bias.copy_(-0.5 * embed.weight.sum(dim=(1, 2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embed(x)
        pos = F.interpolate(self.pos_embed, size=patches.shape[2:], mode="bilinear",
                            align_corners=False)
        tokens = (patches + pos).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        tokens = self.norm(self.blocks(torch.cat([cls, tokens], dim=1)))
        return self.head(tokens[:, 0])


def demo_vit(seed: int = 0) -> DemoViT:
    """``DemoViT(seed)`` in eval mode: ``fastobj render --model fastobj.render.demo:demo_vit``."""
    return DemoViT(seed).eval()
