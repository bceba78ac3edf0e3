"""train_sft on a folder holding a run: the same run is reused or resumed, others refused."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from palaestra.agents.evaluate import EvalConfig, run_eval
from palaestra.agents.trajectory import Trajectory

pytest.importorskip("torch")

MAZE = "palaestra/Maze-v0"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> list[Trajectory]:
    out = tmp_path_factory.mktemp("expert")
    result = run_eval(EvalConfig("expert", (MAZE,), split="train", limit=4), out, progress=False)
    return sorted(result.trajectories, key=lambda t: t.key)


def crash_at(step: int):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise KeyboardInterrupt

    return Crash()


def test_a_finished_run_is_reused_and_other_data_or_settings_are_refused(tmp_path, data):
    from palaestra.evol.sft import SFTConfig, train_sft

    config = SFTConfig(max_steps=2, batch_size=4, history=0)
    first = train_sft("tiny", data, tmp_path, config, progress=False)
    assert not first.reused
    # threads and save_steps change speed, not the run
    again = train_sft(
        "tiny", data, tmp_path, replace(config, threads=1, save_steps=7), progress=False
    )
    assert again.reused and again.steps == first.steps
    with pytest.raises(FileExistsError, match=r"finished.*data 4 trajectories then, 3 now"):
        train_sft("tiny", data[:3], tmp_path, config, progress=False)
    with pytest.raises(FileExistsError, match="learning_rate"):
        train_sft("tiny", data, tmp_path, replace(config, learning_rate=1e-3), progress=False)


def test_an_unfinished_run_resumes_only_with_the_same_data_and_settings(tmp_path, data):
    from palaestra.evol.sft import SFTConfig, train_sft

    config = SFTConfig(max_steps=3, batch_size=4, save_steps=1, history=0)
    with pytest.raises(KeyboardInterrupt):
        train_sft("tiny", data, tmp_path, config, progress=False, callbacks=[crash_at(2)])
    assert (tmp_path / "checkpoints" / "checkpoint-1").is_dir()
    assert not (tmp_path / "sft.json").exists()
    recorded = json.loads((tmp_path / "identity.json").read_text())
    assert recorded["data"]["trajectories"] == 4 and recorded["config"]["max_steps"] == 3
    # Before the fix these resumed from checkpoint-1, mixing two runs into one model.
    reordered = data[1:] + data[:1]
    with pytest.raises(FileExistsError, match=r"unfinished.*of other contents"):
        train_sft("tiny", reordered, tmp_path, config, progress=False)
    with pytest.raises(FileExistsError, match=r"unfinished.*seed 0 then, 1 now"):
        train_sft("tiny", data, tmp_path, replace(config, seed=1), progress=False)
    with pytest.raises(FileExistsError, match="model 'tiny' then, 'tiny:1' now"):
        train_sft("tiny:1", data, tmp_path, config, progress=False)
    result = train_sft("tiny", data, tmp_path, replace(config, threads=1), progress=False)
    assert result.steps == 3 and not result.reused


def test_checkpoints_without_a_record_are_refused(tmp_path, data):
    from palaestra.evol.sft import SFTConfig, train_sft

    config = SFTConfig(max_steps=3, batch_size=4, save_steps=1, history=0)
    with pytest.raises(KeyboardInterrupt):
        train_sft("tiny", data, tmp_path, config, progress=False, callbacks=[crash_at(2)])
    (tmp_path / "identity.json").unlink()
    with pytest.raises(FileExistsError, match="unknown training run"):
        train_sft("tiny", data, tmp_path, config, progress=False)


def test_prompt_loss_trains_every_token_of_each_example(data):
    from palaestra.agents.models import load_model, resolve_model
    from palaestra.evol.examples import IGNORE_INDEX
    from palaestra.evol.sft import SFTConfig, build_examples

    _, tokenizer = load_model(resolve_model("tiny"))
    plain, _ = build_examples(data[:1], tokenizer, SFTConfig(history=1))
    dense, _ = build_examples(data[:1], tokenizer, SFTConfig(history=1, prompt_loss=True))
    assert len(plain) == len(dense) > 1
    for a, b in zip(plain, dense, strict=True):
        assert a["input_ids"] == b["input_ids"] == b["labels"]
        trained = [label for label in a["labels"] if label != IGNORE_INDEX]
        assert 0 < len(trained) < len(a["labels"]) / 4  # replies only: a few tokens
