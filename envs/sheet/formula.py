"""Cell addresses and the formula language of the Sheet env: parse, evaluate, rewrite refs.

A formula is ``=`` followed by an expression of numbers, cell references
(``C2``, ``$C$2``), ranges (``C2:C9``, only as function arguments), ``+ - * /``,
parentheses, and the functions SUM, AVERAGE, MIN, MAX, COUNT and ROUND. There
is no Python ``eval``: a small tokenizer and a recursive-descent parser build a
tuple tree, and :func:`evaluate` walks it.

Values are ``float`` (numbers), ``str`` (text), ``None`` (an empty cell) or a
:class:`CellError` (``#DIV/0!``, ``#VALUE!``, ``#REF!``, ``#CYCLE!``, ``#ERROR!``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any

__all__ = [
    "FUNCTIONS",
    "MAX_COLS",
    "MAX_ROWS",
    "CellError",
    "FormulaError",
    "address",
    "col_letter",
    "col_number",
    "evaluate",
    "parse",
    "parse_address",
    "parse_range",
    "rewrite_refs",
    "round_half_up",
]

MAX_ROWS = 60
"""Rows a sheet has (1..60)."""
MAX_COLS = 26
"""Columns a sheet has (A..Z)."""
FUNCTIONS = ("SUM", "AVERAGE", "MIN", "MAX", "COUNT", "ROUND")


class FormulaError(ValueError):
    """A formula that does not parse, or an address outside the sheet; says why."""


class CellError(str):
    """An error value shown in a cell, e.g. ``#DIV/0!`` (a ``str`` that never matches)."""

    __slots__ = ()


DIV0 = CellError("#DIV/0!")
VALUE = CellError("#VALUE!")
REF = CellError("#REF!")
CYCLE = CellError("#CYCLE!")

_ADDRESS = re.compile(r"\$?([A-Za-z]{1,2})\$?(\d{1,3})")


def col_letter(col: int) -> str:
    """The letter of 1-based column ``col`` (1 -> A)."""
    return chr(ord("A") + col - 1)


def col_number(letter: str) -> int:
    """The 1-based number of a column letter (A -> 1).

    Raises:
        FormulaError: Not a column of the sheet (A..Z).
    """
    text = letter.strip().upper()
    if len(text) != 1 or not "A" <= text <= "Z":
        raise FormulaError(f"{letter!r} is not a column (A to Z)")
    return ord(text) - ord("A") + 1


def address(row: int, col: int) -> str:
    """The A1-style address of 1-based ``row`` and ``col``."""
    return f"{col_letter(col)}{row}"


def parse_address(text: str) -> tuple[int, int]:
    """``(row, col)``, 1-based, of an address such as ``C7`` or ``$C$7``.

    Raises:
        FormulaError: Not an address, or outside A1:Z60.
    """
    match = _ADDRESS.fullmatch(text.strip())
    if match is None:
        raise FormulaError(f"{text!r} is not a cell address (a column letter and a row: C7)")
    col = col_number(match.group(1)) if len(match.group(1)) == 1 else MAX_COLS + 1
    row = int(match.group(2))
    if not (1 <= row <= MAX_ROWS and col <= MAX_COLS):
        raise FormulaError(f"{text.strip().upper()} is outside the sheet (A1 to Z{MAX_ROWS})")
    return row, col


def parse_range(text: str) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` of ``C2:E9`` (corners in any order) or of one cell.

    Raises:
        FormulaError: Not a range of the sheet.
    """
    parts = text.split(":")
    if len(parts) > 2:
        raise FormulaError(f"{text!r} is not a range (like C2:E9)")
    r1, c1 = parse_address(parts[0])
    r2, c2 = parse_address(parts[-1])
    return min(r1, r2), min(c1, c2), max(r1, r2), max(c1, c2)


def round_half_up(value: float, digits: int) -> float:
    """``value`` rounded to ``digits`` decimals, halves away from zero (as spreadsheets do)."""
    quantum = Decimal(1).scaleb(-digits)
    return float(Decimal(repr(value)).quantize(quantum, rounding=ROUND_HALF_UP))


# -- tokens ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<num>\d+(?:\.\d*)?|\.\d+)"
    r"|(?P<range>\$?[A-Za-z]{1,2}\$?\d+:\$?[A-Za-z]{1,2}\$?\d+)"
    r"|(?P<func>[A-Za-z]+)\s*(?=\()"
    r"|(?P<ref>\$?[A-Za-z]{1,2}\$?\d+)"
    r"|(?P<err>\#REF!)"
    r"|(?P<op>[-+*/(),])"
    r")"
)


def _tokens(body: str) -> list[tuple[str, str, int, int]]:
    """``(kind, text, start, end)`` of each token of a formula body (after the ``=``)."""
    out = []
    pos = 0
    body = body.rstrip()
    while pos < len(body):
        match = _TOKEN.match(body, pos)
        if match is None or match.end() == pos:
            rest = body[pos:].strip()
            raise FormulaError(f"cannot read the formula at {rest[:12]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind), match.start(kind), match.end(kind)))
        pos = match.end()
    return out


# -- parser ---------------------------------------------------------------------------


class _Parser:
    def __init__(self, body: str) -> None:
        self.tokens = _tokens(body)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        if self.i < len(self.tokens):
            return self.tokens[self.i][0], self.tokens[self.i][1]
        return "end", ""

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.i += 1
        return token

    def expect(self, text: str) -> None:
        _, got = self.take()
        if got != text:
            raise FormulaError(f"expected {text!r} but found {got or 'the end'!r}")

    def formula(self) -> tuple[Any, ...]:
        if not self.tokens:
            raise FormulaError("the formula is empty")
        tree = self.expr()
        if self.peek()[0] != "end":
            raise FormulaError(f"unexpected {self.peek()[1]!r}")
        return tree

    def expr(self) -> tuple[Any, ...]:
        tree = self.term()
        while self.peek() in (("op", "+"), ("op", "-")):
            op = self.take()[1]
            tree = ("bin", op, tree, self.term())
        return tree

    def term(self) -> tuple[Any, ...]:
        tree = self.unary()
        while self.peek() in (("op", "*"), ("op", "/")):
            op = self.take()[1]
            tree = ("bin", op, tree, self.unary())
        return tree

    def unary(self) -> tuple[Any, ...]:
        if self.peek() in (("op", "-"), ("op", "+")):
            op = self.take()[1]
            inner = self.unary()
            return ("neg", inner) if op == "-" else inner
        return self.primary()

    def primary(self) -> tuple[Any, ...]:
        kind, text = self.take()
        if kind == "num":
            return ("num", float(text))
        if kind == "ref":
            return ("ref", *parse_address(text))
        if kind == "err":
            return ("err", REF)
        if kind == "range":
            raise FormulaError(f"a range ({text.upper()}) can only be an argument of a function")
        if kind == "func":
            name = text.upper()
            if name not in FUNCTIONS:
                raise FormulaError(
                    f"unknown function {name}; the functions: {', '.join(FUNCTIONS)}"
                )
            self.expect("(")
            args: list[tuple[Any, ...]] = []
            if self.peek() != ("op", ")"):
                args.append(self.argument())
                while self.peek() == ("op", ","):
                    self.take()
                    args.append(self.argument())
            self.expect(")")
            if name == "ROUND" and len(args) != 2:
                raise FormulaError("ROUND takes two arguments: ROUND(value, decimals)")
            if name != "ROUND" and not args:
                raise FormulaError(f"{name} needs at least one argument")
            return ("call", name, tuple(args))
        if (kind, text) == ("op", "("):
            tree = self.expr()
            self.expect(")")
            return tree
        raise FormulaError(f"unexpected {text or 'end of formula'!r}")

    def argument(self) -> tuple[Any, ...]:
        if self.peek()[0] == "range":
            return ("range", *parse_range(self.take()[1]))
        return self.expr()


@lru_cache(maxsize=4096)
def parse(formula: str) -> tuple[Any, ...]:
    """The syntax tree of ``formula`` (with or without its leading ``=``).

    Raises:
        FormulaError: It does not parse; the message says where.
    """
    body = formula[1:] if formula.startswith("=") else formula
    return _Parser(body).formula()


# -- evaluation -----------------------------------------------------------------------

Value = float | str | None


def evaluate(tree: tuple[Any, ...], cell: Callable[[int, int], Value]) -> Value:
    """The value of a parsed formula; ``cell(row, col)`` gives the value of a cell."""
    kind = tree[0]
    if kind == "num":
        return tree[1]
    if kind == "err":
        return tree[1]
    if kind == "ref":
        value = cell(tree[1], tree[2])
        return 0.0 if value is None else value
    if kind == "neg":
        value = _number(evaluate(tree[1], cell))
        return value if isinstance(value, CellError) else -value
    if kind == "bin":
        left = _number(evaluate(tree[2], cell))
        if isinstance(left, CellError):
            return left
        right = _number(evaluate(tree[3], cell))
        if isinstance(right, CellError):
            return right
        op = tree[1]
        if op == "+":
            return left + right
        if op == "-":
            return left - right
        if op == "*":
            return left * right
        return DIV0 if right == 0 else left / right
    return _call(tree[1], tree[2], cell)


def _number(value: Value) -> float | CellError:
    if isinstance(value, CellError):
        return value
    if isinstance(value, float):
        return value
    return VALUE  # text in arithmetic


def _call(name: str, args: tuple[tuple[Any, ...], ...], cell: Callable[[int, int], Value]) -> Value:
    if name == "ROUND":
        value = _number(evaluate(args[0], cell))
        digits = _number(evaluate(args[1], cell))
        if isinstance(value, CellError):
            return value
        if isinstance(digits, CellError):
            return digits
        return round_half_up(value, int(digits))
    numbers: list[float] = []
    for arg in args:
        if arg[0] in ("range", "ref"):
            top, left, bottom, right = arg[1:] if arg[0] == "range" else (*arg[1:], *arg[1:])
            for r in range(top, bottom + 1):
                for c in range(left, right + 1):
                    value = cell(r, c)
                    if isinstance(value, CellError):
                        return value
                    if isinstance(value, float):
                        numbers.append(value)  # text and empty cells are skipped
            continue
        value = _number(evaluate(arg, cell))
        if isinstance(value, CellError):
            return value
        numbers.append(value)
    if name == "SUM":
        return float(sum(numbers))
    if name == "COUNT":
        return float(len(numbers))
    if name == "AVERAGE":
        return sum(numbers) / len(numbers) if numbers else DIV0
    if not numbers:
        return 0.0
    return min(numbers) if name == "MIN" else max(numbers)


# -- reference rewriting ----------------------------------------------------------------


def rewrite_refs(
    formula: str,
    single: Callable[[int], int | None],
    span: Callable[[int, int], tuple[int, int] | None],
) -> str:
    """``formula`` with the rows of its references moved, as rows move in the sheet.

    Args:
        formula: A formula (starting with ``=``) that parses.
        single: The new row of a single reference's row, or ``None`` when that row is gone.
        span: The new ``(top, bottom)`` rows of a range's rows, or ``None`` when all are gone.

    Returns:
        The rewritten formula; a reference to a vanished row becomes ``#REF!``.
    """
    body = formula[1:]
    out: list[str] = []
    last = 0
    for kind, text, start, end in _tokens(body):
        if kind == "ref":
            row, col = parse_address(text)
            moved = single(row)
            new = "#REF!" if moved is None else address(moved, col)
        elif kind == "range":
            top, left, bottom, right = parse_range(text)
            rows = span(top, bottom)
            new = "#REF!" if rows is None else f"{address(rows[0], left)}:{address(rows[1], right)}"
        else:
            continue
        out.append(body[last:start])
        out.append(new)
        last = end
    out.append(body[last:])
    return "=" + "".join(out)
