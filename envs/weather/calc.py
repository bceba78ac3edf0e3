"""A safe arithmetic evaluator for the ``calculate`` tool: numbers and a few functions, no code.

The expression is parsed with :mod:`ast` and only numbers, ``+ - * / // % **``,
parentheses, lists of numbers and the functions in :data:`FUNCTIONS` are
evaluated; anything else (names, attributes, calls of other functions, strings)
is refused. Sizes are capped so that no expression can take long.
"""

from __future__ import annotations

import ast
import math
import operator
import statistics
from collections.abc import Callable
from typing import Any

__all__ = ["FUNCTIONS", "MAX_LENGTH", "CalcError", "evaluate"]

MAX_LENGTH = 600
"""Characters an expression may have."""
_MAX_MAGNITUDE = 1e15
_MAX_NODES = 400


class CalcError(ValueError):
    """An expression the calculator refuses or cannot evaluate; says why."""


def _mean(*values: Any) -> float:
    return statistics.fmean(_flat(values))


def _sum(*values: Any) -> float:
    return math.fsum(_flat(values))


def _min(*values: Any) -> float:
    return min(_flat(values))


def _max(*values: Any) -> float:
    return max(_flat(values))


def _round(value: float, digits: int = 0) -> float:
    if not isinstance(digits, int) or not 0 <= digits <= 10:
        raise CalcError("round's digits must be a whole number from 0 to 10")
    return round(value, digits)


def _flat(values: tuple[Any, ...]) -> list[float]:
    flat: list[float] = []
    for value in values:
        flat.extend(value if isinstance(value, list) else [value])
    if not flat:
        raise CalcError("a function of no numbers")
    return flat


FUNCTIONS: dict[str, Callable[..., float]] = {
    "abs": abs,
    "round": _round,
    "min": _min,
    "max": _max,
    "sum": _sum,
    "mean": _mean,
    "avg": _mean,
    "sqrt": math.sqrt,
}
"""The functions an expression may call (``min``/``max``/``sum``/``mean`` take numbers or lists)."""

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def evaluate(expression: str) -> float | int:
    """The value of an arithmetic ``expression``.

    Raises:
        CalcError: It is not plain arithmetic, too long, or cannot be evaluated
            (division by zero, a huge number...).
    """
    if len(expression) > MAX_LENGTH:
        raise CalcError(f"the expression is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise CalcError(f"cannot read {expression.strip()[:60]!r} as arithmetic") from None
    if sum(1 for _ in ast.walk(tree)) > _MAX_NODES:
        raise CalcError("the expression is too long")
    try:
        value = _eval(tree.body)
    except CalcError:
        raise
    except ZeroDivisionError:
        raise CalcError("division by zero") from None
    except (ArithmeticError, ValueError, TypeError) as error:
        raise CalcError(f"cannot evaluate it ({error})") from None
    if isinstance(value, list):
        raise CalcError("the result is a list, not a number (use sum, mean, min or max)")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalcError("the result is not a finite number")
    return value


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise CalcError("only numbers may appear in an expression")
        return _checked(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(left, list) or isinstance(right, list):
            raise CalcError("arithmetic on a list (use sum, mean, min or max)")
        if isinstance(node.op, ast.Pow) and (abs(right) > 10 or abs(left) > 1e6):
            raise CalcError("powers are limited to exponents of 10 or less")
        return _checked(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.List | ast.Tuple):
        return [_number(_eval(item)) for item in node.elts]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        function = FUNCTIONS.get(node.func.id)
        if function is None:
            raise CalcError(f"unknown function {node.func.id!r}; allowed: {', '.join(FUNCTIONS)}")
        return _checked(function(*(_eval(arg) for arg in node.args)))
    raise CalcError(
        "only numbers, + - * / // % **, parentheses, lists and the functions "
        f"{', '.join(FUNCTIONS)} are allowed"
    )


def _number(value: Any) -> float:
    if isinstance(value, list):
        raise CalcError("lists cannot be nested")
    return value


def _checked(value: Any) -> Any:
    if isinstance(value, int | float) and abs(value) > _MAX_MAGNITUDE:
        raise CalcError("a number in the calculation is too large")
    if isinstance(value, complex):
        raise CalcError("the result is not a real number")
    return value
