"""A third-party env package, found by palaestra only through its entry point."""

import re

from palaestra.envs import Outcome, TextEnv


class Coins(TextEnv):
    """Take 1-3 coins in turn with a greedy opponent; whoever takes the last coin wins."""

    instruction = "We take turns removing 1-3 coins. Take the last coin to win. Say `take N`."
    max_steps = 20
    splits = {"train": [n for n in range(5, 40) if n % 4], "test": [41, 42, 43, 45, 46, 47]}

    def start(self, task_id: int) -> str:
        self.coins = task_id
        return f"There are {self.coins} coins."

    def act(self, action: str) -> Outcome:
        match = re.fullmatch(r"\s*take\s+([123])\s*", action.lower())
        if not match or int(match[1]) > self.coins:
            reply = f"Say `take 1`, `take 2` or `take 3` (at most {self.coins})."
            return Outcome(reply, invalid=not match)
        self.coins -= int(match[1])
        if self.coins == 0:
            return Outcome("You took the last coin and win!", reward=1.0, done=True, success=True)
        self.coins -= (theirs := min(3, self.coins))
        if self.coins == 0:
            return Outcome(f"I take {theirs} and win.", done=True)
        return Outcome(f"I take {theirs}. There are {self.coins} coins.")

    def expert_action(self) -> str:
        return f"take {self.coins % 4 or 1}"

    def get_state(self) -> int:
        return self.coins

    def set_state(self, state: int) -> None:
        self.coins = state
