"""The word lists of Wordle-v0 and the feedback rule.

The lists are the text files shipped in this package (see ``LICENSE.txt`` and
``tools/make_wordle_words.py``), read once per process.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources

__all__ = [
    "ALL_GREEN",
    "GRAY",
    "GREEN",
    "MARK_NAMES",
    "WORD_LENGTH",
    "YELLOW",
    "answers",
    "decode",
    "encode",
    "feedback",
    "guess_set",
    "guesses",
]

WORD_LENGTH = 5
GRAY, YELLOW, GREEN = 0, 1, 2
MARK_NAMES: tuple[str, str, str] = ("gray", "yellow", "green")
ALL_GREEN = 3**WORD_LENGTH - 1
"""The code of five greens (see :func:`encode`)."""


def _read(name: str) -> tuple[str, ...]:
    text = resources.files(__package__).joinpath(name).read_text(encoding="ascii")
    return tuple(line for line in text.split() if line)


@functools.cache
def answers() -> tuple[str, ...]:
    """The possible secret words, sorted (lowercase, 5 letters a-z)."""
    return _read("answers.txt")


@functools.cache
def guesses() -> tuple[str, ...]:
    """Every accepted guess, sorted; a superset of :func:`answers`."""
    return _read("guesses.txt")


@functools.cache
def guess_set() -> frozenset[str]:
    """:func:`guesses` as a set, for membership tests."""
    return frozenset(guesses())


def feedback(guess: str, answer: str) -> tuple[int, ...]:
    """Wordle's marks for ``guess`` against ``answer``: GREEN, YELLOW or GRAY per letter.

    Greens first; then, left to right, a letter is yellow while the answer still has
    unmatched copies of it, so a letter guessed twice is yellow twice only if the
    answer holds it twice (outside the green positions).

    Args:
        guess: The guessed word.
        answer: The secret word, of the same length.

    Returns:
        One mark per letter of ``guess``.
    """
    marks = [GRAY] * len(guess)
    unmatched: dict[str, int] = {}
    for i, (g, a) in enumerate(zip(guess, answer, strict=True)):
        if g == a:
            marks[i] = GREEN
        else:
            unmatched[a] = unmatched.get(a, 0) + 1
    for i, g in enumerate(guess):
        if marks[i] != GREEN and unmatched.get(g, 0) > 0:
            marks[i] = YELLOW
            unmatched[g] -= 1
    return tuple(marks)


def encode(marks: Sequence[int]) -> int:
    """Pack marks into one int in ``range(3**5)``: mark ``i`` is base-3 digit ``i``."""
    return sum(mark * 3**i for i, mark in enumerate(marks))


def decode(code: int) -> tuple[int, ...]:
    """The marks packed by :func:`encode`."""
    return tuple((code // 3**i) % 3 for i in range(WORD_LENGTH))
