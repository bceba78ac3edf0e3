import copy
import json
from collections import Counter
from datetime import date, timedelta

import numpy as np
import pytest

import palaestra
from palaestra.envs import tool_call_action
from palaestra.envs.checker import check
from palaestra.envs.todo import KINDS, TEST_TASKS, TRAIN_TASKS, TodoEnv, make_task
from palaestra.envs.todo.data import CITIES, GOAL_LABELS, GOAL_NOTES, INBOX, THEMES
from palaestra.envs.todo.tasks import _Builder

ENV_ID = "palaestra/Todo-v0"
PINNED = 2000  # an Inbox and three projects; add an item to Home, delete "Pay rent" from Home


def call(env, name, **arguments):
    return env.step(tool_call_action(name, arguments))


def new_env(task_id=PINNED):
    env = TodoEnv()
    env.reset(seed=0, options={"task_id": task_id})
    return env


def play_expert(env):
    while True:
        *_, terminated, truncated, info = env.step(env.expert_action())
        if terminated or truncated:
            return info


def item(env, content):
    return next(t for t in env.world["tasks"] if t["content"] == content)


# -- data and tasks --------------------------------------------------------------


def test_the_vocabulary_is_ascii_and_each_theme_has_room_for_new_items():
    texts = [*CITIES, *GOAL_LABELS, *GOAL_NOTES]
    for theme in (INBOX, *THEMES):
        texts += [theme.name, *theme.items, *theme.labels, *theme.notes]
        assert len(set(theme.items)) == len(theme.items) >= 14, theme.name
    assert all(t.isascii() and t == t.strip() for t in texts)
    assert len(THEMES) == 14


def test_tasks_are_deterministic_and_one_is_pinned():
    def fresh(task_id):
        builder = _Builder(task_id)
        builder.build_world()
        builder.build_goal()
        return builder.task()

    for task_id in (0, 17, PINNED, 2199):
        assert fresh(task_id) == fresh(task_id) == make_task(task_id)
    task = make_task(PINNED)
    assert task.goal == (
        'Add "Take out the recycling" to Home, due tomorrow, priority 2, with the label '
        '"errands". Delete "Pay rent" from Home.'
    )
    assert task.world["today"] == "2025-01-28"
    assert [p["name"] for p in task.world["projects"]] == [
        "Inbox",
        "Mia's birthday party",
        "Blog",
        "Home",
    ]
    assert task.kinds == ("create", "delete")
    assert len(task.facts) == 5 and task.sources == (79,)


def test_worlds_read_like_real_lists_and_goals_cover_every_template():
    kinds, clauses = Counter(), Counter()
    for task_id in TEST_TASKS:
        task = make_task(task_id)
        world = task.world
        kinds.update(task.kinds)
        clauses[len(task.kinds)] += 1
        assert world["projects"][0]["name"] == "Inbox" and 4 <= len(world["projects"]) <= 5
        assert 8 <= len(world["tasks"]) <= 20 + 6  # 6: duplicates and Inbox items to move
        contents = Counter(t["content"] for t in world["tasks"])
        duplicated = sum(n - 1 for n in contents.values())
        assert duplicated == sum(f.kind == "one_left" for f in task.facts)
        assert "2024-01-01" <= world["today"] <= "2025-12-31"
        assert task.goal.isascii() and task.goal.endswith(".")
        assert all(1 <= t["priority"] <= 4 for t in world["tasks"])
    assert set(kinds) == set(KINDS)
    assert set(clauses) == {1, 2, 3}


def test_project_wide_clauses_name_exactly_the_items_that_match():
    seen = Counter()
    for task_id in TEST_TASKS:
        task = make_task(task_id)
        world, today = task.world, task.world["today"]
        tomorrow = (date.fromisoformat(today) + timedelta(days=1)).isoformat()
        pid_of = {p["name"]: p["id"] for p in world["projects"]}
        named = {f.task for f in task.facts if f.kind == "field"}
        for sentence in task.goal.split(". "):
            if sentence.startswith(("Mark every overdue", "Reschedule every overdue")):
                name = sentence.split(" of ", 1)[1].split(" as done")[0].split(" to tomorrow")[0]
                matches = {
                    t["id"]
                    for t in world["tasks"]
                    if t["project_id"] == pid_of[name] and not t["completed"]
                    if t["due"] is not None and t["due"] < today
                }
            elif "to every item of" in sentence:
                name = sentence.split(" to every item of ", 1)[1].split(" due tomorrow")[0]
                matches = {
                    t["id"]
                    for t in world["tasks"]
                    if t["project_id"] == pid_of[name] and t["due"] == tomorrow
                }
            else:
                continue
            in_project = {t["id"] for t in world["tasks"] if t["project_id"] == pid_of[name]}
            assert matches and named & in_project == matches, (task_id, sentence)
            assert len(in_project) > len(matches), (task_id, sentence)  # others to leave alone
            seen[sentence.split()[0]] += 1
    assert min(seen.values()) >= 10 and len(seen) == 3


# -- the expert and random play --------------------------------------------------


def test_the_expert_solves_every_test_task_and_a_sample_of_train():
    env, steps = TodoEnv(), []
    for task_id in [*TEST_TASKS, *TRAIN_TASKS[::20]]:
        env.reset(seed=0, options={"task_id": task_id})
        info = play_expert(env)
        assert info["success"] is True and info["score"] == 1.0, task_id
        steps.append(info["step"])
    assert max(steps) <= 14 and 4 <= np.mean(steps) <= 9


def test_the_experts_plan_is_lookups_then_edits_then_finish():
    env = new_env()
    actions = []
    while not env.over:
        actions.append(json.loads(env.expert_action())["name"])
        env.step(env.expert_action())
    assert actions == ["list_projects", "list_tasks", "add_task", "delete_task", "finish"]


def test_random_play_is_valid_but_fails():
    env, successes, scores = TodoEnv(), [], []
    for task_id in TEST_TASKS:
        env.reset(seed=0, options={"task_id": task_id})
        rng = np.random.default_rng(task_id)
        while not env.over:
            *_, info = env.step(env.random_action(rng))
            assert info["invalid_action"] is False
        successes.append(info["success"])
        scores.append(info["score"])
    assert np.mean(successes) <= 0.03
    assert np.mean(scores) < 0.5


def test_random_calls_stay_valid_when_every_item_is_deleted():
    env = new_env()
    for t in list(env.world["tasks"]):
        call(env, "delete_task", task_id=t["id"])
    rng = np.random.default_rng(0)
    names = set()
    for _ in range(10):
        action = env.random_action(rng)
        names.add(json.loads(action)["name"])
        assert json.loads(action)["name"] != "get_task"
    assert names <= {"list_projects", "list_tasks", "add_task", "finish"}


# -- the tools -------------------------------------------------------------------


def test_first_observation_gives_the_date_and_the_goal():
    env = TodoEnv()
    observation, info = env.reset(options={"task_id": PINNED})
    assert observation.startswith('Today is Tuesday, 2025-01-28. Goal: Add "Take out the')
    assert info["task_id"] == PINNED


def test_list_projects_and_list_tasks():
    env = new_env()
    observation, *_ = call(env, "list_projects")
    assert json.loads(observation) == [
        {"id": 92, "name": "Inbox"},
        {"id": 81, "name": "Mia's birthday party"},
        {"id": 83, "name": "Blog"},
        {"id": 79, "name": "Home"},
    ]
    observation, *_ = call(env, "list_tasks", project_id=79)
    listed = json.loads(observation)
    assert {"id": 861, "content": "Pay rent", "due": "2025-02-15", "priority": 4, "labels": []} in (
        listed
    )
    assert "Replace the hallway light bulb" not in observation  # completed: hidden
    assert '": ' not in observation and '", "' not in observation  # compact JSON
    observation, *_ = call(env, "list_tasks", project_id=79, include_completed=True)
    done = [t for t in json.loads(observation) if t["completed"]]
    assert [t["content"] for t in done] == ["Replace the hallway light bulb"]
    assert env.world["listed"] == [79]


def test_get_task_shows_an_item_in_full():
    env = new_env()
    observation, *_ = call(env, "get_task", task_id=238)
    assert json.loads(observation) == {
        "id": 238,
        "content": "Replace the hallway light bulb",
        "project_id": 79,
        "project": "Home",
        "due": None,
        "priority": 4,
        "labels": ["weekend"],
        "description": "Takes about half an hour",
        "completed": True,
    }


def test_add_update_complete_move_and_delete():
    env = new_env()
    observation, *_ = call(
        env,
        "add_task",
        content="  Buy  stamps ",
        project_id=92,
        due_date="2025-02-01",
        labels=["x"],
    )
    added = json.loads(observation)
    assert added["id"] == 1000 and added["content"] == "Buy stamps" and added["priority"] == 4
    assert added["due"] == "2025-02-01" and added["labels"] == ["x"] and not added["completed"]
    observation, *_ = call(env, "update_task", task_id=1000, due_date="", priority=1)
    assert json.loads(observation)["due"] is None and json.loads(observation)["priority"] == 1
    observation, *_ = call(env, "update_task", task_id=1000, labels=["a", "A", "b"])
    assert json.loads(observation)["labels"] == ["a", "b"]  # labels: case-insensitive set
    assert json.loads(call(env, "complete_task", task_id=1000)[0]) == {
        "id": 1000,
        "completed": True,
    }
    observation, *_ = call(env, "move_task", task_id=1000, project_id=83.0)  # JSON allows 83.0
    assert json.loads(observation)["project"] == "Blog" and '"project_id":83,' in observation
    assert json.loads(call(env, "delete_task", task_id=1000)[0]) == {"id": 1000, "deleted": True}
    assert all(t["id"] != 1000 for t in env.world["tasks"])
    observation, _, terminated, _, info = call(env, "finish")
    assert observation == "Finished." and terminated and info["success"] is False


@pytest.mark.parametrize(
    ("name", "arguments", "says"),
    [
        ("list_tasks", {"project_id": 5}, "there is no project 5; list_projects"),
        ("get_task", {"task_id": 5}, "there is no item 5; list_tasks"),
        ("complete_task", {"task_id": 5}, "there is no item 5"),
        ("move_task", {"task_id": 861, "project_id": 5}, "there is no project 5"),
        ("add_task", {"content": " ", "project_id": 79}, "content must not be empty"),
        ("add_task", {"content": "Go", "project_id": 79, "due_date": "friday"}, "not a date"),
        ("add_task", {"content": "Go", "project_id": 79, "priority": 5}, "greater than"),
        ("update_task", {"task_id": 861, "due_date": "2025-02-30"}, "not a date"),
        ("update_task", {"task_id": 861, "priority": 1, "labels": [""]}, "label must not"),
        ("update_task", {"task_id": 861, "content": "Caf\u00e9"}, "ASCII"),
        ("update_task", {"task_id": "861"}, "is not of type 'integer'"),
        ("delete_task", {}, "'task_id' is a required property"),
        ("archive_task", {"task_id": 861}, "there is no tool 'archive_task'"),
    ],
)
def test_bad_calls_are_invalid_say_why_and_change_nothing(name, arguments, says):
    env = new_env()
    call(env, "list_projects")
    before = copy.deepcopy(env.world)
    observation, reward, terminated, _, info = call(env, name, **arguments)
    assert observation.startswith("Error: ") and says in observation, observation
    assert info["invalid_action"] is True and not terminated and reward == 0.0
    assert env.world == before
    assert env.step("complete the task")[4]["invalid_action"] is True


# -- score and success -----------------------------------------------------------


def test_half_done_scores_between_zero_and_one():
    env = new_env()
    call(env, "delete_task", task_id=861)  # the second clause; the item is not added
    *_, info = call(env, "finish")
    assert info["success"] is False
    assert info["score"] == pytest.approx(2 / 6)  # deleted + preserved, of 5 facts + preserved


def test_the_goal_is_checked_loosely_on_text_and_strictly_on_values():
    env = new_env()
    call(env, "delete_task", task_id=861)
    call(
        env,
        "add_task",
        content="take out the  RECYCLING.",
        project_id=79,
        due_date="2025-01-29",
        priority=2,
        labels=["Errands"],
    )
    assert all(env.subgoals())
    call(env, "update_task", task_id=1000, priority=3)
    assert env.subgoals() == [True, True, False, True, True, True]


def test_changing_what_the_goal_does_not_ask_breaks_the_preserved_fact():
    for name, arguments in [
        ("complete_task", {"task_id": 872}),
        ("update_task", {"task_id": 872, "description": "x"}),
        ("move_task", {"task_id": 872, "project_id": 92}),
        ("delete_task", {"task_id": 872}),
        ("add_task", {"content": "Buy milk", "project_id": 79}),
    ]:
        env = new_env()
        while json.loads(env.expert_action())["name"] != "finish":
            env.step(env.expert_action())
        assert all(env.subgoals())
        call(env, name, **arguments)
        assert env.subgoals()[-1] is False, name
        *_, info = call(env, "finish")
        assert info["success"] is False and info["score"] == 1.0  # progress: the best so far


def test_deleting_everything_scores_low():
    for task_id in TEST_TASKS[:50]:
        env = new_env(task_id)
        env.world["tasks"].clear()  # as ~20 delete_task calls would (more than max_steps)
        reached = env.subgoals()
        deletions = sum(f.kind == "deleted" for f in make_task(task_id).facts)
        assert reached[-1] is False and sum(reached) == deletions < len(reached) / 2


def test_duplicates_either_copy_may_go_but_not_both():
    task_id = next(t for t in TEST_TASKS if make_task(t).kinds == ("delete_duplicates",))
    fact = make_task(task_id).facts[0]
    for keep in fact.copies:
        env = new_env(task_id)
        for other in make_task(task_id).facts:
            gone = next(i for i in other.copies if i != keep) if other is fact else other.copies[1]
            call(env, "delete_task", task_id=gone)
        assert all(env.subgoals())
    env = new_env(task_id)
    for i in fact.copies:
        call(env, "delete_task", task_id=i)
    assert env.subgoals()[0] is False and env.subgoals()[-1] is True


# -- snapshot / restore, the contract ----------------------------------------------


def test_snapshot_restore_mid_episode():
    env = new_env(2009)
    for _ in range(3):
        env.step(env.expert_action())
    snap = env.snapshot()
    rest = []
    while not env.over:
        action = env.expert_action()
        rest.append((action, env.step(action)))
    other = new_env(5)
    other.restore(snap)
    assert other.task.task_id == 2009
    for action, expected in rest:
        assert other.step(action) == expected
    env.restore(snap)
    assert not env.over and env.steps == 3


def test_registered_and_passes_the_checker_in_process():
    env = palaestra.make(ENV_ID)
    assert isinstance(env.unwrapped, TodoEnv)
    assert {t["function"]["name"] for t in TodoEnv.tools} == {
        "list_projects",
        "list_tasks",
        "get_task",
        "add_task",
        "update_task",
        "complete_task",
        "delete_task",
        "move_task",
        "finish",
    }
    failures = [f"{r.name}: {r.detail}" for r in check(ENV_ID, episodes=3) if not r.passed]
    assert not failures, failures
