"""Diversity and Direction on ViT-B/16-sized token activations, (B, 197, 768).

A ViT-B/16 block gives 197 tokens (a class token, then 14 x 14 patches) of 768 channels,
channels last. fastobj reads the patches through :class:`fastobj.Tokens`, a strided
(B, 768, 14, 14) view of the tokens' memory that the objectives (and on CUDA the Triton
kernels) consume as is. The classic approach first copies them into a contiguous
(B, C, H, W) tensor (``permute`` + ``contiguous``) and runs the classic loop of
``benchmarks/baselines.py``.

Providers (each maps the op's arguments to its value; the first argument, the tokens, is the
one differentiated):

* ``fastobj``: the objective on the ``Tokens`` target (the library's automatic path);
* ``reference``: the PyTorch reference of ``fastobj.functional`` on the same view;
* ``classic``: permute + contiguous + the classic loop;
* ``copy+fastobj``: permute + contiguous + the objective, which isolates what the copy costs.

:mod:`.ops` registers them as the ops ``vit_diversity`` and ``vit_direction`` of
``fastobj bench`` (``fastobj bench --ops vit_diversity,vit_direction``), which times them with
its one timing loop and rates them with the kernels' cost models.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Tuple

import torch

import fastobj
from fastobj import functional as Fn

from . import baselines

PREFIX = 1  # the class token before the patches; the token shape is presets.VIT_TOKENS
DIRECTION_COSSIM_POW = 1.0  # exercises the cosine term, as the harness's direction op does
PROVIDERS = ("fastobj", "copy+fastobj", "reference", "classic")

_TARGET = fastobj.Tokens("tokens", prefix=PREFIX)
_DIVERSITY = fastobj.Diversity(_TARGET)

Dims = Tuple[int, int, int]  # (B, T, C)


def _randn(shape, dtype, device, gen) -> torch.Tensor:
    return torch.randn(tuple(shape), device=device, generator=gen).to(dtype)


def make_tokens(dims: Dims, dtype, device, gen) -> Tuple[torch.Tensor]:
    """(tokens,): a (B, T, C) activation, contiguous as a transformer block returns it."""
    return (_randn(dims, dtype, device, gen),)


def make_tokens_and_vec(dims: Dims, dtype, device, gen) -> Tuple[torch.Tensor, torch.Tensor]:
    """(tokens, vec): the activation and one shared direction of C entries."""
    return _randn(dims, dtype, device, gen), _randn(dims[2:], dtype, device, gen)


def contiguous_grid(tokens: torch.Tensor) -> torch.Tensor:
    """The classic preparation: the patch tokens copied into a contiguous (B, C, h, w)."""
    b, t, c = tokens.shape
    side = math.isqrt(t - PREFIX)
    return tokens[:, PREFIX:].permute(0, 2, 1).contiguous().reshape(b, c, side, side)


def diversity_fastobj(tokens: torch.Tensor) -> torch.Tensor:
    return _DIVERSITY({_TARGET: tokens})


def diversity_copy_fastobj(tokens: torch.Tensor) -> torch.Tensor:
    return fastobj.Diversity("grid")({"grid": contiguous_grid(tokens)})


def diversity_reference(tokens: torch.Tensor) -> torch.Tensor:
    return Fn.diversity_ref(_TARGET.view(tokens).flatten(2))


def diversity_classic(tokens: torch.Tensor) -> torch.Tensor:
    return baselines.diversity(contiguous_grid(tokens))


def direction_fastobj(tokens: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    return fastobj.Direction(_TARGET, vec, DIRECTION_COSSIM_POW)({_TARGET: tokens})


def direction_copy_fastobj(tokens: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    return fastobj.Direction("grid", vec, DIRECTION_COSSIM_POW)({"grid": contiguous_grid(tokens)})


def direction_reference(tokens: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    grid = _TARGET.view(tokens)
    out = Fn.dot_cossim_ref(grid.flatten(2), vec.reshape(1, -1, 1), DIRECTION_COSSIM_POW)
    return out.reshape(grid.shape[0], *grid.shape[2:])


def direction_classic(tokens: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    return baselines.direction(contiguous_grid(tokens), vec, DIRECTION_COSSIM_POW)


FUNCTIONS: Dict[str, Dict[str, Callable]] = {
    "vit_diversity": {"fastobj": diversity_fastobj, "copy+fastobj": diversity_copy_fastobj,
                      "reference": diversity_reference, "classic": diversity_classic},
    "vit_direction": {"fastobj": direction_fastobj, "copy+fastobj": direction_copy_fastobj,
                      "reference": direction_reference, "classic": direction_classic},
}
MAKERS = {"vit_diversity": make_tokens, "vit_direction": make_tokens_and_vec}
