"""The stage runner on its own: records, skipping, resume refusals, stop_after, seeds."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import pytest

from palaestra.agents.rollout import RolloutConfig
from palaestra.evol.stages import Stages, stage_seed
from palaestra.settings import NOT_IDENTITY, identity


@dataclass
class ToyConfig:
    steps: int = 2
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    seed: int = 0
    threads: int | None = field(default=None, metadata=NOT_IDENTITY)


def run(out, config: ToyConfig, calls: list[str], **options) -> dict[str, dict]:
    with Stages(out, config, lambda: {"tasks": [1, 2]}, progress=False, log=calls.append,
                **options) as stages:  # fmt: skip
        for i in range(config.steps):

            def work(line, i=i) -> dict:
                calls.append(f"ran {i}")
                return {"value": i, "seed": stages.seed("work", i)}

            stages.run(f"work-{i}", work)
    return stages.records


def test_finished_stages_are_skipped_and_only_identity_settings_block_a_resume(tmp_path):
    calls: list[str] = []
    records = run(tmp_path, ToyConfig(), calls, stop_after="work-0")
    assert list(records) == ["work-0"] and calls[0] == "ran 0"
    with pytest.raises(FileExistsError, match="--resume"):
        run(tmp_path, ToyConfig(), calls)
    with pytest.raises(ValueError, match="differ in rollout"):
        run(tmp_path, ToyConfig(rollout=RolloutConfig(history=2)), calls, resume=True)
    calls.clear()
    records = run(tmp_path, ToyConfig(threads=4), calls, resume=True)  # speed only: allowed
    assert [c for c in calls if c.startswith("ran")] == ["ran 1"]
    assert "[work-0] done before" in calls[0]
    manifest = json.loads((tmp_path / "run.json").read_text())
    assert manifest["tasks"] == {"tasks": [1, 2]} and list(manifest["stages"]) == list(records)
    assert manifest["seeds"]["work:1"] == stage_seed(0, "work", 1) == records["work-1"]["seed"]


def test_a_stage_value_error_names_the_stage(tmp_path):
    def broken(line) -> dict:
        raise ValueError("no data")

    with pytest.raises(ValueError, match="stage 'train-1': no data"):
        with Stages(tmp_path, ToyConfig(), dict, progress=False) as stages:
            stages.run("train-1", broken)


def test_identity_leaves_out_speed_settings_at_every_depth():
    config = ToyConfig(threads=3, rollout=RolloutConfig(batch_wait_s=1.0))
    found = identity(config)
    assert "threads" not in found and "batch_wait_s" not in found["rollout"]
    assert identity(replace(config, threads=1)) == found
    assert found["rollout"]["history"] is None and found["seed"] == 0
