"""The expert: minigrid's BabyAI bot, kept in step with an episode the agent drives.

``BabyAIBot`` is a planner with memory (what it has seen, a stack of subgoals).
It is meant to be asked once per primitive step, told which action was really
taken (its "advising" mode). :class:`Expert` asks it only when someone wants
an expert action, so episodes that never ask pay nothing:

- exactly one primitive action since the last question: the bot is told that
  action (its own suggestion, or another one it then plans around);
- none: the last answer still holds;
- several (a ``go to`` action, or steps taken without asking): a new bot is
  built on the current state. It has not seen the world yet, so it explores
  again, and if the agent carries something it first puts it down (the bot
  assumes empty hands when it plans a pickup).

When the bot considers the mission done but minigrid has not checked it yet (an
episode that starts facing its ``go to`` target), the expert answers ``drop``
onto the occupied cell ahead: a no-op, like minigrid's ``done``, after which
minigrid's verifier sees the mission met.

The bot is third-party code with known failure modes: where it cannot find a
way (``UnlockToUnlock`` on about a quarter of the seeds; levels minigrid made
impossible, see :func:`~palaestra.envs.babyai.levels.reset_to_task`) its
replanning never ends, and unusual states trip its assertions. The subgoal
stack is therefore bounded per question. On any failure a new bot gets one more
try from the current state; if that one fails too, the expert answers ``turn
left`` (harmless; the next question tries again). ``Expert.failures`` counts
the bots lost.
"""

from __future__ import annotations

from minigrid.core.actions import Actions
from minigrid.envs.babyai.core.roomgrid_level import RoomGridLevel
from minigrid.utils.baby_ai_bot import BabyAIBot, DropSubgoal, GoNextToSubgoal

__all__ = ["PLAN_BUDGET", "BotStuckError", "Expert"]

PLAN_BUDGET = 200
"""Subgoals one question may push; the bot's real plans push a few dozen at most."""


class BotStuckError(RuntimeError):
    """The bot kept replanning without settling on an action."""


class _BoundedStack(list):
    """The bot's subgoal stack, refusing to grow past a budget while it answers a question."""

    # Set for the length of one replan, None otherwise: copying a stack (a snapshot,
    # a restore) appends its items one by one and must not spend any budget.
    budget: int | None = None

    def append(self, item: object) -> None:
        if self.budget is not None:
            self.budget -= 1
            if self.budget < 0:
                raise BotStuckError("the BabyAI bot is replanning in a loop")
        super().append(item)


class _Bot(BabyAIBot):
    def __init__(self, world: RoomGridLevel) -> None:
        super().__init__(world)
        self.stack = _BoundedStack(self.stack)
        if world.carrying is not None:
            # Built mid-episode with full hands: put the object down first.
            self._process_obs()
            drop = self._find_drop_pos()
            if drop is not None:
                self.stack.append(DropSubgoal(self))
                self.stack.append(GoNextToSubgoal(self, drop))

    def replan(self, action_taken: Actions | None = None) -> Actions:
        self.stack.budget = PLAN_BUDGET
        try:
            return super().replan(action_taken)
        finally:
            self.stack.budget = None


class Expert:
    """Answers "what would the BabyAI bot do now?" for one episode.

    Call :meth:`record` after every primitive action sent to the world and
    :meth:`action` whenever an expert action is wanted. The whole object is
    part of the env's snapshot (it holds the bot, which holds the world).
    """

    def __init__(self) -> None:
        self.bot: _Bot | None = None
        self.pending: list[Actions] = []
        self.suggestion: Actions | None = None
        self.failures = 0

    def record(self, action: Actions) -> None:
        """Note a primitive action just applied to the world."""
        if len(self.pending) < 2:  # beyond one, only "several" matters
            self.pending.append(action)

    def action(self, world: RoomGridLevel) -> Actions:
        """The bot's next primitive action on ``world`` (never ``done``)."""
        if self.suggestion is not None and not self.pending:
            return self.suggestion
        taken: Actions | None = None
        if self.bot is not None and len(self.pending) == 1:
            taken = self.pending[0]
            if taken == self.suggestion:
                taken = None  # the bot's own advice: plain replanning
        else:
            self.bot = None
        self.pending.clear()
        self.suggestion = self._replan(world, taken)
        return self.suggestion

    def _replan(self, world: RoomGridLevel, taken: Actions | None) -> Actions:
        for _ in range(2):
            try:
                if self.bot is None:
                    self.bot = _Bot(world)
                suggestion = self.bot.replan(taken)
            # Third-party planner: assertions, a box opened under it, a loop, or a
            # None position deep in its search all mean "this bot is lost".
            except Exception:
                suggestion = Actions.done
            else:
                if suggestion == Actions.done and world.grid.get(*world.front_pos) is not None:
                    # The bot's "mission done" before minigrid checked it (a start that
                    # already faces the target): a drop onto a full cell changes nothing,
                    # like minigrid's no-op done, and lets the verifier see it.
                    return Actions.drop
            if suggestion != Actions.done:
                return Actions(suggestion)
            # Lost, or "done" with the mission unfinished: start over from what is seen now.
            self.bot, taken = None, None
            self.failures += 1
        return Actions.left
