"""``palaestra/Wordle-v0``: find a secret 5-letter word from per-letter feedback."""

from __future__ import annotations

import random
import re
from typing import Any, ClassVar

import numpy as np

from palaestra.envs.core import Outcome, TaskId, TextEnv, echo_action
from palaestra.envs.wordle.solver import best_guess
from palaestra.envs.wordle.words import (
    ALL_GREEN,
    GRAY,
    GREEN,
    MARK_NAMES,
    WORD_LENGTH,
    answers,
    decode,
    encode,
    feedback,
    guess_set,
    guesses,
)

__all__ = ["MAX_STEPS", "MAX_TRIES", "TASK_SEED", "TEST_TASKS", "TRAIN_TASKS", "WordleEnv"]

MAX_TRIES = 6
MAX_STEPS = 12
"""Six tries plus room for six rejected guesses (rejections count as steps, not tries)."""

TASK_SEED = 20_240_601
"""Seeds the fixed shuffle of the answers that maps task ids to words."""


def _task_words() -> tuple[str, ...]:
    words = list(answers())
    random.Random(TASK_SEED).shuffle(words)
    return tuple(words)


_TASK_WORDS = _task_words()
_TRAIN_SIZE = len(_TASK_WORDS) * 4 // 5
TRAIN_TASKS = range(0, _TRAIN_SIZE)
TEST_TASKS = range(_TRAIN_SIZE, len(_TASK_WORDS))

_HELP = "Reply with `guess WORD`, where WORD is a 5-letter English word."
_QUOTES = "`'\"*[]<>"


class WordleEnv(TextEnv):
    """Wordle: guess a secret 5-letter English word in six tries.

    Each task is one secret word. After each guess every letter is marked
    green (right letter, right place), yellow (in the word, elsewhere) or gray
    (not in the word). A repeated letter is marked green or yellow only as many
    times as the secret holds it, greens first, then yellows from left to right;
    extra copies are gray.

    ## Observation

    Printable ASCII text. The first says a word was chosen and how to guess.
    After a valid guess: its feedback as ``CRANE -> C:gray R:green A:gray
    N:yellow E:green``, the board of all guesses so far, a summary (known
    positions such as ``_ R _ _ E``, letters known in and not in the word), and
    the tries left. A rejected guess is answered with the reason and the tries
    left; the last observation gives the secret word.

    ## Actions

    ``guess WORD`` (or the bare word), case-insensitive, surrounding whitespace
    and quotes ignored. WORD must be one of the 11,392 accepted 5-letter words.
    Anything else (wrong length, non-letters, unknown word, unreadable) is
    rejected without costing a try, with ``info["invalid_action"]`` (and the older
    ``info["valid"]: False``). ``info["available_actions"]`` is not given: the guess
    list is too long to list every step; ``random_action`` draws ``guess WORD``
    with WORD uniform over the accepted words.

    ## Reward, score and success

    Reward 1.0 on the guess that finds the word (success, score 1.0), else 0.0.
    An episode that ends unsolved (six tries used, or the step limit) has
    success False and score ``g / 5``, ``g`` the most green letters of any one
    guess: partial progress in [0, 0.8].

    ## Episode end

    Terminated when the word is found or the sixth valid guess misses it.
    Truncated after ``max_steps`` = 12 steps, valid or not.

    ## Splits

    2,226 tasks: task id ``t`` is word ``t`` of the answer list shuffled by
    ``random.Random(TASK_SEED)``, the same on every machine. ``train``: ids
    0-1779; ``test``: 1780-2225 (different words).

    ## Expert

    A greedy solver (:mod:`palaestra.envs.wordle.solver`): it keeps the answers
    consistent with the feedback so far and guesses the word of the full guess
    list that minimises the expected number left, opening with ``raise``. It
    solves every answer within 5 tries (3.48 on average).

    ## Source and licence

    Word lists made once by ``tools/make_wordle_words.py`` from SCOWL (Kevin
    Atkinson; Debian's ``wamerican`` and ``wamerican-huge`` 2020.12.07), under
    SCOWL's permissive MIT-like licence, reproduced in this package's
    ``LICENSE.txt``. Guesses: every lowercase a-z 5-letter word of SCOWL size
    70. Answers: the SCOWL size-50 words that are common by ``wordfreq``'s
    frequencies (Zipf >= 2.5), without regular plurals and past tenses, slurs,
    abbreviations and words mostly used as names. Nothing is downloaded at run
    time.
    """

    instruction: ClassVar[str] = (
        "You are playing Wordle. A secret English word of 5 letters has been chosen; "
        "find it in at most 6 guesses. Each guess must be a real 5-letter English word. "
        "After each guess every letter of it is marked:\n"
        "  green: the letter is in the word at this position;\n"
        "  yellow: the letter is in the word, but at another position;\n"
        "  gray: the letter is not in the word.\n"
        "A letter you use more often than the word holds it is marked green or yellow "
        "only as many times as the word holds it (greens first, then yellows from the "
        "left); its extra copies are gray.\n"
        "Feedback looks like: CRANE -> C:gray R:green A:gray N:yellow E:green\n"
        "A guess that is not a known 5-letter word is rejected and does not cost a try.\n"
        "Reply with exactly one action: guess WORD (for example: guess crane)"
    )
    max_steps: ClassVar[int] = MAX_STEPS
    fast_calls: ClassVar[bool] = True  # pure Python, microseconds per guess
    splits: ClassVar[dict[str, range]] = {"train": TRAIN_TASKS, "test": TEST_TASKS}

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        self._answer = ""
        self._history: list[tuple[str, int]] = []

    # -- the episode ---------------------------------------------------------------

    def start(self, task_id: TaskId) -> str:
        """Pick task ``task_id``'s secret word."""
        self._answer = _TASK_WORDS[int(task_id)]
        self._history = []
        return f"A secret 5-letter word has been chosen. You have {MAX_TRIES} tries. {_HELP}"

    def act(self, action: str) -> Outcome:
        """Mark one guess, or reject it without costing a try."""
        word, problem = _parse(action)
        if problem is not None:
            tries = MAX_TRIES - len(self._history)
            return Outcome(
                f"{problem} This did not cost a try; {tries} tries left. {_HELP}",
                score=self._progress(),
                info={"valid": False},
                invalid=True,
            )
        code = encode(feedback(word, self._answer))
        self._history.append((word, code))
        line = _describe(word, code)
        info = {"valid": True, "feedback": line}
        if code == ALL_GREEN:
            tries = len(self._history)
            return Outcome(
                f"{line}\nSolved in {tries} of {MAX_TRIES} tries: "
                f"the word is {self._answer.upper()}.",
                reward=1.0,
                done=True,
                success=True,
                score=1.0,
                info=info,
            )
        if len(self._history) >= MAX_TRIES:
            return Outcome(
                f"{line}\nOut of tries: the word was {self._answer.upper()}.",
                done=True,
                score=self._progress(),
                info=info,
            )
        return Outcome(f"{line}\n{self._board()}", score=self._progress(), info=info)

    # -- capabilities ----------------------------------------------------------------

    def expert_action(self) -> str:
        """The greedy solver's next guess, from the feedback so far."""
        return f"guess {best_guess(self._history)}"

    def random_action(self, rng: np.random.Generator) -> str:
        """``guess WORD``, WORD drawn uniformly from the 11,392 accepted guesses by ``rng``."""
        words = guesses()
        return f"guess {words[int(rng.integers(len(words)))]}"

    def get_state(self) -> dict[str, Any]:
        """The secret word and the guesses so far with their feedback codes."""
        return {"answer": self._answer, "history": [list(pair) for pair in self._history]}

    def set_state(self, state: dict[str, Any]) -> None:
        """Load a state from :meth:`get_state`."""
        self._answer = str(state["answer"])
        self._history = [(str(word), int(code)) for word, code in state["history"]]

    # -- helpers -------------------------------------------------------------------

    def _progress(self) -> float:
        """The most greens of any one guess, over 5 (the score of an unsolved end)."""
        greens = (sum(m == GREEN for m in decode(code)) for _, code in self._history)
        return max(greens, default=0) / WORD_LENGTH

    def _board(self) -> str:
        """All guesses so far, what they tell, and the tries left."""
        known = ["_"] * WORD_LENGTH
        present: set[str] = set()
        absent: set[str] = set()
        for word, code in self._history:
            marks = decode(code)
            for i, (letter, mark) in enumerate(zip(word, marks, strict=True)):
                if mark == GREEN:
                    known[i] = letter.upper()
            for letter in set(word):
                # All copies gray: the word has none; any copy marked: it has one.
                copies = [m for w, m in zip(word, marks, strict=True) if w == letter]
                (absent if all(m == GRAY for m in copies) else present).add(letter.upper())
        lines = [f"Guesses so far ({len(self._history)} of {MAX_TRIES}):"]
        lines += [f"{n}. {_describe(w, c)}" for n, (w, c) in enumerate(self._history, 1)]
        lines.append(f"Known positions: {' '.join(known)}")
        lines.append(f"In the word: {' '.join(sorted(present)) or 'none known yet'}")
        lines.append(f"Not in the word: {' '.join(sorted(absent)) or 'none known yet'}")
        lines.append(f"{MAX_TRIES - len(self._history)} tries left. {_HELP}")
        return "\n".join(lines)


def _describe(word: str, code: int) -> str:
    """``CRANE -> C:gray R:green ...`` for one guess."""
    pairs = zip(word.upper(), decode(code), strict=True)
    return f"{word.upper()} -> " + " ".join(f"{letter}:{MARK_NAMES[m]}" for letter, m in pairs)


def _parse(action: str) -> tuple[str, str | None]:
    """The guessed word, or ``("", why it is rejected)``."""
    text = action.strip().lower()
    prefixed = re.match(r"guess(?:\s*:\s*|\s+)(.*)", text, re.DOTALL)
    if prefixed:
        text = prefixed.group(1)
    text = text.strip(_QUOTES).rstrip(".!").strip(_QUOTES)
    shown = echo_action(action)
    if not text or any(ch.isspace() for ch in text):
        return "", f"Could not read a guess in '{shown}'."
    if not (text.isascii() and text.isalpha()):
        return "", f"'{shown}' is not a valid guess: use the letters a-z only."
    if len(text) != WORD_LENGTH:
        return "", f"'{shown}' is not a valid guess: it has {len(text)} letters, not {WORD_LENGTH}."
    if text not in guess_set():
        return "", f"'{text.upper()}' is not in the word list."
    return text, None
