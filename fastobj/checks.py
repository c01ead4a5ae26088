"""Argument checks, batch selection and target helpers, in one place.

Everything a user passes to an objective, to the composition operators or to the capture
helpers is checked here, and every error names its owner (the objective or function) and the
argument at fault: ValueError for a wrong value or shape, TypeError for a wrong type,
IndexError for a position outside its axis, KeyError for a target that is not there. Nothing
here computes an objective: the objectives call these, then the functional core.
"""
from __future__ import annotations

import numbers
import operator
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist

ModuleOutputMapping = Dict[Any, Optional[torch.Tensor]]
BatchIndex = Union[None, int, Sequence[Optional[int]]]
ChannelIndex = Union[int, Sequence[int], torch.Tensor]
Ranks = Optional[Dict[int, str]]  # accepted rank -> its layout; None: any rank >= 1

# The ranks the objectives accept (each objective's ``ranks``).
ANY_RANK: Ranks = None  # elementwise: every dim after the batch is treated alike
IMAGE: Ranks = {4: "(B, C, H, W)"}  # channels and positions are indexed
IMAGE_OR_VECTOR: Ranks = {4: "(B, C, H, W)", 2: "(B, C)"}  # channels only; (B, C) is pooled
CHANNELS_LAST: Ranks = {4: "(B, H, W, C)", 3: "(B, L, C)", 2: "(B, C)"}


# --------------------------------------------------------------------------------------------
# Targets.
# --------------------------------------------------------------------------------------------

def listify(target: Any) -> List[Any]:
    """A target as a list: a list is kept, anything else is wrapped."""
    return list(target) if isinstance(target, list) else [target]


def unique_targets(targets: Iterable[Any]) -> List[Any]:
    """De-duplicate in order of first occurrence (modules by identity, names by value)."""
    return list(dict.fromkeys(targets))


# --------------------------------------------------------------------------------------------
# Numbers and indices.
# --------------------------------------------------------------------------------------------

def as_index(value: Any, owner: str, arg: str) -> int:
    """An int argument (anything with ``__index__`` but bool), or a TypeError naming it."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:  # no __index__, or one that refuses (a float 0-dim tensor)
        raise TypeError(f"{owner}: {arg} must be an int, got {type(value).__name__} "
                        f"({value!r})") from None


def as_number(value: Any, owner: str) -> Union[numbers.Real, torch.Tensor]:
    """A real scalar operand: a Python or NumPy real number, a 0-dim array, a 0-dim tensor.

    NumPy scalars and 0-dim arrays become Python numbers, so results stay torch tensors.
    Complex numbers, strings, None and anything with elements is refused with a TypeError.
    """
    if isinstance(value, torch.Tensor):
        if value.dim() == 0 and not value.is_complex():
            return value
    elif isinstance(value, bool):  # torch refuses bool operands for - and /
        return int(value)
    elif isinstance(value, (int, float)):
        return value
    elif isinstance(value, numbers.Real):  # NumPy scalars, Fraction, ...
        return value.item() if hasattr(value, "item") else float(value)
    elif getattr(value, "shape", None) == () and hasattr(value, "item"):  # 0-dim ndarray
        item = value.item()
        if isinstance(item, numbers.Real):
            return item
    raise TypeError(f"{owner}: can only combine a loss with a real number (int, float, NumPy "
                    "scalar, 0-dim array or tensor) or another Loss; received type "
                    f"{type(value).__name__}")


def optional_index(value: Any, owner: str, arg: str) -> Optional[int]:
    return None if value is None else as_index(value, owner, arg)


def check_position(value: int, size: int, owner: str, arg: str, axis: str) -> int:
    """A position along an axis of length ``size``; negative values count from the end."""
    if not -size <= value < size:
        raise IndexError(f"{owner}: {arg}={value} is outside {axis} of size {size}")
    return value % size


# --------------------------------------------------------------------------------------------
# Batch selection.
# --------------------------------------------------------------------------------------------

def normalize_batch_index(batch_index: BatchIndex, owner: str = "BaseLoss"
                          ) -> Tuple[Optional[int], Optional[int]]:
    """Turn ``batch_index`` into the ``(start, end)`` pair of a slice along dim 0.

    None selects the whole batch; an int b selects sample b alone (negative counts from the
    end, so -1 is the last sample); a pair ``(start, end)`` is a Python slice.
    """
    if batch_index is None:
        return (None, None)
    if isinstance(batch_index, (list, tuple)):
        if len(batch_index) != 2:
            raise ValueError(f"{owner}: batch_index as a sequence must be a (start, end) pair, "
                             f"got {len(batch_index)} entries: {batch_index!r}")
        return tuple(None if v is None else as_index(v, owner, "batch_index bound")
                     for v in batch_index)
    b = as_index(batch_index, owner, "batch_index")
    return (b, None if b == -1 else b + 1)


def select_batch(tensor: torch.Tensor, batch_index: Tuple[Optional[int], Optional[int]],
                 owner: str) -> torch.Tensor:
    """Slice ``tensor`` along dim 0, refusing out-of-range bounds and empty selections."""
    start, end = batch_index
    size = tensor.shape[0]
    one_sample = start is not None and (end == start + 1 or (start == -1 and end is None))
    if one_sample and not -size <= start < size:
        raise IndexError(f"{owner}: batch_index {start} is outside a batch of {size}")
    for bound in (start, end):
        if bound is not None and not -size <= bound <= size:
            raise IndexError(f"{owner}: batch_index {batch_index} reaches outside a batch of "
                             f"{size}")
    # The whole batch is the tensor itself: a full slice would cost its backward a zero-filled
    # copy of the whole input.
    selected = tensor if start is None and end is None else tensor[start:end]
    if selected.shape[0] == 0:
        raise ValueError(f"{owner}: batch_index {batch_index} selects no samples of a batch "
                         f"of {size}")
    return selected


# --------------------------------------------------------------------------------------------
# Activations.
# --------------------------------------------------------------------------------------------

def describe_ranks(ranks: Ranks) -> str:
    """'rank 4 (B, C, H, W) or rank 2 (B, C)', for error messages."""
    if ranks is None:
        return "rank >= 1 (a batch dim first)"
    return " or ".join(f"rank {rank} {layout}" for rank, layout in ranks.items())


def check_rank(value: torch.Tensor, ranks: Ranks, owner: str, what: str) -> None:
    """Refuse an activation whose rank is not in ``ranks``, with a hint for the usual cause."""
    if value.dim() in (ranks or range(1, value.dim() + 1)):
        return
    hint = ""
    if ranks is not None and value.dim() + 1 in ranks:
        hint = ("; if this is a single unbatched input, add a batch dim "
                "(x.unsqueeze(0)) before the model")
    raise ValueError(f"{owner}: {what} must have {describe_ranks(ranks)}, got shape "
                     f"{tuple(value.shape)}{hint}")


def tensor_activation(owner: str, targets_to_values: ModuleOutputMapping, target: Any,
                      lookup: Callable[[Mapping, Any], Any] = operator.getitem) -> torch.Tensor:
    """The target's raw activation from the mapping (``lookup(mapping, target)``, which raises
    KeyError when it is missing), checked to be a floating-point tensor."""
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
    return value


def nonempty_batch(acts: torch.Tensor, owner: str, target: Any) -> torch.Tensor:
    """Refuse an activation with an empty batch (objectives that take the whole batch)."""
    if acts.shape[0] == 0:
        raise ValueError(f"{owner}: the activation of {target!r} has an empty batch")
    return acts


# --------------------------------------------------------------------------------------------
# Channels.
# --------------------------------------------------------------------------------------------

def as_channel_index(value: ChannelIndex, owner: str, arg: str = "channel_index"
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


def check_channels(index: Union[int, torch.Tensor], channels: int, batch: int, owner: str,
                   arg: str = "channel_index") -> Union[int, torch.Tensor]:
    """Range-check a channel index (int or per-sample tensor) against the activation."""
    if isinstance(index, int):
        return check_position(index, channels, owner, arg, "the channel dim")
    if index.numel() != batch:
        raise ValueError(f"{owner}: {arg} has {index.numel()} per-sample entries but "
                         f"{batch} samples are selected")
    if index.numel() and bool(((index < -channels) | (index >= channels)).any()):
        raise IndexError(f"{owner}: {arg} {index.tolist()} has entries outside the channel dim "
                         f"of size {channels}")
    return index.remainder(channels)


def neuron_position(owner: str, acts: torch.Tensor, x: Optional[int], y: Optional[int]
                    ) -> Tuple[int, int]:
    """(row, column): ``x`` along dim 2, ``y`` along dim 3; defaults are the centre cells."""
    h, w = acts.shape[2], acts.shape[3]
    px = h // 2 if x is None else check_position(x, h, owner, "x", "dim 2 (rows)")
    py = w // 2 if y is None else check_position(y, w, owner, "y", "dim 3 (columns)")
    return px, py


# --------------------------------------------------------------------------------------------
# Direction vectors.
# --------------------------------------------------------------------------------------------

def vector(vec: Any, owner: str, arg: str = "vec") -> torch.Tensor:
    """A non-empty floating tensor."""
    if not isinstance(vec, torch.Tensor):
        raise TypeError(f"{owner}: {arg} must be a tensor, got {type(vec).__name__}")
    if not vec.is_floating_point():
        raise TypeError(f"{owner}: {arg} must be a floating tensor, got dtype {vec.dtype}")
    if vec.numel() == 0:
        raise ValueError(f"{owner}: {arg} is empty")
    return vec


def one_d_vector(vec: Any, owner: str) -> torch.Tensor:
    vec = vector(vec, owner)
    if vec.dim() != 1:
        raise ValueError(f"{owner}: vec must be 1-D (C,), got shape {tuple(vec.shape)}")
    return vec


def direction(vec: Any, owner: str) -> torch.Tensor:
    """One shared direction as (1, C, 1, 1), or one per sample (B', C) as (B', C, 1, 1)."""
    vec = vector(vec, owner)
    if vec.dim() == 2 and vec.shape[0] > 1:
        return vec.reshape(vec.shape[0], vec.shape[1], 1, 1)
    return vec.reshape(1, -1, 1, 1)


def check_vector_batch(vec_batch: int, batch: int, owner: str, arg: str = "vec") -> None:
    if vec_batch not in (1, batch):
        raise ValueError(f"{owner}: {arg} holds {vec_batch} per-sample directions but {batch} "
                         "samples are selected")


def check_vector_channels(vec_channels: int, channels: int, owner: str,
                          arg: str = "vec") -> None:
    if vec_channels != channels:
        raise ValueError(f"{owner}: {arg} has {vec_channels} channels but the activation has "
                         f"{channels}")


# --------------------------------------------------------------------------------------------
# Distributed.
# --------------------------------------------------------------------------------------------

def check_process_group(group: Any, owner: str) -> Any:
    if group is not None and not dist.is_initialized():
        raise ValueError(f"{owner}: process_group was given but torch.distributed is not "
                         "initialised")
    return group
