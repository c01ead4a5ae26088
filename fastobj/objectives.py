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

import numbers
from typing import Any, Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from . import functional as Fn
from .checks import (
    ANY_RANK,
    CHANNELS_LAST,
    IMAGE,
    IMAGE_OR_VECTOR,
    BatchIndex,
    ChannelIndex,
    ModuleOutputMapping,
    Ranks,
    as_channel_index,
    check_channels,
    check_position,
    check_process_group,
    check_rank,
    check_vector_batch,
    check_vector_channels,
    direction,
    neuron_position,
    nonempty_batch,
    one_d_vector,
    optional_index,
    select_batch,
    tensor_activation,
    vector,
)
from .distributed import alignment_distributed, diversity_distributed
from .layout import laid_out, lookup
from .loss import BaseLoss

__all__ = [
    "LayerActivation", "ChannelActivation", "NeuronActivation", "DeepDream", "TotalVariation",
    "L1", "L2", "Diversity", "ActivationInterpolation", "Alignment", "Direction",
    "NeuronDirection", "AngledNeuronDirection", "TensorDirection", "ActivationWeights",
    "L2Mean", "VectorLoss", "FacetLoss",
]


def _activation(owner: str, targets_to_values: ModuleOutputMapping, target: Any,
                ranks: Ranks = ANY_RANK) -> torch.Tensor:
    """The target's activation as the objectives read it: looked up (a layout target of
    :mod:`fastobj.layout` also under its plain target), checked, seen through the target's
    layout, and refused unless its rank is one of ``ranks``."""
    value = laid_out(target, tensor_activation(owner, targets_to_values, target, lookup), owner)
    check_rank(value, ranks, owner, f"the activation of {target!r}")
    return value


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
    """A BaseLoss that reads one target's activation and selects its batch.

    ``ranks`` are the activation ranks the objective accepts (with their layouts); any other
    rank raises ValueError before anything is computed.
    """

    ranks: Ranks = ANY_RANK

    def _selected(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        acts = _activation(self.__name__, targets_to_values, self.target, self.ranks)
        return select_batch(acts, self.batch_index, self.__name__)


# --------------------------------------------------------------------------------------------
# Activations of layers, channels, neurons.
# --------------------------------------------------------------------------------------------

class LayerActivation(_Objective):
    """The selected activation itself, unchanged. Any rank (a batch dim first)."""

    def __init__(self, target: Any, batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        return self._selected(targets_to_values)


class ChannelActivation(_Objective):
    """One channel of the activation: ``S[:, c]``, shape (B', H, W) for 4-D input.

    ``channel_index`` is an int (negative counts from the end) or a sequence / 1-D tensor of
    B' ints, one channel per selected sample. Activations (B, C, H, W), or (B, C) giving (B',).

    Differences from Captum: per-sample channels; out-of-range channels raise IndexError; a
    rank-3 activation (an unbatched image's, usually) raises ValueError.
    """

    ranks = IMAGE_OR_VECTOR

    def __init__(self, target: Any, channel_index: ChannelIndex,
                 batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        self.channel_index = as_channel_index(channel_index, self.__name__)

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values)
        index = check_channels(self.channel_index, s.shape[1], s.shape[0], self.__name__)
        return _per_sample_channel(s, index)


class NeuronActivation(_Objective):
    """One neuron: ``S[:, c, x:x+1, y:y+1]``, shape (B', 1, 1).

    ``x`` indexes dim 2 (rows, default H//2) and ``y`` dim 3 (columns, default W//2);
    negative values count from the end. ``channel_index`` may be per sample.

    Differences from Captum: the default centre is no longer swapped on non-square maps, and
    the range checks use the right axis.
    """

    ranks = IMAGE

    def __init__(self, target: Any, channel_index: ChannelIndex, x: Optional[int] = None,
                 y: Optional[int] = None, batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        self.channel_index = as_channel_index(channel_index, self.__name__)
        self.x = optional_index(x, self.__name__, "x")
        self.y = optional_index(y, self.__name__, "y")

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values)
        index = check_channels(self.channel_index, s.shape[1], s.shape[0], self.__name__)
        px, py = neuron_position(self.__name__, s, self.x, self.y)
        return _per_sample_channel(s, index)[:, px:px + 1, py:py + 1]


class DeepDream(_Objective):
    """The squared activation, elementwise (same shape, any rank): it amplifies what fires."""

    def __init__(self, target: Any, batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        return self._selected(targets_to_values).square()


# --------------------------------------------------------------------------------------------
# Penalties (returned positive; subtract them).
# --------------------------------------------------------------------------------------------

class TotalVariation(_Objective):
    """Anisotropic L1 total variation over the last two dims, summed over the rest; 0-dim.

    Usually targets the image: ``objective - 1e-3 * TotalVariation(image_module)``. Needs a
    (B, C, H, W) activation.
    """

    ranks = IMAGE

    def __init__(self, target: Any, batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        return Fn.total_variation(self._selected(targets_to_values))


class L1(_Objective):
    """``Σ |S - constant|``, 0-dim; any rank."""

    def __init__(self, target: Any, constant: float = 0.0, batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        self.constant = constant

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        return _sum((self._selected(targets_to_values) - self.constant).abs())


class L2(_Objective):
    """``sqrt(eps + Σ (S - constant)²)``, 0-dim; any rank."""

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

    ``channel_index`` may be per sample; with it the activation is (B, C, H, W) or (B, C),
    without it any rank.
    """

    def __init__(self, target: Any, channel_index: Optional[ChannelIndex] = None,
                 constant: float = 0.5, batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        self.channel_index = (None if channel_index is None
                              else as_channel_index(channel_index, self.__name__))
        self.constant = constant
        self.ranks = ANY_RANK if channel_index is None else IMAGE_OR_VECTOR

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values)
        if self.channel_index is not None:
            index = check_channels(self.channel_index, s.shape[1], s.shape[0], self.__name__)
            s = _per_sample_channel(s, index, keepdim=True)
        return _mean((s - self.constant).square())


# --------------------------------------------------------------------------------------------
# Batch-level objectives.
# --------------------------------------------------------------------------------------------

class Diversity(_Objective):
    """Pushes the samples' Gram (style) matrices apart: ``-(1/B') Σ_{i≠j} <ĝ_i, ĝ_j>``.

    ĝ_i is sample i's Gram matrix F_i F_iᵀ (channels x channels, positions flattened) divided by
    its Frobenius norm. Computed in closed form, ``-(‖Σĝ_i‖² - Σ‖ĝ_i‖²)/B'``: linear in the
    batch, never B' x B'. 0-dim. With ``process_group`` the value and gradients are those of the
    batch spread over the group's ranks.

    Activations (B, C, H, W), or pooled (B, C) (each Gram is then the outer product v vᵀ).

    Differences from Captum: a batch of one gives exactly 0.0 as a 0-dim tensor in the graph
    (gradient zeros; not a Python float), decided here rather than left to cancellation;
    activations need not be view-compatible; any batch_index form is accepted.
    """

    ranks = IMAGE_OR_VECTOR

    def __init__(self, target: Any, batch_index: BatchIndex = None,
                 process_group: Any = None) -> None:
        super().__init__(target, batch_index)
        self.process_group = check_process_group(process_group, self.__name__)

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        if self.process_group is not None:
            return diversity_distributed(self.__name__, lambda: self._selected(targets_to_values),
                                         self.process_group)
        s = self._selected(targets_to_values)
        if s.shape[0] == 1:  # no pair of samples: the sum over i != j is empty
            return Fn.zero_in_graph(s)
        return Fn.diversity(s.reshape(s.shape[0], s.shape[1], -1))


class ActivationInterpolation(BaseLoss):
    """Interpolates from target1 (first sample) to target2 (last sample) across the batch.

    ``Σ_n (1 - w_n)·mean(A1[n]) + w_n·mean(A2[n])`` with ``w_n = n/(B-1)``; shape (1,). A
    channel index selects that channel of its target (``None``: all channels).

    Both activations are (B, C, H, W) or (B, C).

    Differences from Captum: channel index 0 is channel 0 (not "all channels"); a batch of one
    uses weight 0 instead of dividing by zero.
    """

    def __init__(self, target1: Any = None, channel_index1: Optional[int] = None,
                 target2: Any = None, channel_index2: Optional[int] = None) -> None:
        super().__init__([target1, target2])
        self.target_one, self.target_two = target1, target2
        self.channel_index1 = optional_index(channel_index1, self.__name__, "channel_index1")
        self.channel_index2 = optional_index(channel_index2, self.__name__, "channel_index2")

    def _means(self, targets_to_values: ModuleOutputMapping, target: Any,
               channel: Optional[int], arg: str) -> torch.Tensor:
        acts = nonempty_batch(_activation(self.__name__, targets_to_values, target,
                                          IMAGE_OR_VECTOR), self.__name__, target)
        if channel is not None:
            acts = acts[:, check_position(channel, acts.shape[1], self.__name__, arg,
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

    ``r`` is ``decay_ratio``; shape (1,); activations (B, C, H, W) or (B, C). Vectorised over
    the batch (four slices, no loop over samples). With ``process_group`` the neighbours across
    rank boundaries count too.
    """

    ranks = IMAGE_OR_VECTOR

    def __init__(self, target: Any, decay_ratio: float = 2.0, batch_index: BatchIndex = None,
                 process_group: Any = None) -> None:
        super().__init__(target, batch_index)
        self.decay_ratio = decay_ratio
        self.process_group = check_process_group(process_group, self.__name__)

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        if self.process_group is not None:
            return alignment_distributed(self.__name__, lambda: self._selected(targets_to_values),
                                         self.decay_ratio, self.process_group)
        return Fn.alignment_ref(self._selected(targets_to_values), self.decay_ratio)


# --------------------------------------------------------------------------------------------
# Directions in activation space.
# --------------------------------------------------------------------------------------------

class Direction(_Objective):
    """Channel dot product with ``vec`` at every position, times ``clamp(cos, 0.1)^cossim_pow``.

    ``vec`` has C entries (any shape, flattened) or is (B', C): one direction per selected
    sample. Activations (B, C, H, W) give (B', H, W); pooled (B, C) give (B',).

    Differences from Captum: a channel count different from the activation's raises
    ValueError instead of broadcasting; per-sample directions.
    """

    ranks = IMAGE_OR_VECTOR

    def __init__(self, target: Any, vec: torch.Tensor, cossim_pow: float = 0.0,
                 batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        self.vec = direction(vec, self.__name__)
        self.cossim_pow = cossim_pow

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values)
        check_vector_channels(self.vec.shape[1], s.shape[1], self.__name__)
        check_vector_batch(self.vec.shape[0], s.shape[0], self.__name__)
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

    ranks = IMAGE

    def __init__(self, target: Any, vec: torch.Tensor, x: Optional[int] = None,
                 y: Optional[int] = None, channel_index: Optional[int] = None,
                 cossim_pow: float = 0.0, batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        self.vec = direction(vec, self.__name__)
        self.x = optional_index(x, self.__name__, "x")
        self.y = optional_index(y, self.__name__, "y")
        self.channel_index = optional_index(channel_index, self.__name__, "channel_index")
        self.cossim_pow = cossim_pow

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values)
        check_vector_channels(self.vec.shape[1], s.shape[1], self.__name__)
        check_vector_batch(self.vec.shape[0], s.shape[0], self.__name__)
        px, py = neuron_position(self.__name__, s, self.x, self.y)
        neuron = s[:, :, px, py].unsqueeze(2)
        vec = self.vec.reshape(self.vec.shape[0], -1, 1).to(device=s.device, dtype=s.dtype)
        if self.channel_index is not None:
            c = check_position(self.channel_index, s.shape[1], self.__name__, "channel_index",
                                "the channel dim")
            neuron, vec = neuron[:, c:c + 1], vec[:, c:c + 1]
        return Fn.dot_cossim(neuron, vec, self.cossim_pow).reshape(s.shape[0], 1, 1)


class AngledNeuronDirection(_Objective):
    """Activation-atlas direction objective at one neuron position (Lucid's form).

    With S_b the neuron vector of sample b and u the direction (``vec``, or
    ``vec @ vec_whitened``): ``dot_b = mean_c(S_b·u)``, ``c_b = dot_b / (eps + ‖S_b‖)``,
    result ``dot_b · clamp(c_b, 0.1)^cossim_pow`` of shape (B',). With ``cossim_pow=0`` the
    elementwise product ``S·u``, (B', C). ``vec`` may be (B', C), one direction per sample.

    Activations (B, C, H, W) (the neuron at x, y) or (B, C) (the vector itself).

    Differences from Captum: dot product and norm are per sample, not over the whole batch
    (identical for a single selected sample).
    """

    ranks = IMAGE_OR_VECTOR

    def __init__(self, target: Any, vec: torch.Tensor,
                 vec_whitened: Optional[torch.Tensor] = None, cossim_pow: float = 4.0,
                 x: Optional[int] = None, y: Optional[int] = None, eps: float = 1e-4,
                 batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        vec = vector(vec, self.__name__)
        if vec.dim() == 1:
            vec = vec.unsqueeze(0)
        if vec.dim() != 2:
            raise ValueError(f"{self.__name__}: vec must be 1-D (C,) or 2-D (1 or B', C), got "
                             f"shape {tuple(vec.shape)}")
        if vec_whitened is not None:
            vec_whitened = vector(vec_whitened, self.__name__, "vec_whitened")
            c = vec.shape[1]
            if tuple(vec_whitened.shape) != (c, c):
                raise ValueError(f"{self.__name__}: vec_whitened must be a ({c}, {c}) matrix "
                                 f"for a vec of {c} channels, got shape "
                                 f"{tuple(vec_whitened.shape)}")
        self.vec = vec
        self.vec_whitened = vec_whitened
        self.cossim_pow = cossim_pow
        self.x = optional_index(x, self.__name__, "x")
        self.y = optional_index(y, self.__name__, "y")
        self.eps = eps

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values)
        if s.dim() == 4:
            px, py = neuron_position(self.__name__, s, self.x, self.y)
            s = s[:, :, px, py]
        check_vector_channels(self.vec.shape[1], s.shape[1], self.__name__)
        check_vector_batch(self.vec.shape[0], s.shape[0], self.__name__)
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

    ranks = IMAGE

    def __init__(self, target: Any, vec: torch.Tensor, cossim_pow: float = 0.0,
                 batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        vec = vector(vec, self.__name__)
        if vec.dim() != 4:
            raise ValueError(f"{self.__name__}: vec must be 4-D (1 or B', C, H, W), got shape "
                             f"{tuple(vec.shape)}")
        self.vec = vec
        self.cossim_pow = cossim_pow

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values)
        bv, c, hv, wv = self.vec.shape
        check_vector_channels(c, s.shape[1], self.__name__)
        check_vector_batch(bv, s.shape[0], self.__name__)
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
    ``[x:x+wx]`` along dim 2 and ``[y:y+wy]`` along dim 3, shape (B, C, wx, wy). Activations
    (B, C, H, W), or (B, C) for the whole-activation mode.

    Differences from Captum: one axis convention for both neuron paths (x/wx along dim 2,
    y/wy along dim 3); the neuron path always returns (B, C) (no squeeze of the batch dim).
    """

    def __init__(self, target: Any, weights: Optional[torch.Tensor] = None,
                 neuron: bool = False, x: Optional[int] = None, y: Optional[int] = None,
                 wx: Optional[int] = None, wy: Optional[int] = None) -> None:
        super().__init__(target)
        if weights is None:
            raise ValueError(f"{self.__name__}: weights is required (one per channel)")
        self.weights = vector(weights, self.__name__, "weights").reshape(-1)
        self.neuron = bool(neuron) or x is not None or y is not None
        self.x = optional_index(x, self.__name__, "x")
        self.y = optional_index(y, self.__name__, "y")
        self.wx = optional_index(wx, self.__name__, "wx")
        self.wy = optional_index(wy, self.__name__, "wy")
        window = (self.wx, self.wy)
        if window != (None, None) and None in (self.x, self.y, self.wx, self.wy):
            raise ValueError(f"{self.__name__}: a window needs x, y, wx and wy all given "
                             f"(got x={x}, y={y}, wx={wx}, wy={wy})")
        for arg, size in (("wx", self.wx), ("wy", self.wy)):
            if size is not None and size < 1:
                raise ValueError(f"{self.__name__}: {arg} must be >= 1, got {size}")

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        acts = nonempty_batch(_activation(self.__name__, targets_to_values, self.target,
                                          IMAGE if self.neuron else IMAGE_OR_VECTOR),
                              self.__name__, self.target)
        c = acts.shape[1]
        if self.weights.numel() not in (1, c):
            raise ValueError(f"{self.__name__}: weights has {self.weights.numel()} entries but "
                             f"the activation has {c} channels")
        weights = self.weights.to(device=acts.device, dtype=acts.dtype)
        if self.neuron and self.wx is None:
            px, py = neuron_position(self.__name__, acts, self.x, self.y)
            return acts[:, :, px, py] * weights
        if self.neuron:
            px, py = neuron_position(self.__name__, acts, self.x, self.y)
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
    check_vector_channels(vec.numel(), x.shape[1], owner)
    vec = vec.to(device=x.device, dtype=x.dtype).reshape(1, -1, 1)
    per_position = Fn.dot_cossim(x.reshape(x.shape[0], x.shape[1], -1), vec, 0.0)
    if acts.dim() == 2:
        return per_position
    return _mean(per_position, dim=1)


class VectorLoss(_Objective):
    """Mean over samples and positions of ``Σ_c act(S)_c · vec_c`` (a channel projection); 0-dim.

    ``activation_fn`` (default ReLU; None for none) is applied first.
    Activations (B, C, H, W) or (B, C); ``move_channel_dim_to_final_dim=False`` means they are
    already channels-last: (B, H, W, C), (B, L, C) (tokens) or (B, C).
    """

    def __init__(self, target: Any, vec: torch.Tensor,
                 activation_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = F.relu,
                 move_channel_dim_to_final_dim: bool = True,
                 batch_index: BatchIndex = None) -> None:
        super().__init__(target, batch_index)
        self.vec = one_d_vector(vec, self.__name__)
        self.activation_fn = activation_fn
        self.move_channel_dim_to_final_dim = move_channel_dim_to_final_dim
        self.ranks = IMAGE_OR_VECTOR if move_channel_dim_to_final_dim else CHANNELS_LAST

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        s = self._selected(targets_to_values)
        return _mean(_projection(self.__name__, s, self.vec, self.activation_fn,
                                 not self.move_channel_dim_to_final_dim))


class FacetLoss(BaseLoss):
    """Facet visualisation: the layer activation weighted by its positive attribution.

    ``z`` = ReLU'd projection of the ultimate target on ``vec``; ``g = ∂Σz/∂L`` at the layer
    target (a constant: no second-order graph); result ``Σ (L ⊙ relu(g) ⊙ facet_weights)``,
    0-dim, with spatial sums first for 2-D weights, 4-D weights resized (nearest) to the
    layer's spatial size, and an optional ``strength`` scale (a number, or a (start, end) pair
    spread over the batch with linspace). Both activations are (B, C, H, W) or (B, C); 4-D
    weights need a 4-D layer activation.

    Differences from Captum: ``strength=None`` means no scaling and any number scales, 0
    included.
    """

    def __init__(self, vec: torch.Tensor, ultimate_target: Any, layer_target: Any,
                 facet_weights: torch.Tensor, strength: Union[None, float, Sequence[float]] = None,
                 batch_index: BatchIndex = None) -> None:
        super().__init__([ultimate_target, layer_target], batch_index)
        self.vec = one_d_vector(vec, self.__name__)
        self.ultimate_target = ultimate_target
        self.layer_target = layer_target
        weights = vector(facet_weights, self.__name__, "facet_weights")
        if weights.dim() not in (2, 4):
            raise ValueError(f"{self.__name__}: facet_weights must be 2-D (1, C) or 4-D "
                             f"(1, C, H, W), got shape {tuple(weights.shape)}")
        self.facet_weights = weights
        if isinstance(strength, (list, tuple)) and len(strength) != 2:
            raise ValueError(f"{self.__name__}: strength as a sequence must be a (start, end) "
                             f"pair, got {strength!r}")
        if strength is not None and not isinstance(strength, (list, tuple, numbers.Real)):
            raise TypeError(f"{self.__name__}: strength must be a number or a (start, end) pair, "
                            f"got {type(strength).__name__}")
        self.strength = strength

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        owner = self.__name__
        ultimate = select_batch(_activation(owner, targets_to_values, self.ultimate_target,
                                            IMAGE_OR_VECTOR), self.batch_index, owner)
        # The gradient is taken at the raw output: a layout's view is a side branch of the graph.
        layer_raw = tensor_activation(owner, targets_to_values, self.layer_target, lookup)
        layer_full = laid_out(self.layer_target, layer_raw, owner)
        check_rank(layer_full, IMAGE_OR_VECTOR, owner, f"the activation of {self.layer_target!r}")
        if not layer_raw.requires_grad:
            raise ValueError(f"{owner}: the activation of layer_target {self.layer_target!r} is "
                             "not in an autograd graph (it must require grad)")
        if self.facet_weights.shape[1] != layer_full.shape[1]:
            raise ValueError(f"{owner}: facet_weights has {self.facet_weights.shape[1]} channels "
                             f"but the layer activation has {layer_full.shape[1]}")
        if self.facet_weights.dim() == 4 and layer_full.dim() != 4:
            raise ValueError(f"{owner}: 4-D facet_weights need a 4-D layer activation, got shape "
                             f"{tuple(layer_full.shape)}")
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
