"""A safe parser for objective expressions given on the command line.

An expression such as ::

    ChannelActivation('features.3', 5) + 1e2 * Diversity('features.3')

is parsed with :mod:`ast` and evaluated by walking the tree here: the source is never passed to
``eval`` or ``exec``. The whole tree is checked before anything is built, and only these
constructs are accepted:

* calls of the objective classes, by their bare names (:data:`OBJECTIVE_NAMES`), with
  positional and keyword arguments, and of the layout targets ``Tokens`` and ``Pooled``
  (:data:`LAYOUT_NAMES`, see :mod:`fastobj.layout`), e.g.
  ``ChannelActivation(Tokens('blocks.1.mlp.act', prefix=1), 5)``;
* number, string, ``True``/``False``/``None`` literals, and lists and tuples of them;
* unary ``-`` and ``+``, and binary ``+ - * / **`` between objectives and numbers;
* Lucent's shorthand ``layer:channel`` for ``ChannelActivation('layer', channel)``, as the
  whole expression (``_blocks.10:17``) or as a string operand
  (``'_blocks.10:17' + 10 * Diversity('_blocks.10')``).

Anything else (other names, attribute access, subscripts, other calls, comprehensions, lambdas,
``*args``/``**kwargs``, comparisons, ...) is refused with a ``ValueError`` naming the construct
and its position. Arguments named ``vec``, ``vec_whitened``, ``weights`` or ``facet_weights``
that are given as (nested) lists of numbers become float32 tensors.
"""
from __future__ import annotations

import ast
import inspect
import math
import operator
import re
from typing import Any, Callable, Dict, Mapping, Optional

import torch

from .. import layout, objectives

__all__ = ["OBJECTIVE_NAMES", "LAYOUT_NAMES", "TENSOR_ARGUMENTS", "check_expression",
           "parse_objective", "channel_shorthand"]

OBJECTIVE_NAMES = frozenset(objectives.__all__)

LAYOUT_NAMES = frozenset({"Tokens", "Pooled"})

TENSOR_ARGUMENTS = frozenset({"vec", "vec_whitened", "weights", "facet_weights"})

MAX_LENGTH = 10_000

_SHORTHAND = re.compile(r"([^\s:'\"]+):(-?[0-9]+)")

_BINARY: Dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.Pow: operator.pow,
}
_UNARY: Dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}

# Friendly names for the constructs people are most likely to try.
_DESCRIPTIONS = {
    ast.Attribute: "attribute access", ast.Subscript: "subscript", ast.Lambda: "lambda",
    ast.ListComp: "list comprehension", ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension", ast.GeneratorExp: "generator expression",
    ast.Dict: "dict literal", ast.Set: "set literal", ast.Compare: "comparison",
    ast.BoolOp: "boolean operator", ast.IfExp: "conditional expression",
    ast.Starred: "starred argument", ast.JoinedStr: "f-string", ast.NamedExpr: "assignment",
    ast.Await: "await", ast.Slice: "slice",
}


def _where(node: ast.AST) -> str:
    col = getattr(node, "col_offset", None)
    return "" if col is None else f" at column {col + 1}"


def _refuse(node: ast.AST, what: Optional[str] = None) -> ValueError:
    if what is None:
        what = _DESCRIPTIONS.get(type(node), f"'{type(node).__name__}' construct")
    return ValueError(f"objective expression: {what} is not allowed{_where(node)}; only calls "
                      "of objective classes, numbers, strings, lists, tuples and + - * / ** "
                      "are accepted")


def _parse(source: str) -> ast.Expression:
    if not isinstance(source, str):
        raise TypeError(f"objective expression must be a string, not {type(source).__name__}")
    if len(source) > MAX_LENGTH:
        raise ValueError(f"objective expression is longer than {MAX_LENGTH} characters")
    if not source.strip():
        raise ValueError("objective expression is empty")
    try:
        return ast.parse(source.strip(), mode="eval")
    except (RecursionError, MemoryError):
        raise ValueError("objective expression is nested too deeply") from None
    except SyntaxError as exc:
        raise ValueError(f"objective expression is not valid syntax: {exc.msg}"
                         f" (column {exc.offset})") from None


def _check(node: ast.AST, allowed: frozenset) -> None:
    """Refuse, before anything is evaluated, every construct outside the accepted set."""
    if isinstance(node, ast.Expression):
        _check(node.body, allowed)
    elif isinstance(node, ast.Constant):
        value = node.value
        if not (value is None or isinstance(value, (bool, int, float, str))):
            raise _refuse(node, f"constant {value!r} of type {type(value).__name__}")
    elif isinstance(node, (ast.List, ast.Tuple)):
        for elt in node.elts:
            _check(elt, allowed)
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise _refuse(node, f"unary operator '{type(node.op).__name__}'")
        _check(node.operand, allowed)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise _refuse(node, f"binary operator '{type(node.op).__name__}'")
        _check(node.left, allowed)
        _check(node.right, allowed)
    elif isinstance(node, ast.Call):
        func = node.func
        if not isinstance(func, ast.Name):
            raise _refuse(func, "calling something other than an objective name ("
                          + _DESCRIPTIONS.get(type(func), type(func).__name__) + ")")
        if func.id not in allowed:
            raise _refuse(func, f"call of '{func.id}' (not an objective)")
        for arg in node.args:
            _check(arg, allowed)
        for kw in node.keywords:
            if kw.arg is None:
                raise _refuse(kw.value, "'**' argument unpacking")
            _check(kw.value, allowed)
    elif isinstance(node, ast.Name):
        if node.id in allowed:
            raise _refuse(node, f"the objective name '{node.id}' without a call")
        raise _refuse(node, f"the name '{node.id}'")
    else:
        raise _refuse(node)


def check_expression(source: str, allowed: frozenset = OBJECTIVE_NAMES) -> ast.Expression:
    """Parse ``source`` and check it; returns the tree or raises ``ValueError``."""
    tree = _parse(source)
    try:
        _check(tree, allowed)
    except RecursionError:
        raise ValueError("objective expression is nested too deeply") from None
    return tree


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float))


def _to_tensor(name: str, value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        try:
            return torch.tensor(value, dtype=torch.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"argument {name!r} must be a (nested) list of numbers: {exc}") \
                from None
    return value


class _Evaluator:
    def __init__(self, namespace: Mapping[str, Callable[..., Any]]) -> None:
        self.namespace = namespace

    def __call__(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return self(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List):
            return [self(e) for e in node.elts]
        if isinstance(node, ast.Tuple):
            return tuple(self(e) for e in node.elts)
        if isinstance(node, ast.UnaryOp):
            operand = self.operand(node.operand)
            self._check_operands(node, operand)
            return _UNARY[type(node.op)](operand)
        if isinstance(node, ast.BinOp):
            left, right = self.operand(node.left), self.operand(node.right)
            self._check_operands(node, left, right)
            op = _BINARY[type(node.op)]
            if _is_number(left) and _is_number(right):
                return self._number_op(node, op, left, right)
            return op(left, right)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise _refuse(node)  # unreachable after _check

    def operand(self, node: ast.AST) -> Any:
        """Evaluate ``node``; a ``'layer:channel'`` string becomes its ChannelActivation."""
        value = self(node)
        if isinstance(value, str):
            return channel_shorthand(value, self.namespace) or value
        return value

    @staticmethod
    def _check_operands(node: ast.AST, *values: Any) -> None:
        from ..loss import Loss

        for value in values:
            if not (_is_number(value) or isinstance(value, Loss)):
                raise ValueError(f"objective expression: arithmetic on a "
                                 f"{type(value).__name__}{_where(node)}; only objectives and "
                                 "numbers can be combined")

    @staticmethod
    def _number_op(node: ast.AST, op: Callable, left: Any, right: Any) -> Any:
        # The float result is computed first, so 10**10**10 fails fast instead of building a
        # huge integer; integer results of + - * and ** stay integers (channel indices).
        try:
            result = op(float(left), float(right))
        except OverflowError:
            raise ValueError(f"objective expression: number too large{_where(node)}") from None
        except ZeroDivisionError:
            raise ValueError(f"objective expression: division by zero{_where(node)}") from None
        if isinstance(result, complex) or not math.isfinite(result):
            raise ValueError(f"objective expression: arithmetic gives {result}{_where(node)}")
        if (isinstance(left, int) and isinstance(right, int) and op is not operator.truediv
                and not (op is operator.pow and right < 0)):
            return op(int(left), int(right))
        return result

    def _call(self, node: ast.Call) -> Any:
        name = node.func.id  # type: ignore[attr-defined]
        cls = self.namespace[name]
        args = [self(a) for a in node.args]
        kwargs = {kw.arg: self(kw.value) for kw in node.keywords}
        try:
            bound = inspect.signature(cls).bind(*args, **kwargs)
        except TypeError as exc:
            raise ValueError(f"objective expression: {name}(...): {exc}") from None
        except ValueError:  # no signature available: pass the arguments through
            bound = None
        if bound is not None:
            for key in list(bound.arguments):
                if key in TENSOR_ARGUMENTS:
                    bound.arguments[key] = _to_tensor(key, bound.arguments[key])
            args, kwargs = list(bound.args), dict(bound.kwargs)
        try:
            return cls(*args, **kwargs)
        except (TypeError, ValueError, IndexError, AssertionError) as exc:
            raise ValueError(f"objective expression: {name}(...): {exc}") from None


def _default_namespace() -> Dict[str, Callable[..., Any]]:
    return {**{n: getattr(objectives, n) for n in OBJECTIVE_NAMES},
            **{n: getattr(layout, n) for n in LAYOUT_NAMES}}


def parse_objective(source: str,
                    namespace: Optional[Mapping[str, Callable[..., Any]]] = None) -> Any:
    """Build the objective that ``source`` describes.

    Args:
        source: the expression, e.g. ``"ChannelActivation('features.3', 5) - 0.1 * L2('image')"``,
            or Lucent's ``"features.3:5"``.
        namespace: names allowed as calls, mapped to the callables they build (default: the 18
            classes of :mod:`fastobj.objectives` and the layout targets of
            :mod:`fastobj.layout`). Only for tests and extensions.

    Raises:
        ValueError: the expression holds a construct outside the accepted set (checked on the
            whole tree before any objective is built), or an objective rejected its arguments.
    """
    from ..loss import Loss

    ns = _default_namespace() if namespace is None else dict(namespace)
    shorthand = channel_shorthand(source, ns) if isinstance(source, str) else None
    if shorthand is not None:
        return shorthand
    tree = check_expression(source, frozenset(ns))
    try:
        result = _Evaluator(ns).operand(tree.body)
    except RecursionError:
        raise ValueError("objective expression is nested too deeply") from None
    if not isinstance(result, Loss):
        raise ValueError(f"objective expression evaluates to a {type(result).__name__} value, "
                         "not an objective; it must contain at least one objective call")
    return result


def channel_shorthand(text: str, namespace: Optional[Mapping[str, Callable[..., Any]]] = None
                      ) -> Any:
    """``ChannelActivation(layer, channel)`` for Lucent's ``"layer:channel"``, else None.

    ``namespace`` supplies the ChannelActivation class (default: fastobj's).
    """
    match = _SHORTHAND.fullmatch(text.strip())
    if match is None:
        return None
    if namespace is None or "ChannelActivation" not in namespace:
        from ..objectives import ChannelActivation
    else:
        ChannelActivation = namespace["ChannelActivation"]
    return ChannelActivation(match.group(1), int(match.group(2)))
