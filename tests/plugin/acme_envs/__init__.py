"""A third-party env package, found by palaestra only through its entry point.

Below is the README's "Write your own env" example, verbatim: tests/test_readme_env.py
checks that the two stay the same.
"""

from palaestra.envs import Outcome, TextEnv


class Coins(TextEnv):
    """Take 1-3 coins in turn with a greedy opponent; whoever takes the last coin wins.

    ## Observation

    The coins left, after what the opponent took.

    ## Actions

    ``take 1``, ``take 2`` or ``take 3``, at most the coins left (listed in
    ``info["available_actions"]``); anything else is invalid and changes nothing.

    ## Reward, score and success

    Reward 1.0, success and score 1.0 for taking the last coin; a loss scores
    the share of the coins you took.

    ## Splits

    Task id = coins at the start: ``train`` 5-39, ``test`` 41-47 (no multiples of 4).

    ## Max steps

    20.
    """

    instruction = "We take turns removing 1-3 coins. Take the last coin to win. Say `take N`."
    max_steps = 20
    splits = {"train": [n for n in range(5, 40) if n % 4], "test": [41, 42, 43, 45, 46, 47]}
    fast_calls = True  # pure computation: a server steps it on its event loop

    def start(self, task_id: int) -> str:  # the first observation
        self.coins, self.mine = task_id, 0
        return f"There are {self.coins} coins."

    def act(self, action: str) -> Outcome:  # what one action does
        action = " ".join(action.lower().split())
        if action not in self.available_actions():  # not a move of this world: change nothing
            reply = f"Say `take 1`, `take 2` or `take 3` (at most {self.coins})."
            return Outcome(reply, invalid=True)
        self.coins -= int(action[-1])
        self.mine += int(action[-1])
        if self.coins == 0:
            return Outcome("You took the last coin and win!", reward=1.0, done=True, success=True)
        self.coins -= (theirs := min(3, self.coins))
        if self.coins == 0:
            return Outcome(f"I take {theirs} and win.", done=True, score=self.mine / self.task_id)
        return Outcome(f"I take {theirs}. There are {self.coins} coins.")

    def available_actions(self) -> list[str]:  # optional: in info, and gives random_action
        return [f"take {n}" for n in range(1, min(3, self.coins) + 1)]

    def expert_action(self) -> str:  # optional: a scripted solver
        return f"take {self.coins % 4 or 1}"

    def get_state(self) -> tuple[int, int]:  # optional: snapshot/restore
        return self.coins, self.mine

    def set_state(self, state: tuple[int, int]) -> None:
        self.coins, self.mine = state
