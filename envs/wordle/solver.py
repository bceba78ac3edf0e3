"""The expert of Wordle-v0: a greedy solver over the answers still consistent.

After each guess the solver keeps the answers that would have given the same
feedback, and guesses the word of the whole guess list that minimises the
expected number of answers left (preferring a word that may itself be the
answer). Feedback for every (guess, answer) pair is one table of base-3 codes,
built with numpy on first use (under a second) and kept for the process.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from palaestra.envs.wordle.words import ALL_GREEN, WORD_LENGTH, answers, encode, feedback, guesses

__all__ = ["OPENING", "best_guess", "best_opening", "feedback_table", "pattern_codes"]

OPENING = "raise"
"""The first guess, from ``best_opening()`` (``tools/make_wordle_words.py opening``)."""

_CODES = 3**WORD_LENGTH


def _letters(words: Sequence[str]) -> np.ndarray:
    """Words as a ``(len(words), 5)`` array of letter bytes."""
    return np.frombuffer("".join(words).encode("ascii"), dtype=np.uint8).reshape(-1, WORD_LENGTH)


def pattern_codes(guess_words: Sequence[str], answer_words: Sequence[str]) -> np.ndarray:
    """Feedback codes (:func:`~palaestra.envs.wordle.words.encode`) of every pair.

    The numpy twin of :func:`~palaestra.envs.wordle.words.feedback`: guess letter
    ``i``, if not green, is yellow when the answer holds more copies of it outside
    the green positions than the guess used before ``i`` outside them.

    Args:
        guess_words: The guesses, one row each.
        answer_words: The answers, one column each.

    Returns:
        A ``(len(guess_words), len(answer_words))`` ``uint8`` array.
    """
    answer = _letters(answer_words)
    copies_of = np.zeros((256, len(answer_words)), dtype=np.uint8)  # [letter, answer]
    for j in range(WORD_LENGTH):
        np.add.at(copies_of, (answer[:, j], np.arange(len(answer_words))), 1)
    guess = _letters(guess_words)
    # Guesses without repeated letters take a fast path; chunks keep them together.
    repeats = np.array([len(set(word)) < WORD_LENGTH for word in guess_words], dtype=bool)
    order = np.argsort(repeats, kind="stable")
    out = np.empty((len(guess_words), len(answer_words)), dtype=np.uint8)
    for start in range(0, len(order), 1024):
        rows = order[start : start + 1024]
        out[rows] = _chunk_codes(guess[rows], answer, copies_of)
    return out


def _chunk_codes(guess: np.ndarray, answer: np.ndarray, copies_of: np.ndarray) -> np.ndarray:
    greens = [guess[:, i, None] == answer[None, :, i] for i in range(WORD_LENGTH)]
    code = np.zeros((len(guess), len(answer)), dtype=np.uint8)
    for i in range(WORD_LENGTH):
        copies = copies_of[guess[:, i]]
        repeated = [j for j in range(WORD_LENGTH) if j != i and (guess[:, j] == guess[:, i]).any()]
        if repeated:
            copies = copies.astype(np.int8)
            used = np.zeros_like(copies)
            for j in repeated:
                same = (guess[:, j] == guess[:, i])[:, None]
                copies -= greens[j] & same
                if j < i:
                    used += ~greens[j] & same
            yellow = copies > used
        else:
            yellow = copies > 0
        code += np.where(greens[i], np.uint8(2 * 3**i), yellow * np.uint8(3**i))
    return code


@functools.cache
def feedback_table() -> np.ndarray:
    """Codes of every (guess, answer) pair: rows follow ``guesses()``, columns ``answers()``."""
    table = pattern_codes(guesses(), answers())
    table.flags.writeable = False
    return table


@functools.cache
def _guess_index() -> dict[str, int]:
    return {word: i for i, word in enumerate(guesses())}


def _split(candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How every guess splits ``candidates`` (answer indices) by feedback.

    Returns:
        Per guess, the sum of the squared bucket sizes, and whether the guess is
        itself a candidate (1 or 0).
    """
    table = feedback_table()
    columns = table[:, candidates].astype(np.int32)
    columns += np.arange(len(table), dtype=np.int32)[:, None] * _CODES
    counts = np.bincount(columns.ravel(), minlength=len(table) * _CODES).reshape(len(table), -1)
    return np.einsum("ij,ij->i", counts, counts), counts[:, ALL_GREEN]


def _best(candidates: np.ndarray) -> tuple[int, float]:
    """The guess (index) with the fewest expected answers left, and that number.

    For ``n`` candidates split into buckets of sizes ``c``, ``sum(c**2) / n``
    answers are left on average; a guess that is itself a candidate wins
    outright in its all-green bucket, which then counts 0 instead of 1. Ties go
    to candidates, then to the first in the list.
    """
    squares, is_candidate = _split(candidates)
    left = squares - is_candidate
    best = int(np.argmin(2 * left - is_candidate))
    return best, float(left[best]) / len(candidates)


def best_opening() -> tuple[str, float]:
    """The guess that minimises the expected answers left over all answers.

    Returns:
        The word and its expected number of answers left.
    """
    best, expected = _best(np.arange(len(answers())))
    return guesses()[best], expected


def best_guess(history: Sequence[tuple[str, int]]) -> str:
    """The solver's next guess after ``history``.

    Args:
        history: ``(guess, feedback code)`` pairs so far, oldest first.

    Returns:
        A word of the guess list (consistent with ``history`` whenever at most
        two answers remain consistent).
    """
    return _best_guess(tuple(history))


@functools.lru_cache(maxsize=1 << 16)
def _best_guess(history: tuple[tuple[str, int], ...]) -> str:
    if not history:
        return OPENING
    words = answers()
    consistent = np.ones(len(words), dtype=bool)
    index = _guess_index()
    for word, code in history:
        if word in index:
            consistent &= feedback_table()[index[word]] == code
        else:  # not a listed guess: judge it by the rule itself
            consistent &= np.array([encode(feedback(word, a)) == code for a in words])
    candidates = np.flatnonzero(consistent)
    if len(candidates) == 0:  # feedback no listed answer could give
        return OPENING
    if len(candidates) <= 2:
        return words[candidates[0]]
    return guesses()[_best(candidates)[0]]
