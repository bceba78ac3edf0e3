"""Small envs for testing the machinery: a counter that can fail, stall or be slow."""

from __future__ import annotations

import threading
import time

from palaestra.envs import Outcome, TextEnv, ToolEnv, register, tool, tool_call_action


class Counter(TextEnv):
    """Count to three with `inc`; `boom` raises, `sleep` stalls for a second; others are invalid."""

    instruction = "Say `inc` three times."
    max_steps = 5
    splits = {"train": range(0, 10), "test": range(10, 12)}

    active = 0  # steps running at once, across instances (to catch interleaving)
    overlap_seen = False
    _lock = threading.Lock()

    def start(self, task_id: int) -> str:
        self.count = 0
        self.noise = int(self.np_random.integers(1000))
        return f"task {task_id}, noise {self.noise}, count 0"

    def act(self, action: str) -> Outcome:
        with Counter._lock:
            Counter.active += 1
            if Counter.active > 1:
                Counter.overlap_seen = True
        try:
            if action == "boom":
                raise RuntimeError("the counter exploded")
            if action.startswith("sleep"):
                time.sleep(float(action.split()[1]) if " " in action else 1.0)
            if action == "inc":
                self.count += 1
            won = self.count >= 3
            known = action in ("inc", "boom") or action.startswith("sleep")
            return Outcome(
                f"count {self.count}", reward=float(won), done=won, success=won, invalid=not known
            )
        finally:
            with Counter._lock:
                Counter.active -= 1

    def expert_action(self) -> str:
        return "inc"


register("toy/Counter-v0", Counter)


class Tally(ToolEnv):
    """Reach a target total with tools: `add` a number, `total` to read it, `finish` to stop."""

    instruction = "Make the total equal the target with add, then call finish."
    max_steps = 8
    splits = {"train": range(0, 20), "test": range(20, 25)}

    def start(self, task_id: int) -> str:
        self.world = {"total": 0, "target": task_id % 5 + 3, "finished": False}
        return f"Target: {self.world['target']}. The total is 0."

    @tool(
        "Add a number (1 to 5) to the total.",
        {"n": {"type": "integer", "minimum": 1, "maximum": 5}},
    )
    def add(self, n: int) -> dict[str, int]:
        self.world["total"] += n
        return {"total": self.world["total"]}

    @tool("Read the total.", {})
    def total(self) -> str:
        return f"The total is {self.world['total']}."

    @tool("End the episode.", {})
    def finish(self) -> Outcome:
        return self.end_episode("Finished.")

    def subgoals(self) -> list[bool]:
        return [self.world["total"] >= 3, self.world["total"] == self.world["target"]]

    def expert_action(self) -> str:
        left = self.world["target"] - self.world["total"]
        if left > 0:
            return tool_call_action("add", {"n": min(left, 5)})
        return tool_call_action("finish")


register("toy/Tally-v0", Tally)
