import json

import pytest

from palaestra.agents.trajectory import Trajectory, TrajectoryWriter, read_trajectories


def make(task_id, sample=0):
    return Trajectory(
        env_id="palaestra/Maze-v0",
        task_id=task_id,
        split="test",
        sample=sample,
        seed=sample,
        messages=[{"role": "user", "content": "é\nx", "loss": False}],
        actions=["move up"],
        rewards=[0.0],
        turns=1,
    )


def test_round_trip_and_keys(tmp_path):
    path = tmp_path / "t.jsonl"
    with TrajectoryWriter(path) as writer:
        writer.write(make(1))
        writer.write(make("a", 2))
    back = read_trajectories(path)
    assert [t.to_json() for t in back] == [make(1).to_json(), make("a", 2).to_json()]
    # an int task and the str of it are different episodes
    assert make(1).key != make("1").key


def test_a_torn_last_line_is_repaired_not_fatal(tmp_path):
    path = tmp_path / "t.jsonl"
    with TrajectoryWriter(path) as writer:
        writer.write(make(1))
    whole = path.read_bytes()
    path.write_bytes(whole + json.dumps(make(2).to_json()).encode()[:40])
    with pytest.raises(ValueError, match=r"t\.jsonl:2"):
        read_trajectories(path)
    assert [t.task_id for t in read_trajectories(path, repair=True)] == [1]
    assert path.read_bytes() == whole
    with TrajectoryWriter(path) as writer:  # appending after the repair gives valid lines
        writer.write(make(3))
    assert [t.task_id for t in read_trajectories(path)] == [1, 3]


def test_a_bad_line_in_the_middle_is_an_error_even_with_repair(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"broken\n' + json.dumps(make(1).to_json()) + "\n")
    with pytest.raises(ValueError, match=":1"):
        read_trajectories(path, repair=True)


def test_a_json_object_that_is_not_a_trajectory_is_a_value_error(tmp_path):
    from palaestra.agents.trajectory import read_trajectories

    path = tmp_path / "t.jsonl"
    path.write_text('{"env_id": "palaestra/Maze-v0"}\n')  # valid JSON, missing fields
    with pytest.raises(ValueError, match=r"t.jsonl:1: not a trajectory"):
        read_trajectories(path)


@pytest.mark.parametrize("line", ["[1, 2]", '"text"', "null", "5", "true"])
def test_a_json_line_that_is_not_an_object_is_a_value_error(tmp_path, line):
    path = tmp_path / "t.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=r"t.jsonl:1: not a trajectory: expected a JSON object"):
        read_trajectories(path)
