"""Loss base classes, arithmetic composition and batch selection.

An objective is a callable object built once with its target(s) and then called on a mapping
from targets to activation tensors. Objectives compose with numbers elementwise and with each
other through the means of both sides, with Captum's names, targets and shapes. Composites are
evaluated with an explicit stack, so a chain of thousands of terms never hits Python's
recursion limit.
"""
from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch

ModuleOutputMapping = Dict[Any, Optional[torch.Tensor]]
BatchIndex = Union[None, int, Sequence[Optional[int]]]


def listify(target: Any) -> List[Any]:
    """A target as a list: a list is kept, anything else is wrapped."""
    return list(target) if isinstance(target, list) else [target]


def unique_targets(targets: Iterable[Any]) -> List[Any]:
    """De-duplicate in order of first occurrence (modules by identity, names by value)."""
    return list(dict.fromkeys(targets))


def targets_of(loss: "Loss") -> List[Any]:
    """The de-duplicated list of targets whose activations ``loss`` reads."""
    return unique_targets(listify(loss.target))


def _number(value: Any) -> Union[int, float, torch.Tensor]:
    """Accept int, float (bool included) and 0-dim tensors as numbers; refuse anything else."""
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        return value
    raise TypeError("Can only apply math operations with int, float, a 0-dim tensor or Loss. "
                    f"Received type {type(value).__name__}")


class Loss(ABC):
    """Abstract objective: has a ``target`` and maps activations to a tensor."""

    # numpy defers to our reflected operators (which refuse arrays) instead of broadcasting
    # the loss into an object array.
    __array_ufunc__ = None

    def __init__(self) -> None:
        self.__name__ = type(self).__name__

    @property
    @abstractmethod
    def target(self) -> Any:
        ...

    @abstractmethod
    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        ...

    def __repr__(self) -> str:
        return self.__name__

    # Elementwise with numbers, mean-against-mean with another loss.
    def __neg__(self) -> "CompositeLoss":
        return _unary(self, operator.neg)

    def __pos__(self) -> "CompositeLoss":
        return _unary(self, operator.pos)

    def __abs__(self) -> "CompositeLoss":
        return _unary(self, torch.abs)

    def __round__(self, ndigits: Optional[int] = None) -> "CompositeLoss":
        decimals = 0 if ndigits is None else int(ndigits)
        return _unary(self, lambda t: torch.round(t, decimals=decimals))

    def __add__(self, other: Any) -> "CompositeLoss":
        return _binary(self, other, operator.add)

    def __radd__(self, other: Any) -> "CompositeLoss":
        return _binary(self, other, operator.add, reflected=True)

    def __sub__(self, other: Any) -> "CompositeLoss":
        return _binary(self, other, operator.sub)

    def __rsub__(self, other: Any) -> "CompositeLoss":
        return _binary(self, other, operator.sub, reflected=True)

    def __mul__(self, other: Any) -> "CompositeLoss":
        return _binary(self, other, operator.mul)

    def __rmul__(self, other: Any) -> "CompositeLoss":
        return _binary(self, other, operator.mul, reflected=True)

    def __truediv__(self, other: Any) -> "CompositeLoss":
        return _binary(self, other, operator.truediv)

    def __rtruediv__(self, other: Any) -> "CompositeLoss":
        return _binary(self, other, operator.truediv, reflected=True)

    def __pow__(self, other: Any) -> "CompositeLoss":
        return _binary(self, other, operator.pow)

    def __rpow__(self, other: Any) -> "CompositeLoss":
        return _binary(self, other, operator.pow, reflected=True)


def as_index(value: Any, owner: str, arg: str) -> int:
    """An int argument (anything with ``__index__`` but bool), or a TypeError naming it."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:  # no __index__, or one that refuses (a float 0-dim tensor)
        raise TypeError(f"{owner}: {arg} must be an int, got {type(value).__name__} "
                        f"({value!r})") from None


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


class BaseLoss(Loss):
    """A loss with a target and a batch selection ``(start, end)`` applied along dim 0."""

    def __init__(self, target: Any = None, batch_index: BatchIndex = None) -> None:
        super().__init__()
        self._target = [] if target is None else target
        self._batch_index = normalize_batch_index(batch_index, type(self).__name__)

    @property
    def target(self) -> Any:
        return self._target

    @property
    def batch_index(self) -> Tuple[Optional[int], Optional[int]]:
        return self._batch_index


class CompositeLoss(BaseLoss):
    """A loss defined by a function of the activation mapping."""

    def __init__(self, loss_fn: Callable[[ModuleOutputMapping], torch.Tensor], name: str = "",
                 target: Any = None) -> None:
        super().__init__(target)
        self.loss_fn = loss_fn
        self.__name__ = name

    def __call__(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        return self.loss_fn(targets_to_values)


class _OperatorLoss(CompositeLoss):
    """The result of an operator: ``combine(*values)`` over operands (losses or numbers).

    Evaluation walks the operand graph with an explicit stack and evaluates each distinct loss
    once per call, so neither depth nor shared sub-losses cost recursion or repeated work.
    """

    def __init__(self, combine: Callable[..., torch.Tensor], operands: Sequence[Any], name: str,
                 target: Any) -> None:
        super().__init__(self._evaluate, name, target)
        self.combine = combine
        self.operands = tuple(operands)

    def _evaluate(self, targets_to_values: ModuleOutputMapping) -> torch.Tensor:
        values: Dict[int, torch.Tensor] = {}
        stack: List[Tuple[Loss, bool]] = [(self, False)]
        while stack:
            node, ready = stack.pop()
            if id(node) in values:
                continue
            if not isinstance(node, _OperatorLoss):
                values[id(node)] = node(targets_to_values)
            elif ready:
                args = [values[id(o)] if isinstance(o, Loss) else o for o in node.operands]
                values[id(node)] = node.combine(*args)
            else:
                stack.append((node, True))
                stack.extend((o, False) for o in node.operands
                             if isinstance(o, Loss) and id(o) not in values)
        return values[id(self)]


def _unary(loss: Loss, fn: Callable[[torch.Tensor], torch.Tensor]) -> CompositeLoss:
    return _OperatorLoss(fn, [loss], loss.__name__, loss.target)


def _mean_sum(*values: torch.Tensor) -> torch.Tensor:
    return sum(v.mean() for v in values)


def _binary(loss: Loss, other: Any, op: Callable, reflected: bool = False) -> CompositeLoss:
    if isinstance(other, Loss):
        left, right = (other, loss) if reflected else (loss, other)
        name = f"Compose({left.__name__}, {right.__name__})"
        target = unique_targets(listify(left.target) + listify(right.target))
        if op is operator.add:  # flat n-ary sum of means: long + chains stay one node
            terms = [t for side in (left, right) for t in _sum_terms(side)]
            return _OperatorLoss(_mean_sum, terms, name, target)
        return _OperatorLoss(lambda a, b: op(a.mean(), b.mean()), [left, right], name, target)
    number = _number(other)
    if reflected:
        return _OperatorLoss(lambda v: op(number, v), [loss], loss.__name__, loss.target)
    return _OperatorLoss(lambda v: op(v, number), [loss], loss.__name__, loss.target)


def _sum_terms(loss: Loss) -> List[Loss]:
    if isinstance(loss, _OperatorLoss) and loss.combine is _mean_sum:
        return list(loss.operands)
    return [loss]


def sum_loss_list(loss_list: Sequence[Loss],
                  to_scalar_fn: Callable[[torch.Tensor], torch.Tensor] = torch.mean
                  ) -> CompositeLoss:
    """Sum many losses without nesting: ``m -> Σ_k to_scalar_fn(loss_k(m))``.

    ``to_scalar_fn=torch.nn.Identity()`` keeps each loss's shape (they must then broadcast).
    """
    losses = list(loss_list)
    for i, item in enumerate(losses):
        if not isinstance(item, Loss):
            raise TypeError(f"sum_loss_list: loss_list[{i}] is a {type(item).__name__}, "
                            "not a Loss")
    target = unique_targets(t for item in losses for t in listify(item.target))
    name = "Sum(" + ", ".join(item.__name__ for item in losses) + ")"

    def total(*values: torch.Tensor) -> torch.Tensor:
        return sum(to_scalar_fn(v) for v in values)

    return _OperatorLoss(total, losses, name, target)


def default_loss_summarize(loss_value: torch.Tensor) -> torch.Tensor:
    """Minimising ``-mean`` maximises the objective: the optimisers' default summary."""
    return -loss_value.mean()


__all__ = ["Loss", "BaseLoss", "CompositeLoss", "sum_loss_list", "default_loss_summarize",
           "listify", "unique_targets", "targets_of", "as_index", "normalize_batch_index",
           "select_batch",
           "ModuleOutputMapping"]
