"""Small envs for testing the machinery: a counter that can fail, stall or be slow."""

from __future__ import annotations

import threading
import time

from palaestra.envs import Outcome, TextEnv, register


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
