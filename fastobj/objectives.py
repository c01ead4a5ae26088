"""The eighteen feature-visualization objectives.

Each objective checks its arguments (at construction where it can, at call time where the
activation's shape is needed), selects the batch, and calls the functional core. They keep the
names, arguments, call convention and values of Captum's ``optim`` objectives; the defects of
those are fixed, each noted in the objective's docstring under "Differences from Captum".

Conventions: ``S`` is the target's activation after batch selection, ``B'`` its batch size,
``C`` its channel count. Objectives return quantities to maximise (the default summary is
``-mean``); penalties such as TotalVariation, L1 and L2 are returned positive.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F

from . import functional as Fn
from .distributed import alignment_distributed, all_reduce_replicated
from .layout import laid_out, lookup
from .loss import BaseLoss, BatchIndex, ModuleOutputMapping, as_index, select_batch

ChannelIndex = Union[int, Sequence[int], torch.Tensor]

__all__ = [
    "LayerActivation", "ChannelActivation", "NeuronActivation", "DeepDream", "TotalVariation",
    "L1", "L2", "Diversity", "ActivationInterpolation", "Alignment", "Direction",
    "NeuronDirection", "AngledNeuronDirection", "TensorDirection", "ActivationWeights",
    "L2Mean", "VectorLoss", "FacetLoss",
]


# --------------------------------------------------------------------------------------------
# Argument checks shared by the objectives. Each error names the objective and the argument.
# --------------------------------------------------------------------------------------------

def _check_position(value: int, size: int, owner: str, arg: str, axis: str) -> int:
    """A position along an axis of length ``size``; negative values count from the end."""
    if not -size <= value < size:
        raise IndexError(f"{owner}: {arg}={value} is outside {axis} of size {size}")
    return value % size


def _channel_index(value: ChannelIndex, owner: str, arg: str = "channel_index"
                   ) -> Union[int, torch.Tensor]:
    """An int, or a 1-D int64 tensor of per-sample channels (from a sequence or tensor)."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            return as_index(value, owner, arg)
        if value.dim() != 1 or value.is_floating_point() or value.is_complex() \
                or value.dtype == torch.bool:
            raise TypeError(f"{owner}: {arg} as a tensor must be 1-D with integer entries, got "
                            f"shape {tuple(value.shape)} and dtype {value.dtype}")
        return value.to(torch.int64)
    if isinstance(value, (list, tuple)):
        return torch.tensor([as_index(v, owner, f"{arg}[{i}]") for i, v in enumerate(value)],
                            dtype=torch.int64)
    return as_index(value, owner, arg)


def _check_channels(index: Union[int, torch.Tensor], channels: int, batch: int, owner: str,
                    arg: str = "channel_index") -> Union[int, torch.Tensor]:
    """Range-check a channel index (int or per-sample tensor) against the activation."""
    if isinstance(index, int):
        return _check_position(index, channels, owner, arg, "the channel dim")
    if index.numel() != batch:
        raise ValueError(f"{owner}: {arg} has {index.numel()} per-sample entries but "
                         f"{batch} samples are selected")
    if index.numel() and bool(((index < -channels) | (index >= channels)).any()):
        raise IndexError(f"{owner}: {arg} {index.tolist()} has entries outside the channel dim "
                         f"of size {channels}")
    return index.remainder(channels)


def _activation(owner: str, targets_to_values: ModuleOutputMapping, target: Any,
                min_dim: int = 1, dims: Optional[Sequence[int]] = None,
                apply_layout: bool = True) -> torch.Tensor:
    """The target's activation, checked to be a floating tensor of an accepted rank.

    A layout target (:mod:`fastobj.layout`) gives its (B, C, H, W) view; ``apply_layout=False``
    gives the raw output instead.
    """
    if not isinstance(targets_to_values, Mapping):
        raise TypeError(f"{owner}: the activations must be a mapping from targets to tensors, "
                        f"got {type(targets_to_values).__name__}")
    try:
        value = lookup(targets_to_values, target)
    except KeyError:
        raise KeyError(f"{owner}: no activation for target {target!r} in the mapping (keys: "
                       f"{list(targets_to_values)!r})") from None
    if value is None:
        raise ValueError(f"{owner}: target {target!r} has no activation (its forward pass did "
                         "not run)")
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{owner}: the activation of {target!r} is a {type(value).__name__}, "
                        "not a tensor")
    if not value.is_floating_point():
        raise TypeError(f"{owner}: the activation of {target!r} has dtype {value.dtype}; "
                        "objectives need a floating-point activation")
    if apply_layout:
        value = laid_out(target, value, owner)
    if dims is not None and value.dim() not in dims:
        raise ValueError(f"{owner}: expected an activation of rank {' or '.join(map(str, dims))}, "
                         f"got shape {tuple(value.shape)}")
    if value.dim() < min_dim:
        raise ValueError(f"{owner}: expected an activation of rank >= {min_dim}, got shape "
                         f"{tuple(value.shape)}")
    return value


def _vector(vec: Any, owner: str, arg: str = "vec") -> torch.Tensor:
    if not isinstance(vec, torch.Tensor):
        raise TypeError(f"{owner}: {arg} must be a tensor, got {type(vec).__name__}")
    if not vec.is_floating_point():
        raise TypeError(f"{owner}: {arg} must be a floating tensor, got dtype {vec.dtype}")
    if vec.numel() == 0:
        raise ValueError(f"{owner}: {arg} is empty")
    return vec


def _direction(vec: Any, owner: str) -> torch.Tensor:
    """One shared direction as (1, C, 1, 1), or one per sample (B', C) as (B', C, 1, 1)."""
    vec = _vector(vec, owner)
    if vec.dim() == 2 and vec.shape[0] > 1:
        return vec.reshape(vec.shape[0], vec.shape[1], 1, 1)
    return vec.reshape(1, -1, 1, 1)


def _check_vector_batch(vec_batch: int, batch: int, owner: str, arg: str = "vec") -> None:
    if vec_batch not in (1, batch):
        raise ValueError(f"{owner}: {arg} holds {vec_batch} per-sample directions but {batch} "
                         "samples are selected")


def _check_vector_channels(vec_channels: int, channels: int, owner: str,
                           arg: str = "vec") -> None:
    if vec_channels != channels:
        raise ValueError(f"{owner}: {arg} has {vec_channels} channels but the activation has "
                         f"{channels}")


def _neuron_position(owner: str, acts: torch.Tensor, x: Optional[int], y: Optional[int]
                     ) -> Tuple[int, int]:
    """(row, column): ``x`` along dim 2, ``y`` along dim 3; defaults are the centre cells."""
    h, w = acts.shape[2], acts.shape[3]
    px = h // 2 if x is None else _check_position(x, h, owner, "x", "dim 2 (rows)")
    py = w // 2 if y is None else _check_position(y, w, owner, "y", "dim 3 (columns)")
    return px, py


def _optional_index(value: Any, owner: str, arg: str) -> Optional[int]:
    return None if value is None else as_index(value, owner, arg)


def _sum(t: torch.Tensor) -> torch.Tensor:
    return t.sum(dtype=Fn.accumulation_dtype(t.dtype)).to(t.dtype)


def _mean(t: torch.Tensor, dim: Any = None) -> torch.Tensor:
    acc = Fn.accumulation_dtype(t.dtype)
    out = t.mean(dtype=acc) if dim is None else t.mean(dim=dim, dtype=acc)
    return out.to(t.dtype)


def _per_sample_channel(s: torch.Tensor, index: Union[int, torch.Tensor], keepdim: bool = False
                        ) -> torch.Tensor:
    """Channel ``index`` of every sample (int), or channel index[b] of sample b (tensor)."""
    if isinstance(index, int):
        return s[:, index:index + 1] if keepdim else s[:, index]
    picked = s[torch.arange(s.shape[0], device=s.device), index.to(s.device)]
    return picked.unsqueeze(1) if keepdim else picked


class _Objective(BaseLoss):
    """A BaseLoss that reads one target's activation and selects its batch."""

    def _selected(self, targets_to_values: ModuleOutputMapping, min_dim: int = 1,
                  dims: Optional[Sequence[int]] = None,
                  target: Any = None) -> torch.Tensor:
        acts = _activation(self.__name__, targets_to_values,
                           self.target if target is None else target, min_dim, dims)
        return select_batch(acts, self.batch_index, self.__name__)


# --------------------------------------------------------------------------------------------
# Activations of layers, channels, neurons.
# --------------------------------------------------------------------------------------------

class LayerActivation(_Objective):
    """The selected activation itself, unchanged."""

    def __init__(self, target: Any, batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        return self._selected(targets_to_values)


class ChannelActivation(_Objective):
    """One channel of the activation: ``S[:, c]``, shape (B', H, W) for 4-D input.

    ``channel_index`` is an int (negative counts from the end) or a sequence / 1-D tensor of
    B' ints, one channel per selected sample.

    Differences from Captum: per-sample channels; out-of-range channels raise IndexError.
    """

    def __init__(self, target: Any, channel_index: ChannelIndex,
                 batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        self.channel_index = _channel_index(channel_index, self.__name__)

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values, min_dim=2)
        index = _check_channels(self.channel_index, s.shape[1], s.shape[0], self.__name__)
        return _per_sample_channel(s, index)


class NeuronActivation(_Objective):
    """One neuron: ``S[:, c, x:x+1, y:y+1]``, shape (B', 1, 1).

    ``x`` indexes dim 2 (rows, default H//2) and ``y`` dim 3 (columns, default W//2);
    negative values count from the end. ``channel_index`` may be per sample.

    Differences from Captum: the default centre is no longer swapped on non-square maps, and
    the range checks use the right axis.
    """

    def __init__(self, target: Any, channel_index: ChannelIndex, x: Optional[int] = None,
                 y: Optional[int] = None, batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        self.channel_index = _channel_index(channel_index, self.__name__)
        self.x = _optional_index(x, self.__name__, "x")
        self.y = _optional_index(y, self.__name__, "y")

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values, dims=(4,))
        index = _check_channels(self.channel_index, s.shape[1], s.shape[0], self.__name__)
        px, py = _neuron_position(self.__name__, s, self.x, self.y)
        return _per_sample_channel(s, index)[:, px:px + 1, py:py + 1]


class DeepDream(_Objective):
    """The squared activation, elementwise (same shape): maximising it amplifies what fires."""

    def __init__(self, target: Any, batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        return self._selected(targets_to_values).square()


# --------------------------------------------------------------------------------------------
# Penalties (returned positive; subtract them).
# --------------------------------------------------------------------------------------------

class TotalVariation(_Objective):
    """Anisotropic L1 total variation over the last two dims, summed over the rest; 0-dim.

    Usually targets the image: ``objective - 1e-3 * TotalVariation(image_module)``.
    """

    def __init__(self, target: Any, batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        return Fn.total_variation(self._selected(targets_to_values, min_dim=2))


class L1(_Objective):
    """``Σ |S - constant|``, 0-dim."""

    def __init__(self, target: Any, constant: float = 0.0, batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        self.constant = constant

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        return _sum((self._selected(targets_to_values) - self.constant).abs())


class L2(_Objective):
    """``sqrt(eps + Σ (S - constant)²)``, 0-dim."""

    def __init__(self, target: Any, constant: float = 0.0, eps: float = 1e-6,
                 batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        self.constant = constant
        self.eps = eps

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values)
        return (_sum((s - self.constant).square()) + self.eps).sqrt()


class L2Mean(_Objective):
    """``mean((S[:, c] - constant)²)`` over one channel (or all when ``channel_index`` is None).

    ``channel_index`` may be per sample.
    """

    def __init__(self, target: Any, channel_index: Optional[ChannelIndex] = None,
                 constant: float = 0.5, batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        self.channel_index = (None if channel_index is None
                              else _channel_index(channel_index, self.__name__))
        self.constant = constant

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values, min_dim=2 if self.channel_index is not None else 1)
        if self.channel_index is not None:
            index = _check_channels(self.channel_index, s.shape[1], s.shape[0], self.__name__)
            s = _per_sample_channel(s, index, keepdim=True)
        return _mean((s - self.constant).square())


# --------------------------------------------------------------------------------------------
# Batch-level objectives.
# --------------------------------------------------------------------------------------------

def _check_process_group(group: Any, owner: str) -> Any:
    if group is not None and not dist.is_initialized():
        raise ValueError(f"{owner}: process_group was given but torch.distributed is not "
                         "initialised")
    return group


class Diversity(_Objective):
    """Pushes the samples' Gram (style) matrices apart: ``-(1/B') Σ_{i≠j} <ĝ_i, ĝ_j>``.

    ĝ_i is sample i's Gram matrix F_i F_iᵀ (channels x channels, positions flattened) divided by
    its Frobenius norm. Computed in closed form, ``-(‖Σĝ_i‖² - Σ‖ĝ_i‖²)/B'``: linear in the
    batch, never B' x B'. 0-dim. With ``process_group`` the value and gradients are those of the
    batch spread over the group's ranks.

    Differences from Captum: a batch of one gives a 0-dim tensor 0.0 in the graph (not a Python
    float); activations need not be view-compatible; any batch_index form is accepted.
    """

    def __init__(self, target: Any, batch_index: BatchIndex = None,
                 process_group: Any = None) -> None:
        super().__init__(target, batch_index)
        self.process_group = _check_process_group(process_group, self.__name__)

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values, min_dim=2)
        feats = s.reshape(s.shape[0], s.shape[1], -1)
        if self.process_group is None:
            return Fn.diversity(feats)
        sums, sq = Fn.diversity_sums(feats)
        sums, sq, count = all_reduce_replicated(
            [sums, sq, sums.new_tensor(float(feats.shape[0]))], self.process_group)
        return Fn.diversity_value(sums, sq, count).to(s.dtype)


class ActivationInterpolation(BaseLoss):
    """Interpolates from target1 (first sample) to target2 (last sample) across the batch.

    ``Σ_n (1 - w_n)·mean(A1[n]) + w_n·mean(A2[n])`` with ``w_n = n/(B-1)``; shape (1,). A
    channel index selects that channel of its target (``None``: all channels).

    Differences from Captum: channel index 0 is channel 0 (not "all channels"); a batch of one
    uses weight 0 instead of dividing by zero.
    """

    def __init__(self, target1: Any = None, channel_index1: Optional[int] = None,
                 target2: Any = None, channel_index2: Optional[int] = None) -> None:
        super().__init__([target1, target2])
        self.target_one, self.target_two = target1, target2
        self.channel_index1 = _optional_index(channel_index1, self.__name__, "channel_index1")
        self.channel_index2 = _optional_index(channel_index2, self.__name__, "channel_index2")

    def _means(self, targets_to_values: ModuleOutputMapping, target: Any,
               channel: Optional[int], arg: str) -> torch.Tensor:
        acts = _activation(self.__name__, targets_to_values, target,
                           min_dim=2 if channel is not None else 1)
        if acts.shape[0] == 0:
            raise ValueError(f"{self.__name__}: the activation of {target!r} has an empty batch")
        if channel is not None:
            acts = acts[:, _check_position(channel, acts.shape[1], self.__name__, arg,
                                           "the channel dim")]
        return _mean(acts.reshape(acts.shape[0], -1), dim=1)

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        one = self._means(targets_to_values, self.target_one, self.channel_index1,
                          "channel_index1")
        two = self._means(targets_to_values, self.target_two, self.channel_index2,
                          "channel_index2")
        if one.shape[0] != two.shape[0]:
            raise ValueError(f"{self.__name__}: target1 has a batch of {one.shape[0]} but "
                             f"target2 has {two.shape[0]}; they must match")
        batch = one.shape[0]
        weights = torch.arange(batch, device=one.device, dtype=one.dtype) / max(batch - 1, 1)
        return ((1 - weights) * one + weights * two.to(one.dtype)).sum().reshape(1)


class Alignment(_Objective):
    """Keeps neighbouring samples alike: ``-Σ_{d=1..4} Σ_i mean((S_i - S_{i+d})²) / r^d``.

    ``r`` is ``decay_ratio``; shape (1,). Vectorised over the batch (four slices, no loop over
    samples). With ``process_group`` the neighbours across rank boundaries count too.
    """

    def __init__(self, target: Any, decay_ratio: float = 2.0, batch_index: BatchIndex = None,
                 process_group: Any = None) -> None:
        super().__init__(target, batch_index)
        self.decay_ratio = decay_ratio
        self.process_group = _check_process_group(process_group, self.__name__)

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values)
        if self.process_group is not None:
            return alignment_distributed(s, self.decay_ratio, self.process_group)
        return Fn.alignment_ref(s, self.decay_ratio)


# --------------------------------------------------------------------------------------------
# Directions in activation space.
# --------------------------------------------------------------------------------------------

class Direction(_Objective):
    """Channel dot product with ``vec`` at every position, times ``clamp(cos, 0.1)^cossim_pow``.

    ``vec`` has C entries (any shape, flattened) or is (B', C): one direction per selected
    sample. Returns (B', H, W) for 4-D activations, (B', *spatial) in general.

    Differences from Captum: a channel count different from the activation's raises
    ValueError instead of broadcasting; per-sample directions.
    """

    def __init__(self, target: Any, vec: torch.Tensor, cossim_pow: float = 0.0,
                 batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        self.vec = _direction(vec, self.__name__)
        self.cossim_pow = cossim_pow

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values, min_dim=2)
        _check_vector_channels(self.vec.shape[1], s.shape[1], self.__name__)
        _check_vector_batch(self.vec.shape[0], s.shape[0], self.__name__)
        vec = self.vec.reshape(self.vec.shape[0], -1, 1).to(device=s.device, dtype=s.dtype)
        out = Fn.dot_cossim(s.reshape(s.shape[0], s.shape[1], -1), vec, self.cossim_pow)
        return out.reshape((s.shape[0],) + tuple(s.shape[2:]))


class NeuronDirection(_Objective):
    """Direction at one position: (B', 1, 1).

    The neuron vector is ``S[:, :, x, y]`` (``x`` along dim 2, ``y`` along dim 3, centre by
    default). ``vec`` may be per sample, (B', C).

    Differences from Captum: ``channel_index=c`` restricts the direction to channel c
    (``vec[c]·S[:, c]``, with the cosine of those one-element vectors) instead of broadcasting
    one channel against the whole vector; the default position is the true centre; a channel
    count mismatch raises ValueError.
    """

    def __init__(self, target: Any, vec: torch.Tensor, x: Optional[int] = None,
                 y: Optional[int] = None, channel_index: Optional[int] = None,
                 cossim_pow: float = 0.0, batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        self.vec = _direction(vec, self.__name__)
        self.x = _optional_index(x, self.__name__, "x")
        self.y = _optional_index(y, self.__name__, "y")
        self.channel_index = _optional_index(channel_index, self.__name__, "channel_index")
        self.cossim_pow = cossim_pow

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values, dims=(4,))
        _check_vector_channels(self.vec.shape[1], s.shape[1], self.__name__)
        _check_vector_batch(self.vec.shape[0], s.shape[0], self.__name__)
        px, py = _neuron_position(self.__name__, s, self.x, self.y)
        neuron = s[:, :, px, py].unsqueeze(2)
        vec = self.vec.reshape(self.vec.shape[0], -1, 1).to(device=s.device, dtype=s.dtype)
        if self.channel_index is not None:
            c = _check_position(self.channel_index, s.shape[1], self.__name__, "channel_index",
                                "the channel dim")
            neuron, vec = neuron[:, c:c + 1], vec[:, c:c + 1]
        return Fn.dot_cossim(neuron, vec, self.cossim_pow).reshape(s.shape[0], 1, 1)


class AngledNeuronDirection(_Objective):
    """Activation-atlas direction objective at one neuron position (Lucid's form).

    With S_b the neuron vector of sample b and u the direction (``vec``, or
    ``vec @ vec_whitened``): ``dot_b = mean_c(S_b·u)``, ``c_b = dot_b / (eps + ‖S_b‖)``,
    result ``dot_b · clamp(c_b, 0.1)^cossim_pow`` of shape (B',). With ``cossim_pow=0`` the
    elementwise product ``S·u``, (B', C). ``vec`` may be (B', C), one direction per sample.

    Differences from Captum: dot product and norm are per sample, not over the whole batch
    (identical for a single selected sample).
    """

    def __init__(self, target: Any, vec: torch.Tensor,
                 vec_whitened: Optional[torch.Tensor] = None, cossim_pow: float = 4.0,
                 x: Optional[int] = None, y: Optional[int] = None, eps: float = 1e-4,
                 batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        vec = _vector(vec, self.__name__)
        if vec.dim() == 1:
            vec = vec.unsqueeze(0)
        if vec.dim() != 2:
            raise ValueError(f"{self.__name__}: vec must be 1-D (C,) or 2-D (1 or B', C), got "
                             f"shape {tuple(vec.shape)}")
        if vec_whitened is not None:
            vec_whitened = _vector(vec_whitened, self.__name__, "vec_whitened")
            c = vec.shape[1]
            if tuple(vec_whitened.shape) != (c, c):
                raise ValueError(f"{self.__name__}: vec_whitened must be a ({c}, {c}) matrix "
                                 f"for a vec of {c} channels, got shape "
                                 f"{tuple(vec_whitened.shape)}")
        self.vec = vec
        self.vec_whitened = vec_whitened
        self.cossim_pow = cossim_pow
        self.x = _optional_index(x, self.__name__, "x")
        self.y = _optional_index(y, self.__name__, "y")
        self.eps = eps

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values, dims=(2, 4))
        if s.dim() == 4:
            px, py = _neuron_position(self.__name__, s, self.x, self.y)
            s = s[:, :, px, py]
        _check_vector_channels(self.vec.shape[1], s.shape[1], self.__name__)
        _check_vector_batch(self.vec.shape[0], s.shape[0], self.__name__)
        u = self.vec if self.vec_whitened is None else self.vec @ self.vec_whitened
        u = u.to(device=s.device, dtype=s.dtype)
        if self.cossim_pow == 0:
            return s * u
        out = Fn.dot_cossim(s.unsqueeze(2), u.unsqueeze(2), self.cossim_pow, self.eps,
                            angled=True)
        return out.reshape(s.shape[0])


class TensorDirection(_Objective):
    """Direction given as a spatial tensor ``vec`` (1 or B', C, Hv, Wv), matched against the
    centre Hv x Wv crop of the activation; returns (B', Hv, Wv).

    Differences from Captum: a ``vec`` larger than the activation, or with another channel
    count, raises ValueError instead of slicing with negative offsets or broadcasting.
    """

    def __init__(self, target: Any, vec: torch.Tensor, cossim_pow: float = 0.0,
                 batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        vec = _vector(vec, self.__name__)
        if vec.dim() != 4:
            raise ValueError(f"{self.__name__}: vec must be 4-D (1 or B', C, H, W), got shape "
                             f"{tuple(vec.shape)}")
        self.vec = vec
        self.cossim_pow = cossim_pow

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values, dims=(4,))
        bv, c, hv, wv = self.vec.shape
        _check_vector_channels(c, s.shape[1], self.__name__)
        _check_vector_batch(bv, s.shape[0], self.__name__)
        h, w = s.shape[2], s.shape[3]
        if hv > h or wv > w:
            raise ValueError(f"{self.__name__}: vec's spatial size {hv}x{wv} is larger than the "
                             f"activation's {h}x{w}")
        h0, w0 = (h - hv) // 2, (w - wv) // 2
        crop = s[:, :, h0:h0 + hv, w0:w0 + wv]
        vec = self.vec.reshape(bv, c, hv * wv).to(device=s.device, dtype=s.dtype)
        return Fn.dot_cossim(crop.flatten(2), vec, self.cossim_pow).reshape(s.shape[0], hv, wv)


class ActivationWeights(BaseLoss):
    """Weights the activation's channels by ``weights`` (C entries, or one for all).

    Whole activation: same shape as it. Neuron mode (``neuron=True`` or x/y given): the neuron
    vector at (x, y), shape (B, C). With a window (x, y, wx, wy all given): the window
    ``[x:x+wx]`` along dim 2 and ``[y:y+wy]`` along dim 3, shape (B, C, wx, wy).

    Differences from Captum: one axis convention for both neuron paths (x/wx along dim 2,
    y/wy along dim 3); the neuron path always returns (B, C) (no squeeze of the batch dim).
    """

    def __init__(self, target: Any, weights: Optional[torch.Tensor] = None,
                 neuron: bool = False, x: Optional[int] = None, y: Optional[int] = None,
                 wx: Optional[int] = None, wy: Optional[int] = None) -> None:
        super().__init__(target)
        if weights is None:
            raise ValueError(f"{self.__name__}: weights is required (one per channel)")
        self.weights = _vector(weights, self.__name__, "weights").reshape(-1)
        self.neuron = bool(neuron) or x is not None or y is not None
        self.x = _optional_index(x, self.__name__, "x")
        self.y = _optional_index(y, self.__name__, "y")
        self.wx = _optional_index(wx, self.__name__, "wx")
        self.wy = _optional_index(wy, self.__name__, "wy")
        window = (self.wx, self.wy)
        if window != (None, None) and None in (self.x, self.y, self.wx, self.wy):
            raise ValueError(f"{self.__name__}: a window needs x, y, wx and wy all given "
                             f"(got x={x}, y={y}, wx={wx}, wy={wy})")
        for arg, size in (("wx", self.wx), ("wy", self.wy)):
            if size is not None and size < 1:
                raise ValueError(f"{self.__name__}: {arg} must be >= 1, got {size}")

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        acts = _activation(self.__name__, targets_to_values, self.target,
                           dims=(4,) if self.neuron else None, min_dim=2)
        if acts.shape[0] == 0:
            raise ValueError(f"{self.__name__}: the activation has an empty batch")
        c = acts.shape[1]
        if self.weights.numel() not in (1, c):
            raise ValueError(f"{self.__name__}: weights has {self.weights.numel()} entries but "
                             f"the activation has {c} channels")
        weights = self.weights.to(device=acts.device, dtype=acts.dtype)
        if self.neuron and self.wx is None:
            px, py = _neuron_position(self.__name__, acts, self.x, self.y)
            return acts[:, :, px, py] * weights
        if self.neuron:
            px, py = _neuron_position(self.__name__, acts, self.x, self.y)
            for arg, start, size, total in (("wx", px, self.wx, acts.shape[2]),
                                            ("wy", py, self.wy, acts.shape[3])):
                if start + size > total:
                    raise IndexError(f"{self.__name__}: the window {arg}={size} from {start} "
                                     f"passes the end of a dim of size {total}")
            acts = acts[:, :, px:px + self.wx, py:py + self.wy]
        return acts * weights.reshape((1, -1) + (1,) * (acts.dim() - 2))


# --------------------------------------------------------------------------------------------
# Channel projections (CLIP feature visualisation).
# --------------------------------------------------------------------------------------------

def _projection(owner: str, acts: torch.Tensor, vec: torch.Tensor,
                activation_fn: Optional[Callable[[torch.Tensor], torch.Tensor]],
                channel_last: bool) -> torch.Tensor:
    """``mean over positions of Σ_c act(x)_c · vec_c`` per sample: (N,), or (N, 1) for 2-D x."""
    x = activation_fn(acts) if activation_fn is not None else acts
    if x.dim() > 2 and channel_last:
        x = x.movedim(-1, 1)
    _check_vector_channels(vec.numel(), x.shape[1], owner)
    vec = vec.to(device=x.device, dtype=x.dtype).reshape(1, -1, 1)
    per_position = Fn.dot_cossim(x.reshape(x.shape[0], x.shape[1], -1), vec, 0.0)
    if acts.dim() == 2:
        return per_position
    return _mean(per_position, dim=1)


def _one_d(vec: Any, owner: str) -> torch.Tensor:
    vec = _vector(vec, owner)
    if vec.dim() != 1:
        raise ValueError(f"{owner}: vec must be 1-D (C,), got shape {tuple(vec.shape)}")
    return vec


class VectorLoss(_Objective):
    """Mean over samples and positions of ``Σ_c act(S)_c · vec_c`` (a channel projection); 0-dim.

    ``activation_fn`` (default ReLU; None for none) is applied first.
    ``move_channel_dim_to_final_dim=False`` means the activation is already channels-last
    (N, ..., C).
    """

    def __init__(self, target: Any, vec: torch.Tensor,
                 activation_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = F.relu,
                 move_channel_dim_to_final_dim: bool = True,
                 batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        self.vec = _one_d(vec, self.__name__)
        self.activation_fn = activation_fn
        self.move_channel_dim_to_final_dim = move_channel_dim_to_final_dim

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values, min_dim=2)
        return _mean(_projection(self.__name__, s, self.vec, self.activation_fn,
                                 not self.move_channel_dim_to_final_dim))


class FacetLoss(BaseLoss):
    """Facet visualisation: the layer activation weighted by its positive attribution.

    ``z`` = ReLU'd projection of the ultimate target on ``vec``; ``g = ∂Σz/∂L`` at the layer
    target (a constant: no second-order graph); result ``Σ (L ⊙ relu(g) ⊙ facet_weights)``,
    0-dim, with spatial sums first for 2-D weights, 4-D weights resized (nearest) to the
    layer's spatial size, and an optional ``strength`` scale (a number, or a (start, end) pair
    spread over the batch with linspace).

    Differences from Captum: ``strength=None`` means no scaling and any number scales, 0
    included.
    """

    def __init__(self, vec: torch.Tensor, ultimate_target: Any, layer_target: Any,
                 facet_weights: torch.Tensor, strength: Union[None, float, Sequence[float]] = None,
                 batch_index: BatchIndex = None) -> None:
        super().__init__([ultimate_target, layer_target], batch_index)
        self.vec = _one_d(vec, self.__name__)
        self.ultimate_target = ultimate_target
        self.layer_target = layer_target
        weights = _vector(facet_weights, self.__name__, "facet_weights")
        if weights.dim() not in (2, 4):
            raise ValueError(f"{self.__name__}: facet_weights must be 2-D (1, C) or 4-D "
                             f"(1, C, H, W), got shape {tuple(weights.shape)}")
        self.facet_weights = weights
        if isinstance(strength, (list, tuple)) and len(strength) != 2:
            raise ValueError(f"{self.__name__}: strength as a sequence must be a (start, end) "
                             f"pair, got {strength!r}")
        if strength is not None and not isinstance(strength, (list, tuple, int, float)):
            raise TypeError(f"{self.__name__}: strength must be a number or a (start, end) pair, "
                            f"got {type(strength).__name__}")
        self.strength = strength

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        owner = self.__name__
        ultimate = select_batch(_activation(owner, targets_to_values, self.ultimate_target, 2),
                                self.batch_index, owner)
        # The gradient is taken at the raw output: a layout's view is a side branch of the graph.
        layer_raw = _activation(owner, targets_to_values, self.layer_target, 2,
                                apply_layout=False)
        layer_full = laid_out(self.layer_target, layer_raw, owner)
        if not layer_raw.requires_grad:
            raise ValueError(f"{owner}: the activation of layer_target {self.layer_target!r} is "
                             "not in an autograd graph (it must require grad)")
        if self.facet_weights.shape[1] != layer_full.shape[1]:
            raise ValueError(f"{owner}: facet_weights has {self.facet_weights.shape[1]} channels "
                             f"but the layer activation has {layer_full.shape[1]}")
        z = _projection(owner, ultimate, self.vec, F.relu, False)
        (grad,) = torch.autograd.grad(z, layer_raw, torch.ones_like(z), retain_graph=True,
                                      allow_unused=True)
        if grad is None:
            raise ValueError(f"{owner}: ultimate_target {self.ultimate_target!r} does not depend "
                             f"on layer_target {self.layer_target!r}")
        layer = select_batch(layer_full, self.batch_index, owner)
        grad = laid_out(self.layer_target, grad.detach(), owner)
        attr = layer * F.relu(select_batch(grad, self.batch_index, owner))
        weights = self.facet_weights.to(device=layer.device, dtype=layer.dtype)
        if weights.dim() == 2 and attr.dim() == 4:
            attr = attr.sum((2, 3))
        if self.strength is not None:
            if isinstance(self.strength, (list, tuple)):
                scale = torch.linspace(float(self.strength[0]), float(self.strength[1]),
                                       attr.shape[0], device=attr.device, dtype=attr.dtype)
                attr = attr * scale.reshape((-1,) + (1,) * (attr.dim() - 1))
            else:
                attr = attr * self.strength
        if weights.dim() == 4 and attr.dim() == 4 and weights.shape[2:] != attr.shape[2:]:
            weights = F.interpolate(weights, size=attr.shape[2:])
        return _sum(attr * weights)
