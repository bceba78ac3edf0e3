"""Playing one compiled TextWorld game: the Z-machine plus TextWorld's own state tracking.

TextWorld compiles each game twice over: an Inform 7 story (``game.z8``, run here
by jericho's Frotz) that writes every observation, and a logic model
(``game.json``) that knows the quest, the valid actions and a winning policy.
:class:`Engine` keeps the two in step the way ``textworld.start`` does (the game
prints Inform 7's action events, and each one is applied to a
``GameProgression``), but with all the state in one place, so that it can be
copied exactly: the Z-machine's memory, stack and random generator, the
progression, and the points.
"""

from __future__ import annotations

import functools
import re
import string
import threading
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jericho
import textworld
from textworld.envs.wrappers.tw_inform7 import (
    _detect_extra_infos,
    _detect_i7_events_debug_tags,
)
from textworld.generator.game import Game, GameProgression
from textworld.generator.inform7 import Inform7Game

__all__ = [
    "MAX_COMMAND_LENGTH",
    "CompiledGame",
    "Engine",
    "EngineState",
    "Turn",
    "clean_text",
    "load_compiled",
    "parser_understood",
]

STORY_FILE = "game.z8"
LOGIC_FILE = "game.json"

MAX_COMMAND_LENGTH = 120
"""Longer commands are cut (Inform's parser reads about this many characters)."""

# Frotz seeds its random generator from the clock when given 0 or -1 (jericho maps
# 0 to -1); any other value makes the Z-machine's randomness repeatable.
_FROTZ_SEED = 20180601

# Commands that would desynchronise the Z-machine from the logic model (undo,
# restart, restore), end the program (quit), touch files (save, script), or are
# TextWorld's own debugging hooks (they print the hidden state or switch off
# the event tracing this module relies on).
_META_VERBS = frozenset(
    "undo restart restore save quit q script unscript transcript noscript verify".split()
)
_HIDDEN_COMMANDS = (
    "tw-",
    "print_state",
    "enable print state option",
    "disable print state option",
    "restrict commands",
)
_META_REPLY = (
    "That command is not available in this game: save, restore, undo, restart and quit "
    "are disabled. Type 'help' to list the commands."
)
_ONE_AT_A_TIME_REPLY = "Please type one command at a time (without '.', ';' or 'then')."

_PRINTABLE = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")
_BANNER_CHARS = frozenset(" _|\\/$<>")
_END_PROMPT = "Would you like to RESTART, RESTORE a saved game, QUIT or UNDO the last command?"
_BLANK_RUNS = re.compile(r"\n{3,}")
_CHAINED = re.compile(r"[.;]|\bthen\b")
# An action traced by `tw-trace-actions`: "[taking the apple]" alone on its line.
_ACTION_TAG = re.compile(r"^[ \t]*\[[^\]\n]+\][ \t]*$", re.MULTILINE)
# Inform 7's disambiguation questions (parser clarification responses A and B).
_WHICH = ("Which do you mean", "Who do you mean")


@dataclass(frozen=True, eq=False)
class CompiledGame:
    """A compiled game and its logic model, loaded once per process and shared.

    Attributes:
        directory: The folder that holds ``game.z8`` and ``game.json``.
        game: TextWorld's logic model of the game (never mutated).
        inform7: Turns logic actions into commands and Inform 7 events into actions.
        max_points: The most points the game awards.
    """

    directory: Path
    game: Game
    inform7: Inform7Game
    max_points: int

    @property
    def story_file(self) -> Path:
        """The compiled Inform 7 story (``game.z8``)."""
        return self.directory / STORY_FILE

    @functools.cached_property
    def initial_progression(self) -> GameProgression:
        """The quest progression at the start (shared, never mutated: engines copy it first)."""
        return GameProgression(self.game)

    @classmethod
    def load(cls, directory: str | Path) -> CompiledGame:
        """Load the game compiled in ``directory`` (:func:`load_compiled` caches this)."""
        directory = Path(directory)
        game = Game.load(str(directory / LOGIC_FILE))
        return cls(
            directory=directory,
            game=game,
            inform7=Inform7Game(game),
            max_points=int(game.max_score),
        )


def load_compiled(directory: str | Path) -> CompiledGame:
    """Load (once per process, the 64 most recent kept) the game compiled in ``directory``.

    The first game of a kind takes a few tenths of a second (TextWorld parses its
    rule base); later ones a few milliseconds.
    """
    return _load_compiled(str(Path(directory).resolve()))


# TextWorld parses a game's logic with one module-level tatsu parser
# (textworld.logic._PARSER) that keeps its parse state on itself: two games loaded
# at once by two threads (a server's sessions) corrupt each other's parse
# ("IndexError: pop from empty list", "FailedLeftRecursion", "'NoneType' object ...").
# Loading is the only thing that parses (playing, the expert and the admissible
# commands read the loaded model), so loads take this lock and play does not.
_LOAD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=64)
def _load_compiled(path: str) -> CompiledGame:
    with _LOAD_LOCK:
        return CompiledGame.load(path)


@dataclass(frozen=True)
class Turn:
    """What one command did.

    Attributes:
        text: The game's answer, cleaned (see :func:`clean_text`).
        points: Points gained by this command.
        won: The quest was completed (the game ended with ``*** The End ***``).
        lost: The game ended in defeat (``*** You lost! ***``).
        understood: The game's parser made an action of the command (see
            :meth:`Engine.step`); False for a parser error ("That's not a verb I
            recognise.", "You can't see any such thing.", "I beg your pardon?",
            "What do you want to take?", ...) and for the commands refused here.
    """

    text: str
    points: int = 0
    won: bool = False
    lost: bool = False
    understood: bool = True


@dataclass(frozen=True, eq=False)
class EngineState:
    """An exact copy of a running game, made by :meth:`Engine.get_state`.

    Immutable by contract: an engine shares its progression with the states it
    makes or loads, and copies it before changing it (copy on write: a quest
    progression takes up to tens of milliseconds to copy, and most snapshots in a
    search are restored, or dropped, before the game changes). So one state
    restores any number of times, and ``deepcopy`` returns it as is (a deep copy
    would also clone the game's large, shared, never mutated logic model).
    """

    compiled: CompiledGame
    frotz: tuple[Any, ...]
    progression: GameProgression
    points: int

    def __deepcopy__(self, memo: dict[int, Any]) -> EngineState:
        return self


class Engine:
    """One TextWorld game being played, with its state exposed for copying.

    Call :meth:`start` with a :class:`CompiledGame`, then :meth:`step` with
    commands. :meth:`admissible_commands` and :meth:`policy_commands` read
    TextWorld's logic model of the current state.
    """

    def __init__(self) -> None:
        self._frotz: jericho.FrotzEnv | None = None
        self._frotz_story: Path | None = None
        self._compiled: CompiledGame | None = None
        self._progression: GameProgression | None = None
        self._shared = False  # whether an EngineState holds self._progression too
        self._points = 0

    @property
    def compiled(self) -> CompiledGame:
        """The game being played.

        Raises:
            RuntimeError: No game was started.
        """
        if self._compiled is None:
            raise RuntimeError("start() a game first")
        return self._compiled

    @property
    def points(self) -> int:
        """Points scored so far."""
        return self._points

    def start(self, compiled: CompiledGame) -> str:
        """Start ``compiled`` from its beginning; returns the opening text, cleaned."""
        frotz = self._load_story(compiled)
        intro, _ = frotz.reset()
        # Make the game print its score every turn and the Inform 7 action events
        # that the logic model follows (as textworld.start does); neither counts
        # as a turn.
        frotz.step("tw-extra-infos score")
        frotz.step("tw-trace-actions")
        self._compiled = compiled
        self._progression = compiled.initial_progression
        self._shared = True
        self._points = 0
        return clean_text(intro)

    def step(self, command: str) -> Turn:
        """Send one command to the game and follow what it did.

        ``Turn.understood`` says whether the parser made an action of the command
        (:func:`parser_understood`); the commands refused here are not understood.
        """
        compiled, progression = self.compiled, self._require_progression()
        command = normalize_command(command)
        lowered = command.lower()
        words = lowered.split()
        if words and (words[0] in _META_VERBS or lowered.startswith(_HIDDEN_COMMANDS)):
            return Turn(_META_REPLY, understood=False)
        if _CHAINED.search(lowered.rstrip(".! ")):
            return Turn(_ONE_AT_A_TIME_REPLY, understood=False)
        raw, _, _, _ = self._require_frotz().step(command)
        understood = parser_understood(raw)
        extras, text = _detect_extra_infos(raw, ["score", "moves"])
        events, text = _detect_i7_events_debug_tags(text)
        for event in events:
            action = compiled.inform7.detect_action(event, progression.valid_actions)
            if action is not None:
                if self._shared:
                    progression = self._progression = progression.copy()
                    self._shared = False
                progression.update(action)
        won = "*** The End ***" in text
        lost = "*** You lost! ***" in text
        points = self._points
        if extras.get("score") is not None:
            points = int(extras["score"].split()[0])
        elif won or lost:
            # The last turn prints its score in the final tally instead.
            tally = re.search(r"You scored (\d+) out of a possible", text)
            points = int(tally.group(1)) if tally else progression.score
        gained, self._points = points - self._points, points
        return Turn(clean_text(text), points=gained, won=won, lost=lost, understood=understood)

    def admissible_commands(self) -> list[str]:
        """The commands that change the game's state now (TextWorld's admissible commands)."""
        compiled, progression = self.compiled, self._require_progression()
        return sorted(set(compiled.inform7.gen_commands_from_actions(progression.valid_actions)))

    def policy_commands(self) -> list[str] | None:
        """Commands that win the game from here, or ``None`` if it can no longer be won."""
        compiled, progression = self.compiled, self._require_progression()
        policy = progression.winning_policy
        if policy is None:
            return None
        return compiled.inform7.gen_commands_from_actions(policy)

    def get_state(self) -> EngineState:
        """An exact copy of the game's state, made in well under a millisecond."""
        state = EngineState(
            compiled=self.compiled,
            frotz=self._require_frotz().get_state(),
            progression=self._require_progression(),
            points=self._points,
        )
        self._shared = True
        return state

    def set_state(self, state: EngineState) -> None:
        """Return to ``state`` (which may belong to another game than the current one)."""
        frotz = self._load_story(state.compiled)
        frotz.set_state(state.frotz)
        self._compiled = state.compiled
        self._progression = state.progression
        self._shared = True
        self._points = state.points

    def close(self) -> None:
        """Free the Z-machine (it holds a private copy of the Frotz library)."""
        if self._frotz is not None:
            self._frotz.close()
        self._frotz = None
        self._frotz_story = None

    # -- helpers ------------------------------------------------------------------

    def _load_story(self, compiled: CompiledGame) -> jericho.FrotzEnv:
        """The Z-machine, loaded with ``compiled``'s story (a new one per story)."""
        if self._frotz is None or self._frotz_story != compiled.story_file:
            # A fresh FrotzEnv per story: reloading one would make it keep every
            # story it ever ran in its private cache.
            self.close()
            with warnings.catch_warnings():
                # TextWorld games are not in jericho's list of known games, which
                # only means jericho's own score detection is off (we read the
                # score the game prints); textworld silences this warning too.
                warnings.simplefilter("ignore", jericho.UnsupportedGameWarning)
                self._frotz = jericho.FrotzEnv(str(compiled.story_file), seed=_FROTZ_SEED)
            self._frotz_story = compiled.story_file
        return self._frotz

    def _require_frotz(self) -> jericho.FrotzEnv:
        if self._frotz is None:
            raise RuntimeError("start() a game first")
        return self._frotz

    def _require_progression(self) -> GameProgression:
        if self._progression is None:
            raise RuntimeError("start() a game first")
        return self._progression


def parser_understood(raw: str) -> bool:
    """Whether Inform 7's parser made an action of the command that printed ``raw``.

    Read from the action trace that ``tw-trace-actions`` turns on: every action
    the parser makes of a command, carried out or not ("You can't go that way."
    is one), prints a ``[going north]``-style tag on a line of its own; a parser
    error (unknown verb, unseen object, missing noun, the empty command) prints
    none. A question asking which of several things is meant ("Which do you
    mean, ...?") counts as understood: the next command answers it.

    Args:
        raw: The game's raw answer, before :func:`clean_text`.
    """
    return bool(_ACTION_TAG.search(raw)) or raw.lstrip().startswith(_WHICH)


def normalize_command(command: str) -> str:
    """``command`` as the game may see it: one line of printable ASCII, at most 120 characters.

    Accents are folded (``ünïcödé`` -> ``unicode``), other non-printable characters
    and backslashes become spaces (Frotz reads bytes: a NUL or a newline would cut
    or split the command, a leading backslash is an interpreter command), runs of
    whitespace are collapsed.
    """
    folded = unicodedata.normalize("NFKD", command).encode("ascii", "ignore").decode("ascii")
    # A backslash opens one of Frotz's own escape commands (e.g. "\\q"): never send one.
    kept = "".join(ch if ch in _PRINTABLE and ch != "\\" else " " for ch in folded)
    return " ".join(kept.split())[:MAX_COMMAND_LENGTH]


def clean_text(text: str) -> str:
    """The game's text without the ASCII-art banner, prompts, status line or blank runs."""
    lines = []
    for line in text.replace("\r", "").split("\n"):
        line = line.rstrip()
        stripped = line.strip()
        if line.startswith(" " * 8):
            line = stripped  # centred text, e.g. "*** The End ***"
        if stripped.startswith(">") or stripped == _END_PROMPT:
            continue  # the prompt (with the status line after it) and the replay question
        if stripped and set(stripped) <= _BANNER_CHARS and set(stripped) & set("$|\\_"):
            continue  # the TEXT WORLD banner
        lines.append(line)
    cleaned = _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()
    return "".join(ch if ch in _PRINTABLE or ch == "\n" else "?" for ch in cleaned)


def textworld_version() -> str:
    """The installed TextWorld version (games depend on it)."""
    return str(textworld.__version__)
