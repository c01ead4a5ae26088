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
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .checks import (
    BatchIndex,
    ModuleOutputMapping,
    as_number,
    listify,
    normalize_batch_index,
    unique_targets,
)


def targets_of(loss: "Loss") -> List[Any]:
    """The de-duplicated list of targets whose activations ``loss`` reads."""
    return unique_targets(listify(loss.target))


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

    # Elementwise with numbers, mean-against-mean with another loss (see module_op).
    def __neg__(self) -> "CompositeLoss":
        return module_op(self, None, operator.neg)

    def __pos__(self) -> "CompositeLoss":
        return module_op(self, None, operator.pos)

    def __abs__(self) -> "CompositeLoss":
        return module_op(self, None, operator.abs)

    def __round__(self, ndigits: Optional[int] = None) -> "CompositeLoss":
        decimals = 0 if ndigits is None else int(ndigits)
        return _unary(self, lambda t: torch.round(t, decimals=decimals))

    def __add__(self, other: Any) -> "CompositeLoss":
        return module_op(self, other, operator.add)

    def __radd__(self, other: Any) -> "CompositeLoss":
        return rmodule_op(self, other, operator.add)

    def __sub__(self, other: Any) -> "CompositeLoss":
        return module_op(self, other, operator.sub)

    def __rsub__(self, other: Any) -> "CompositeLoss":
        return rmodule_op(self, other, operator.sub)

    def __mul__(self, other: Any) -> "CompositeLoss":
        return module_op(self, other, operator.mul)

    def __rmul__(self, other: Any) -> "CompositeLoss":
        return rmodule_op(self, other, operator.mul)

    def __truediv__(self, other: Any) -> "CompositeLoss":
        return module_op(self, other, operator.truediv)

    def __rtruediv__(self, other: Any) -> "CompositeLoss":
        return rmodule_op(self, other, operator.truediv)

    def __pow__(self, other: Any) -> "CompositeLoss":
        return module_op(self, other, operator.pow)

    def __rpow__(self, other: Any) -> "CompositeLoss":
        return rmodule_op(self, other, operator.pow)


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


# The unary operators module_op applies when ``other`` is None.
_UNARY_OPS = (operator.neg, operator.pos, operator.abs, torch.abs)


def module_op(loss: Loss, other: Any, math_op: Callable) -> CompositeLoss:
    """Captum's operator behind every dunder of :class:`Loss`: ``math_op(loss, other)``.

    ``other`` None applies a unary ``math_op`` (neg, pos, abs) to the loss's value; a real
    number is applied elementwise; another Loss combines the two means,
    ``math_op(mean(loss), mean(other))``, with the targets of both. Anything else raises
    TypeError.
    """
    return _compose(loss, other, math_op, reflected=False)


def rmodule_op(loss: Loss, other: Any, math_op: Callable) -> CompositeLoss:
    """The reflected form, ``math_op(other, loss)``, as in ``2 - loss`` or ``2 ** loss``."""
    return _compose(loss, other, math_op, reflected=True)


def _compose(loss: Loss, other: Any, op: Callable, reflected: bool) -> CompositeLoss:
    if not isinstance(loss, Loss):
        raise TypeError(f"module_op: the first operand must be a Loss, got "
                        f"{type(loss).__name__}")
    if other is None:
        if op not in _UNARY_OPS:
            raise TypeError(f"{loss.__name__}: {getattr(op, '__name__', op)!s} needs a second "
                            "operand (a real number or a Loss); received type NoneType")
        return _unary(loss, op)
    if isinstance(other, Loss):
        left, right = (other, loss) if reflected else (loss, other)
        name = f"Compose({left.__name__}, {right.__name__})"
        target = unique_targets(listify(left.target) + listify(right.target))
        if op is operator.add:  # flat n-ary sum of means: long + chains stay one node
            terms = [t for side in (left, right) for t in _sum_terms(side)]
            return _OperatorLoss(_mean_sum, terms, name, target)
        return _OperatorLoss(lambda a, b: op(a.mean(), b.mean()), [left, right], name, target)
    number = as_number(other, loss.__name__)
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
    if not isinstance(loss_value, torch.Tensor):
        raise TypeError("default_loss_summarize: loss_value must be the tensor an objective "
                        f"returned, got {type(loss_value).__name__}")
    return -loss_value.mean()


__all__ = ["Loss", "BaseLoss", "CompositeLoss", "module_op", "rmodule_op", "sum_loss_list",
           "default_loss_summarize", "targets_of"]
