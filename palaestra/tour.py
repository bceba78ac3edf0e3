"""``palaestra tour``: start a real server process, let every env's expert play over HTTP.

What it shows: the server, the async client at concurrency, and that the envs'
experts solve their tasks through the wire: Maze and Wordle by default (seconds),
``--envs all`` for every installed env with an expert (minutes: ScienceWorld
starts JVMs, TextWorld generates its games on first use). It prints a table per
env and split and writes it to ``OUT/results.json`` and ``OUT/results.md``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from palaestra.envs import list_envs
from palaestra.files import write_json, write_text
from palaestra.servers import AsyncEnvClient
from palaestra.servers.local import start_server_process

__all__ = ["DEFAULT_ENVS", "EpisodeResult", "run_tour"]

DEFAULT_ENVS = ("palaestra/Maze-v0", "palaestra/Wordle-v0")
"""The envs of a plain ``palaestra tour``: the two whose experts play in seconds."""


@dataclass
class EpisodeResult:
    """One expert episode played over HTTP."""

    env: str
    split: str
    task_id: int | str
    success: bool
    score: float
    turns: int
    seconds: float


async def _play(
    client: AsyncEnvClient, env_id: str, split: str, task_id: int | str
) -> EpisodeResult:
    started = time.perf_counter()
    session = await client.create(env_id, task_id=task_id, seed=0)
    try:
        turns = 0
        while True:
            step = await session.step(await session.expert_action())
            turns += 1
            if step.terminated or step.truncated:
                return EpisodeResult(
                    env_id,
                    split,
                    task_id,
                    bool(step.info["success"]),
                    float(step.info["score"]),
                    turns,
                    time.perf_counter() - started,
                )
    finally:
        await session.close()


async def _play_all(
    url: str, jobs: list[tuple[str, str, int | str]], concurrency: int
) -> list[EpisodeResult]:
    gate = asyncio.Semaphore(concurrency)
    async with AsyncEnvClient(url) as client:

        async def one(job: tuple[str, str, int | str]) -> EpisodeResult:
            async with gate:
                return await _play(client, *job)

        results = []
        with tqdm(total=len(jobs), desc="expert episodes over HTTP", unit="ep") as bar:
            for finished in asyncio.as_completed([one(job) for job in jobs]):
                results.append(await finished)
                bar.update()
        return results


def run_tour(
    env_ids: list[str], episodes: int = 20, concurrency: int = 16, out: str = "runs/tour"
) -> int:
    """Serve ``env_ids``; their experts play ``episodes`` per split over HTTP; print the table.

    ``env_ids == ["all"]`` plays every available env with an expert.

    Returns:
        0 when every expert episode succeeded, else 1.
    """
    from palaestra.tables import format_table

    infos = [
        info
        for info in list_envs()
        if "expert" in info.capabilities
        and info.unavailable is None
        and (env_ids == ["all"] or info.id in env_ids)
    ]
    env_ids = [info.id for info in infos] if env_ids == ["all"] else env_ids
    missing = sorted(set(env_ids) - {info.id for info in infos})
    if missing:
        print(f"error: no available env with an expert named {missing}", file=sys.stderr)
        return 2
    env_ids = [info.id for info in infos]
    print(f"starting a server for {', '.join(env_ids)} ...")
    process, url = start_server_process(env_ids)
    try:
        jobs = []
        for info in infos:
            for split in ("train", "test"):
                ids = info.cls.tasks(split)
                step = max(1, len(ids) // episodes)
                jobs += [(info.id, split, ids[i]) for i in range(0, len(ids), step)][:episodes]
        started = time.perf_counter()
        results = asyncio.run(_play_all(url, jobs, concurrency))
        elapsed = time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=30)

    rows = []
    for info in infos:
        for split in ("train", "test"):
            group = [r for r in results if r.env == info.id and r.split == split]
            if not group:
                continue
            rows.append(
                (
                    info.id,
                    split,
                    len(group),
                    f"{sum(r.success for r in group) / len(group):.0%}",
                    f"{sum(r.score for r in group) / len(group):.2f}",
                    f"{sum(r.turns for r in group) / len(group):.1f}",
                )
            )
    table = format_table(["env", "split", "episodes", "success", "mean score", "mean turns"], rows)
    steps = sum(r.turns for r in results)
    summary = (
        f"{len(results)} expert episodes, {steps} steps over HTTP in {elapsed:.1f}s "
        f"({steps / elapsed:.0f} steps/s incl. expert calls, {concurrency} concurrent sessions)"
    )
    print(f"\n{table}\n\n{summary}")
    path = Path(out)
    write_text(path / "results.md", f"{table}\n\n{summary}\n")
    write_json(path / "results.json", [asdict(r) for r in results])
    print(f"written: {path / 'results.md'}, {path / 'results.json'}")
    return 0 if all(r.success for r in results) else 1
