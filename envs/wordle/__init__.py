"""``palaestra/Wordle-v0``: guess a secret 5-letter word from green/yellow/gray feedback.

The word lists ship with this package as ``answers.txt`` (2,226 common words,
the secrets) and ``guesses.txt`` (11,392 accepted guesses, a superset), made
once by ``tools/make_wordle_words.py`` from SCOWL (Kevin Atkinson, via Debian's
``wamerican`` and ``wamerican-huge`` 2020.12.07; permissive MIT-like licence,
its full notice in ``LICENSE.txt``) with answers chosen by ``wordfreq``
frequencies (Robyn Speer; no frequency data is shipped). They are read once per
process; nothing is downloaded.
"""

from palaestra.envs.wordle.env import (
    MAX_STEPS,
    MAX_TRIES,
    TASK_SEED,
    TEST_TASKS,
    TRAIN_TASKS,
    WordleEnv,
)
from palaestra.envs.wordle.solver import OPENING, best_guess, best_opening
from palaestra.envs.wordle.words import answers, decode, encode, feedback, guesses

__all__ = [
    "MAX_STEPS",
    "MAX_TRIES",
    "OPENING",
    "TASK_SEED",
    "TEST_TASKS",
    "TRAIN_TASKS",
    "WordleEnv",
    "answers",
    "best_guess",
    "best_opening",
    "decode",
    "encode",
    "feedback",
    "guesses",
]
