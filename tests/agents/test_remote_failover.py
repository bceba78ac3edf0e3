"""RemoteEnvs over several servers: sessions spread by load, dead servers left behind.

Real servers (threads and killed processes), real episodes: an episode whose
server dies is played again from the start elsewhere, and the run gives exactly
the trajectories of an in-process run.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from palaestra.agents.env_pool import LocalEnvs, RemoteEnvs
from palaestra.agents.policy_spec import make_policy
from palaestra.agents.rollout import EpisodeSpec, RolloutConfig, RolloutEngine
from palaestra.errors import ReplicaLostError, ServerUnavailableError
from palaestra.servers import Settings, create_app, serve_in_thread
from palaestra.servers.local import start_server_process

MAZE = "palaestra/Maze-v0"


def comparable(trajectory):
    """A trajectory without what may differ between two healthy runs (timings)."""
    return {k: v for k, v in dataclasses.asdict(trajectory).items() if k != "timings"}


def specs(n: int) -> list[EpisodeSpec]:
    return [EpisodeSpec(MAZE, task, "test", seed=task) for task in range(3000, 3000 + n)]


def play_in_process(episodes: list[EpisodeSpec]):
    engine = RolloutEngine(make_policy("expert:0.3"), LocalEnvs(), RolloutConfig(seed=5))
    return asyncio.run(engine.run(episodes))


def test_sessions_go_to_the_least_loaded_server(serve):
    with serve([MAZE]) as a, serve([MAZE]) as b:

        async def main():
            pool = RemoteEnvs([a, b])
            try:
                first = [await pool.open(MAZE, 3000 + i, 0, index=0) for i in range(4)]
                # Every open was asked for index 0, yet load (not the index) placed them.
                on = [e._server.url for e in first]
                assert on.count(a) == on.count(b) == 2
                await first[0].close()
                await first[2].close()
                freed = {on[0], on[2]}
                again = await pool.open(MAZE, 3010, 0, index=1)
                if len(freed) == 1:  # both closed on one server: the next one goes there
                    assert again._server.url in freed
                for episode in [*first, again]:
                    await episode.close()
                # Opened at once, eight episodes spread four and four.
                eight = await asyncio.gather(*(pool.open(MAZE, 3000, 0, i) for i in range(8)))
                on = [e._server.url for e in eight]
                assert on.count(a) == on.count(b) == 4
                for episode in eight:
                    await episode.close()
            finally:
                await pool.aclose()

        asyncio.run(main())


@pytest.mark.parametrize("transport", ["websocket", "http"])
def test_an_episode_whose_server_died_raises_replica_lost_and_closes_quietly(transport):
    app = create_app([MAZE], Settings())

    async def main(url: str, stop):
        pool = RemoteEnvs([url], transport=transport)
        try:
            episode = await pool.open(MAZE, 3000, 0, 0)
            await episode.step("move up")
            stop()
            with pytest.raises(ReplicaLostError) as caught:
                await episode.step("move up")
            assert isinstance(caught.value, ServerUnavailableError) and url in str(caught.value)
            # Closing an episode whose server is gone is not an error: the engine closes
            # every episode after its last step, and must keep the finished ones.
            await episode.close()
            assert pool.urls == [] and pool.where == "no live server"
            # With every server dead and no discovery, an open fails at once.
            with pytest.raises(ServerUnavailableError) as refused:
                await pool.open(MAZE, 3000, 0, 0)
            assert not isinstance(refused.value, ReplicaLostError)
        finally:
            await pool.aclose()

    context = serve_in_thread(app)
    url = context.__enter__()
    asyncio.run(main(url, lambda: context.__exit__(None, None, None)))


def test_a_finished_episode_survives_its_server_dying_before_the_close():
    """The close after the last step finds the server gone: the trajectory is kept."""
    app = create_app([MAZE], Settings())
    context = serve_in_thread(app)
    url = context.__enter__()

    class StopAfterLastStep(RemoteEnvs):
        async def open(self, env_id, task_id, seed, index):
            episode = await super().open(env_id, task_id, seed, index)
            step = episode.step

            async def step_then_maybe_stop(action):
                result = await step(action)
                if result.terminated or result.truncated:
                    context.__exit__(None, None, None)
                return result

            episode.step = step_then_maybe_stop
            return episode

    async def main():
        pool = StopAfterLastStep([url])
        try:
            engine = RolloutEngine(make_policy("expert"), pool, RolloutConfig())
            return await engine.run(specs(1)), engine.stats
        finally:
            await pool.aclose()

    [trajectory], stats = asyncio.run(main())
    assert trajectory.success and stats.errors == 0 and stats.restarted == 0


@pytest.mark.slow  # two server processes, one killed mid-run: ~10 s
def test_a_server_killed_mid_run_costs_no_episode_and_changes_no_trajectory(monkeypatch):
    monkeypatch.delenv("PALAESTRA_TOKEN", raising=False)  # the servers inherit our env
    episodes = specs(60)
    expected = play_in_process(episodes)
    (first, url_a), (second, url_b) = (start_server_process([MAZE]) for _ in range(2))
    try:

        def kill_second_after_ten(trajectory):
            finished.append(trajectory)
            if len(finished) == 10:
                second.kill()

        async def main():
            pool = RemoteEnvs([url_a, url_b])
            try:
                engine = RolloutEngine(
                    make_policy("expert:0.3"), pool, RolloutConfig(seed=5), concurrency=8
                )
                return await engine.run(episodes, on_trajectory=kill_second_after_ten), engine
            finally:
                await pool.aclose()

        finished: list = []
        trajectories, engine = asyncio.run(main())
    finally:
        for process in (first, second):
            process.kill()
            process.wait()
    assert engine.stats.errors == 0 and engine.stats.episodes == 60
    # Four of the eight running episodes were on the killed server.
    assert engine.stats.restarted >= 1
    assert [comparable(t) for t in trajectories] == [comparable(t) for t in expected]


def test_discovery_replaces_a_dead_server_with_the_one_it_lists_now(serve):
    """``discover`` is asked again after a death; the replacement takes the episodes."""
    episodes = specs(12)
    expected = play_in_process(episodes)
    app = create_app([MAZE], Settings())
    first = serve_in_thread(app)
    url_a = first.__enter__()
    with serve([MAZE]) as url_b:
        listed = [url_a]
        asked: list[list[str]] = []

        def discover():
            asked.append(list(listed))
            return list(listed)

        def kill_after_four(trajectory):
            done.append(trajectory)
            if len(done) == 4:
                # The first server dies; "its replica comes back" at a new URL.
                first.__exit__(None, None, None)
                listed[:] = [url_b]

        async def main():
            pool = RemoteEnvs(discover=discover)
            try:
                engine = RolloutEngine(
                    make_policy("expert:0.3"), pool, RolloutConfig(seed=5), concurrency=4
                )
                result = await engine.run(episodes, on_trajectory=kill_after_four)
                return result, engine.stats, pool.urls
            finally:
                await pool.aclose()

        done: list = []
        trajectories, stats, urls = asyncio.run(main())
    assert stats.errors == 0 and stats.restarted >= 1
    assert urls == [url_b] and asked[0] == [url_a] and [url_b] in asked
    assert [comparable(t) for t in trajectories] == [comparable(t) for t in expected]


def test_without_urls_or_discovery_the_pool_is_refused():
    with pytest.raises(ValueError, match="discover"):
        RemoteEnvs([])
