"""A running server keeps what it loaded before serving out of the garbage collector's walks.

A full collection stops the event loop, so every session, for as long as it walks
the heap; the ~100k objects of the imported modules made that ~100 ms on a 2-core
machine, the p99 of BabyAI at 64 sessions (``bench/server_throughput.py``).
"""

from __future__ import annotations

import gc

import palaestra


def test_a_server_freezes_what_it_loaded_and_unfreezes_when_it_stops(serve):
    with serve(["palaestra/Maze-v0"]) as url:
        frozen = gc.get_freeze_count()
        env = palaestra.make("palaestra/Maze-v0", base_url=url)
        env.reset(options={"task_id": 0})
        env.step("move up")
        env.close()
    assert frozen > 10_000  # the modules, classes and app loaded at start
    assert gc.get_freeze_count() == 0  # a process that outlives its server collects as usual
