"""``palaestra/ALFWorld-v0``: ALFWorld's household games, where its package and data exist."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from palaestra.envs.core import Outcome, TaskId, TextEnv

__all__ = ["DATA_ENV", "SPLIT_FOLDERS", "ALFWorldEnv", "data_root"]

DATA_ENV = "ALFWORLD_DATA"
"""The env variable naming ALFWorld's data folder (as the ``alfworld`` package reads it)."""

SPLIT_FOLDERS: dict[str, str] = {"train": "train", "test": "valid_unseen", "valid": "valid_seen"}
"""palaestra split -> ALFWorld's folder under ``json_2.1.1``."""

_GAME_FILE = "game.tw-pddl"
_WELCOME = re.compile(r"^-= Welcome to TextWorld, ALFRED! =-\s*")


def data_root() -> Path:
    """ALFWorld's data folder: ``$ALFWORLD_DATA``, else ``~/.cache/alfworld`` (its default)."""
    return Path(os.environ.get(DATA_ENV) or "~/.cache/alfworld").expanduser()


def _games_folder(root: Path) -> Path:
    return root / "json_2.1.1"


def _has_game(root: Path, folder: str) -> bool:
    """Whether ``folder`` holds at least one game; stops at the first (cheap)."""
    return next(_games_folder(root).joinpath(folder).glob(f"*/*/{_GAME_FILE}"), None) is not None


@functools.lru_cache(maxsize=8)
def _list_games(root: Path, folder: str) -> tuple[str, ...]:
    """The playable games of one ALFWorld folder, as ids ``"<folder>/<task>/<trial>"``.

    As ``alfworld`` itself does: skips movable-receptacle and sliced-object tasks
    and games marked unsolvable.
    """
    base = _games_folder(root)
    ids = []
    for game in sorted(base.joinpath(folder).glob(f"*/*/{_GAME_FILE}")):
        task_id = game.parent.relative_to(base).as_posix()
        if "movable" in task_id or "Sliced" in task_id or not _solvable(game):
            continue
        ids.append(task_id)
    return tuple(ids)


def _solvable(game: Path) -> bool:
    # The flag is the file's last key: read the tail, not the whole (large) file.
    with open(game, "rb") as handle:
        handle.seek(max(0, game.stat().st_size - 200))
        tail = handle.read().decode("utf-8", "replace")
    if '"solvable": true' in tail:
        return True
    if '"solvable": false' in tail:
        return False
    return bool(json.loads(game.read_text()).get("solvable", False))


class _Splits(Mapping[str, Sequence[str]]):
    """The task ids per split, listed from the data folder on first use (empty without data)."""

    def __getitem__(self, split: str) -> Sequence[str]:
        return _list_games(data_root(), SPLIT_FOLDERS[split])

    def __iter__(self) -> Iterator[str]:
        return iter(SPLIT_FOLDERS)

    def __len__(self) -> int:
        return len(SPLIT_FOLDERS)


class ALFWorldEnv(TextEnv):
    """ALFWorld: household tasks in ALFRED's kitchens, bedrooms and bathrooms, as text games.

    Available only where the ``alfworld`` package is installed and its game data
    downloaded (``alfworld-download``) into ``$ALFWORLD_DATA`` (default
    ``~/.cache/alfworld``). Elsewhere ``palaestra/TextWorld-v0``, whose games are
    generated locally, stands in for it.

    ## Observation

    ALFWorld's text: the first observation describes the room and ends with the
    task ("Your task is to: put a clean mug in coffeemachine."); later ones say
    what the action did ("Nothing happens." for an invalid one).
    ``info["available_actions"]`` lists the admissible commands.

    ## Actions

    One command per step: ``go to countertop 1``, ``open fridge 1``, ``take mug 1
    from countertop 1``, ``move mug 1 to coffeemachine 1``, ``heat X with
    microwave 1``, ``cool X with fridge 1``, ``clean X with sinkbasin 1``, ``use
    desklamp 1``, ``examine X``, ``inventory``, ``look``. The game carries out
    exactly its admissible commands (``look``, ``inventory`` and ``examine X``
    among them) and answers any other with "Nothing happens.", changing
    nothing: ``info["invalid_action"]`` is True for those, the empty command
    included. ``random_action`` draws one of the admissible commands.

    ## Reward, score and success

    Reward 1.0 on the step that completes the task, which ends the episode with
    success and score 1.0; 0.0 otherwise. Truncation scores 0.0.

    ## Splits

    Task ids are the games' folders under ``json_2.1.1``: ``train`` is ALFWorld's
    training set (3,553 games in the standard download), ``test`` its
    out-of-distribution evaluation set ``valid_unseen`` (134), ``valid`` its
    in-distribution one ``valid_seen`` (140).

    ## Max steps

    50, as in ALFWorld's own evaluations.

    ## Expert

    ALFWorld's hand-coded expert (``AlfredExpertType.HANDCODED``), which replans
    from what it observes. No snapshot: the framework falls back to replay.

    ## Source

    ALFWorld (https://github.com/alfworld/alfworld, MIT licence), built on TextWorld
    (MIT, Microsoft) and ALFRED's scenes; the data is downloaded by ``alfworld``.
    """

    instruction: ClassVar[str] = (
        "You are in a household (kitchen, bedroom, bathroom or living room) and must "
        "carry out the task given at the end of the first observation. Each turn, type "
        "one command: go to X, open X, close X, take X from Y, move X to Y, heat X with "
        "Y, cool X with Y, clean X with Y, slice X with Y, use X, examine X, inventory, "
        "look. Objects are named as in the text, with their numbers (e.g. 'go to "
        "countertop 1', 'take mug 2 from countertop 1'). Reply with exactly one command."
    )
    max_steps: ClassVar[int] = 50
    splits: ClassVar[Mapping[str, Sequence[str]]] = _Splits()

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        self._env: Any = None
        self._state: Any = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """What is missing: the ``alfworld`` package, its game data, or both.

        Looks only at the file system (never calls into ``alfworld``, which loops
        forever when it finds no games).
        """
        missing = []
        if importlib.util.find_spec("alfworld") is None:
            missing.append("the 'alfworld' package (pip install alfworld)")
        root = data_root()
        folders = [SPLIT_FOLDERS["train"], SPLIT_FOLDERS["test"]]
        empty = [folder for folder in folders if not _has_game(root, folder)]
        if empty:
            where = ", ".join(f"json_2.1.1/{folder}/*/*/{_GAME_FILE}" for folder in empty)
            missing.append(
                f"its game data: no {where} under {root} (run `alfworld-download`, "
                f"or set {DATA_ENV} to the folder it downloaded to)"
            )
        if not missing:
            return None
        return "ALFWorld needs " + " and ".join(missing)

    # -- the episode ---------------------------------------------------------------

    def start(self, task_id: TaskId) -> str:
        """Load ALFWorld game ``task_id`` and return its opening text."""
        import textworld
        from alfworld.agents.environment.alfred_tw_env import (
            AlfredDemangler,
            AlfredExpert,
            AlfredExpertType,
        )

        self.close()
        infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["expert_plan"])
        game = _games_folder(data_root()) / str(task_id) / _GAME_FILE
        wrappers = [AlfredDemangler(), AlfredExpert(expert_type=AlfredExpertType.HANDCODED)]
        self._env = textworld.start(str(game), infos, wrappers=wrappers)
        self._state = self._env.reset()
        return _WELCOME.sub("", str(self._state["feedback"])).strip()

    def act(self, action: str) -> Outcome:
        """Send ``action`` to the game.

        The command is invalid when it is not one of the admissible commands:
        TextWorld's PDDL engine, which plays ALFWorld's games, carries out exactly
        those and answers anything else with "Nothing happens." and no change.
        """
        env = self._require_env()
        command = " ".join(action.split())
        invalid = command not in self._state["admissible_commands"]
        self._state, _, _ = env.step(command)
        won = bool(self._state["won"])
        text = str(self._state["feedback"]).strip() or "Nothing happens."
        return Outcome(
            text, reward=float(won), done=won, success=won, score=float(won), invalid=invalid
        )

    # -- capabilities ----------------------------------------------------------------

    def available_actions(self) -> list[str]:
        """ALFWorld's admissible commands now."""
        self._require_env()
        return [str(command) for command in self._state["admissible_commands"]]

    def expert_action(self) -> str:
        """The hand-coded expert's next command (``look`` when it has none)."""
        self._require_env()
        plan = self._state.get("extra.expert_plan") or ["look"]
        return str(plan[0])

    def close(self) -> None:
        """Close the running game, if any."""
        if self._env is not None:
            self._env.close()
        self._env = None
        self._state = None
        super().close()

    def _require_env(self) -> Any:
        if self._env is None:
            raise RuntimeError("call reset() first")
        return self._env
