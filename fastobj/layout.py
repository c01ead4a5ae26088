"""Layout adapters: transformer token activations seen by the objectives as (B, C, H, W).

Every objective reads its activation as channels on dim 1 and positions on dims 2 and 3.
Vision transformers give (B, T, C) tokens instead: ``prefix`` special tokens (the class token,
distillation or register tokens) followed by a row-major grid of patch tokens, channels last.
Pooled outputs (a class embedding, logits) are (B, C) vectors.

A layout is declared once, on the target, by wrapping it:

* ``Tokens(target, prefix=1, grid=None)``: the patch tokens as a ``(B, C, h, w)`` view;
  ``Tokens(...).cls`` (or ``token=k``) one token alone as ``(B, C, 1, 1)``.
* ``Pooled(target)``: a ``(B, C)`` vector as ``(B, C, 1, 1)``.

The wrapped object is itself the target: objectives take it in place of a module or a name,
the capture helpers hook its module and store the module's raw output under it, and when an
objective reads its activation the layout turns that output into the view. The views are
strided views of the raw output, never copies, so the Triton kernels (which take any strides)
read the transformer's memory directly, and gradients flow back into the raw output.
A mapping that holds the raw output under the plain target (``{"blocks.3": acts}``, as hand
made loops and Captum-style hooks build it) works too: a layout target reads its own key when
present, else its plain target's.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Optional, Tuple

import torch

from .checks import as_index

__all__ = ["LayoutTarget", "Tokens", "Pooled", "plain_target", "lookup", "laid_out"]


def _describe(target: Any) -> str:
    """A target in one line: a name as given, a module by its class (its repr spans lines)."""
    if isinstance(target, torch.nn.Module):
        return f"<{type(target).__name__} module>"
    return repr(target)


class LayoutTarget(ABC):
    """A target whose activation is read through a layout (see :class:`Tokens`, :class:`Pooled`).

    ``target`` is the plain target (a module or a submodule name) whose output is captured.
    """

    target: Any

    @abstractmethod
    def view(self, activation: torch.Tensor, owner: str = "") -> torch.Tensor:
        """The (B, C, H, W) view of ``activation`` (the plain target's raw output)."""

    def _check_plain(self) -> None:
        if isinstance(self.target, LayoutTarget):
            raise TypeError(f"{type(self).__name__}: target is already a layout target "
                            f"({self.target!r}); wrap the plain module or name")

    def _refuse(self, owner: str, activation: torch.Tensor, why: str) -> ValueError:
        where = f"{owner}: " if owner else ""
        return ValueError(f"{where}target {self!r} does not fit its activation of shape "
                          f"{tuple(activation.shape)}: {why}")


@dataclass(frozen=True, eq=True, repr=False)
class Tokens(LayoutTarget):
    """Transformer tokens (B, T, C): ``prefix`` special tokens, then an h x w patch grid.

    Objectives see the patch tokens as ``(B, C, h, w)`` (channels on dim 1, patch rows on dim 2,
    patch columns on dim 3): ``x[:, prefix:].unflatten(1, (h, w)).permute(0, 3, 1, 2)``, a
    view. With ``token=k`` they see token k alone (the class token is 0) as ``(B, C, 1, 1)``.

    Args:
        target: the module, or the submodule name, whose output holds the tokens.
        prefix: leading special tokens before the patches (1 for the class token of ViT and
            CLIP, 2 with DeiT's distillation token, 0 when there is none).
        grid: the patch grid (h, w); one entry may be -1 (inferred). None: a square grid.
        token: None for the patch grid; an int selects that token of the whole sequence
            (negative counts from the end).
        batch_first: False for sequence-first (T, B, C) outputs, as OpenAI CLIP's blocks give.

    The layout is checked against every activation it reads: a rank other than 3, fewer tokens
    than ``prefix + 1``, or patches that do not fill the grid raise ``ValueError`` naming the
    objective, this target and the shape.
    """

    target: Any
    prefix: int = 1
    grid: Optional[Tuple[int, int]] = None
    token: Optional[int] = None
    batch_first: bool = True

    def __post_init__(self) -> None:
        self._check_plain()
        owner = "Tokens"
        prefix = as_index(self.prefix, owner, "prefix")
        if prefix < 0:
            raise ValueError(f"{owner}: prefix must be >= 0, got {prefix}")
        object.__setattr__(self, "prefix", prefix)
        if self.grid is not None:
            if not isinstance(self.grid, (tuple, list)) or len(self.grid) != 2:
                raise ValueError(f"{owner}: grid must be a pair (h, w), got {self.grid!r}")
            grid = tuple(as_index(g, owner, "grid entry") for g in self.grid)
            if any(g < 1 and g != -1 for g in grid) or grid == (-1, -1):
                raise ValueError(f"{owner}: grid entries must be >= 1, one of them may be -1 "
                                 f"(inferred); got {grid}")
            object.__setattr__(self, "grid", grid)
        if self.token is not None:
            object.__setattr__(self, "token", as_index(self.token, owner, "token"))
        if not isinstance(self.batch_first, bool):
            raise TypeError(f"{owner}: batch_first must be a bool, got "
                            f"{type(self.batch_first).__name__}")

    @property
    def cls(self) -> "Tokens":
        """The class token (token 0) alone, as (B, C, 1, 1)."""
        if self.prefix < 1:
            raise ValueError(f"{self!r} has no class token (prefix=0)")
        return replace(self, token=0)

    @property
    def patches(self) -> "Tokens":
        """The patch grid, (B, C, h, w) (the default view)."""
        return replace(self, token=None)

    def __repr__(self) -> str:
        parts = [_describe(self.target), f"prefix={self.prefix}"]
        if self.grid is not None:
            parts.append(f"grid={self.grid}")
        if self.token is not None:
            parts.append(f"token={self.token}")
        if not self.batch_first:
            parts.append("batch_first=False")
        return f"Tokens({', '.join(parts)})"

    def grid_of(self, activation: torch.Tensor, owner: str = "") -> Tuple[int, int]:
        """The (h, w) patch grid of a (B, T, C) activation, checked against the layout."""
        if activation.dim() != 3:
            raise self._refuse(owner, activation, "expected rank 3, (B, T, C) tokens"
                               + ("" if self.batch_first else " stored as (T, B, C)"))
        tokens = activation.shape[1 if self.batch_first else 0]
        patches = tokens - self.prefix
        if patches < 1:
            raise self._refuse(owner, activation, f"{tokens} tokens leave no patch tokens after "
                               f"{self.prefix} prefix tokens")
        if self.grid is None:
            side = math.isqrt(patches)
            if side * side != patches:
                raise self._refuse(owner, activation, f"{patches} patch tokens ({tokens} tokens "
                                   f"- {self.prefix} prefix) do not form a square grid; give "
                                   "grid=(h, w)")
            return side, side
        h, w = self.grid
        if -1 in (h, w):
            known = w if h == -1 else h
            if patches % known:
                raise self._refuse(owner, activation, f"grid {self.grid} does not divide "
                                   f"{patches} patch tokens ({tokens} tokens - {self.prefix} "
                                   "prefix)")
            h, w = (patches // known, w) if h == -1 else (h, patches // known)
        if h * w != patches:
            raise self._refuse(owner, activation, f"grid {self.grid} holds {h * w} patches but "
                               f"there are {patches} patch tokens ({tokens} tokens - "
                               f"{self.prefix} prefix)")
        return h, w

    def view(self, activation: torch.Tensor, owner: str = "") -> torch.Tensor:
        """(B, C, h, w) view of the patch tokens, or (B, C, 1, 1) of token ``token``."""
        h, w = self.grid_of(activation, owner)
        tokens = activation if self.batch_first else activation.transpose(0, 1)
        if self.token is not None:
            count = tokens.shape[1]
            if not -count <= self.token < count:
                raise self._refuse(owner, activation, f"token {self.token} is outside "
                                   f"{count} tokens")
            return tokens[:, self.token, :, None, None]
        return tokens[:, self.prefix:].unflatten(1, (h, w)).permute(0, 3, 1, 2)


@dataclass(frozen=True, eq=True, repr=False)
class Pooled(LayoutTarget):
    """A pooled (B, C) vector (a class embedding, projected features, logits) as (B, C, 1, 1).

    With it the neuron and direction objectives, which need a position grid, read vectors too.
    """

    target: Any

    def __post_init__(self) -> None:
        self._check_plain()

    def __repr__(self) -> str:
        return f"Pooled({_describe(self.target)})"

    def view(self, activation: torch.Tensor, owner: str = "") -> torch.Tensor:
        """(B, C, 1, 1) view of a (B, C) activation."""
        if activation.dim() != 2:
            raise self._refuse(owner, activation, "expected rank 2, (B, C) vectors")
        return activation[:, :, None, None]


def plain_target(target: Any) -> Any:
    """The module or name whose output a target reads (the target itself unless laid out)."""
    return target.target if isinstance(target, LayoutTarget) else target


def lookup(targets_to_values: Mapping, target: Any) -> Any:
    """The raw activation of ``target``: under its own key, else (layouts) its plain target's.

    Raises KeyError when neither is in the mapping.
    """
    if target in targets_to_values:
        return targets_to_values[target]
    if isinstance(target, LayoutTarget) and target.target in targets_to_values:
        return targets_to_values[target.target]
    raise KeyError(target)


def laid_out(target: Any, activation: torch.Tensor, owner: str = "") -> torch.Tensor:
    """``activation`` as the objectives see it: the layout's view for a layout target."""
    return target.view(activation, owner) if isinstance(target, LayoutTarget) else activation
