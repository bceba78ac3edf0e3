"""``palaestra/Todo-v0``: edit a Todoist-like to-do list into the state a goal asks for."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any, ClassVar

import numpy as np

from palaestra.envs.core import Outcome, TaskId
from palaestra.envs.todo.data import GOAL_LABELS, GOAL_NOTES
from palaestra.envs.todo.tasks import Fact, TodoTask, find_task, make_task, normalize
from palaestra.envs.tools import ToolCallError, ToolEnv, tool, tool_call_action

__all__ = ["MAX_STEPS", "TEST_TASKS", "TRAIN_TASKS", "TodoEnv"]

MAX_STEPS = 20
TRAIN_TASKS = range(0, 2000)
TEST_TASKS = range(2000, 2200)

_ID = {"type": "integer"}
_DUE = {"type": "string", "description": 'YYYY-MM-DD, or "" for no due date'}
_PRIORITY = {"type": "integer", "minimum": 1, "maximum": 4, "description": "1 highest, 4 lowest"}
_LABELS = {
    "type": "array",
    "items": {"type": "string"},
    "description": "the item's whole list of labels (replaces the old one)",
}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def _text(value: str, what: str) -> str:
    text = " ".join(value.split())
    if not text:
        raise ToolCallError(f"{what} must not be empty")
    if not text.isascii():
        raise ToolCallError(f"{what} must be ASCII text")
    return text


def _note(value: str) -> str:
    if not value.isascii():
        raise ToolCallError("description must be ASCII text")
    return " ".join(value.split())


def _due(value: str) -> str | None:
    text = value.strip()
    if not text:
        return None
    try:
        if len(text) == 10:  # fromisoformat also takes 20250101 and more; the world keeps one form
            return date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    raise ToolCallError(f'due_date {text[:20]!r} is not a date YYYY-MM-DD (or "" for none)')


def _labels(values: Sequence[str]) -> list[str]:
    labels: list[str] = []
    for value in values:
        label = _text(value, "a label")
        if normalize(label) not in {normalize(x) for x in labels}:
            labels.append(label)
    return labels


class TodoEnv(ToolEnv):
    """A to-do list (projects, items with due dates, priorities, labels) to edit into a goal.

    In the spirit of AgentBoard's Todoist tasks, offline: each task id seeds its
    own list: an Inbox and 3-4 projects ("Work", "Groceries", "Trip to Lisbon",
    "Mia's birthday party", ...) with 8-20 items in all (plus the duplicates
    and the Inbox items to file that the goal is about), each with content, a
    due date or none, a priority 1-4, labels, a description and a completed
    flag, and today's date. The goal asks for 1-3 changes: complete or
    reschedule the overdue items of a project, label the items due tomorrow,
    delete duplicates, complete / reschedule / reprioritise / delete / label /
    describe a named item, file an Inbox item into its project (maybe with a
    new priority), add an item with given properties.

    ## Observation

    First: today's date and the goal. Then each tool's result as compact JSON
    (ASCII), or ``Error: ...`` for a call the world rejects.

    ## Actions (tools)

    * ``list_projects()``: ids and names of the projects.
    * ``list_tasks(project_id, include_completed=false)``: the items of a
      project: id, content, due, priority, labels (and ``completed`` when
      completed ones are included).
    * ``get_task(task_id)``: one item in full (project, description, completed).
    * ``add_task(content, project_id, due_date?, priority?, labels?, description?)``.
    * ``update_task(task_id, content?, due_date?, priority?, labels?, description?)``:
      ``labels`` replaces the whole list; ``due_date`` ``""`` removes it.
    * ``complete_task(task_id)``, ``delete_task(task_id)``,
      ``move_task(task_id, project_id)``.
    * ``finish()``: ends the episode.

    An unknown project or item id, an empty content or label, a date that is not
    ``YYYY-MM-DD``, or a malformed call is an invalid action that changes nothing.

    ## Score and success

    The target facts: each change the goal asks for (one per item touched, per
    property of a new item, per duplicated item), plus one fact that everything
    else is as it was (no other item changed, deleted or added; named items
    changed only as asked). Score = AgentBoard's progress rate: the best
    fraction of facts holding at any step. Success = all hold at ``finish``;
    reward 1.0 then, else 0. Text compares case- and space-insensitively,
    labels as sets.

    ## Episode end

    Terminated by ``finish``; truncated after ``max_steps`` = 20.

    ## Splits

    ``train``: task ids 0-1999, ``test``: 2000-2199; each id its own world and goal.

    ## Expert

    ``list_projects``, then ``list_tasks`` of each project the goal names items
    of (in goal order), then one edit per target fact (in goal order), then
    ``finish``: 3-12 calls, 6.4 on average over the test split.

    ## Source

    Generated by :mod:`palaestra.envs.todo.tasks` from ``random.Random`` seeded by
    the task id, over hand-written pools (:mod:`palaestra.envs.todo.data`: 14
    project themes with 14-18 to-do phrases each, 10 trip cities, labels,
    notes); nothing is downloaded or shipped besides the code.
    """

    instruction: ClassVar[str] = (
        "You manage a user's to-do list, like Todoist. It has projects (an Inbox and a few "
        "others) holding items; an item has an id, content, a due date (YYYY-MM-DD or none), "
        "a priority (1 highest to 4 lowest), labels, a description, and a completed flag. "
        "You are told today's date and a goal: bring the list into the state it asks for. "
        "Ids are not in the goal: call list_projects for project ids and list_tasks for the "
        "open items of a project and their ids, then edit with add_task, update_task (labels "
        "replaces the whole list, so keep the old labels when adding one), complete_task, "
        "delete_task and move_task. Overdue means not completed and due before today. "
        "Change nothing the goal does not ask for. Each turn, make exactly one tool call. "
        "When the list is as asked, call finish."
    )
    max_steps: ClassVar[int] = MAX_STEPS
    fast_calls: ClassVar[bool] = True
    splits: ClassVar[dict[str, range]] = {"train": TRAIN_TASKS, "test": TEST_TASKS}

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        self.task: TodoTask | None = None

    # -- the episode ---------------------------------------------------------------

    def start(self, task_id: TaskId) -> str:
        """Load the task's list; the observation is today's date and the goal."""
        self.task = make_task(int(task_id))
        self.world = copy.deepcopy(self.task.world)
        today = date.fromisoformat(self.world["today"])
        return f"Today is {today:%A}, {today.isoformat()}. Goal: {self.task.goal}"

    def subgoals(self) -> list[bool]:
        """Each target fact that holds, then whether the rest of the list is as it was."""
        assert self.task is not None
        return self.task.subgoals(self.world)

    def set_state(self, state: Any) -> None:
        """Load a state; the task follows the restored task id."""
        super().set_state(state)
        self.task = make_task(int(self.task_id))  # type: ignore[arg-type]

    # -- lookups -------------------------------------------------------------------

    def _project(self, project_id: int) -> dict[str, Any]:
        project = next((p for p in self.world["projects"] if p["id"] == project_id), None)
        if project is None:
            raise ToolCallError(f"there is no project {project_id}; list_projects gives the ids")
        return project

    def _item(self, task_id: int) -> dict[str, Any]:
        item = find_task(self.world, task_id)
        if item is None:
            raise ToolCallError(
                f"there is no item {task_id}; list_tasks gives the ids of a project's items"
            )
        return item

    @staticmethod
    def _brief(item: Mapping[str, Any]) -> dict[str, Any]:
        keys = ("id", "content", "due", "priority", "labels")
        return {k: item[k] for k in keys}

    def _full(self, item: Mapping[str, Any]) -> dict[str, Any]:
        project = self._project(item["project_id"])
        return {
            "id": item["id"],
            "content": item["content"],
            "project_id": project["id"],
            "project": project["name"],
            "due": item["due"],
            "priority": item["priority"],
            "labels": item["labels"],
            "description": item["description"],
            "completed": item["completed"],
        }

    # -- the tools -----------------------------------------------------------------

    @tool("List the projects: their ids and names.", {})
    def list_projects(self) -> str:
        """The projects."""
        self.world["listed_projects"] = True
        return _json([{"id": p["id"], "name": p["name"]} for p in self.world["projects"]])

    @tool(
        "List the items of a project (open ones only, unless include_completed).",
        {"project_id": _ID, "include_completed": {"type": "boolean"}},
        required=["project_id"],
    )
    def list_tasks(self, project_id: int, include_completed: bool = False) -> str:
        """A project's items, briefly."""
        project_id = self._project(project_id)["id"]
        if project_id not in self.world["listed"]:
            self.world["listed"].append(project_id)
        items = [t for t in self.world["tasks"] if t["project_id"] == project_id]
        if include_completed:
            return _json([{**self._brief(t), "completed": t["completed"]} for t in items])
        return _json([self._brief(t) for t in items if not t["completed"]])

    @tool("Get one item in full: project, description, completed flag.", {"task_id": _ID})
    def get_task(self, task_id: int) -> str:
        """One item in full."""
        return _json(self._full(self._item(task_id)))

    @tool(
        "Add an item to a project.",
        {
            "content": {"type": "string"},
            "project_id": _ID,
            "due_date": _DUE,
            "priority": _PRIORITY,
            "labels": _LABELS,
            "description": {"type": "string"},
        },
        required=["content", "project_id"],
    )
    def add_task(
        self,
        content: str,
        project_id: int,
        due_date: str = "",
        priority: int = 4,
        labels: Sequence[str] = (),
        description: str = "",
    ) -> str:
        """Add an item; the result is the new item."""
        project = self._project(project_id)
        item = {
            "id": self.world["next_id"],
            "content": _text(content, "content"),
            "project_id": project["id"],
            "due": _due(due_date),
            "priority": int(priority),
            "labels": _labels(labels),
            "description": _note(description),
            "completed": False,
        }
        self.world["next_id"] += 1
        self.world["tasks"].append(item)
        return _json(self._full(item))

    @tool(
        "Change an item's content, due date, priority, labels or description "
        "(only the arguments given).",
        {
            "task_id": _ID,
            "content": {"type": "string"},
            "due_date": _DUE,
            "priority": _PRIORITY,
            "labels": _LABELS,
            "description": {"type": "string"},
        },
        required=["task_id"],
    )
    def update_task(
        self,
        task_id: int,
        content: str | None = None,
        due_date: str | None = None,
        priority: int | None = None,
        labels: Sequence[str] | None = None,
        description: str | None = None,
    ) -> str:
        """Update an item; the result is the item."""
        item = self._item(task_id)
        # Check every argument before changing anything: a rejected call changes nothing.
        changes: dict[str, Any] = {}
        if content is not None:
            changes["content"] = _text(content, "content")
        if due_date is not None:
            changes["due"] = _due(due_date)
        if priority is not None:
            changes["priority"] = int(priority)
        if labels is not None:
            changes["labels"] = _labels(labels)
        if description is not None:
            changes["description"] = _note(description)
        item.update(changes)
        return _json(self._full(item))

    @tool("Mark an item as done.", {"task_id": _ID})
    def complete_task(self, task_id: int) -> str:
        """Complete an item."""
        item = self._item(task_id)
        item["completed"] = True
        return _json({"id": item["id"], "completed": True})

    @tool("Delete an item.", {"task_id": _ID})
    def delete_task(self, task_id: int) -> str:
        """Delete an item."""
        item = self._item(task_id)
        self.world["tasks"].remove(item)
        return _json({"id": item["id"], "deleted": True})

    @tool("Move an item to another project.", {"task_id": _ID, "project_id": _ID})
    def move_task(self, task_id: int, project_id: int) -> str:
        """Move an item."""
        item = self._item(task_id)
        item["project_id"] = self._project(project_id)["id"]
        return _json(self._full(item))

    @tool("End the episode when the list is as the goal asks.", {})
    def finish(self) -> Outcome:
        """End the episode."""
        return self.end_episode("Finished.")

    # -- the expert and random calls ---------------------------------------------------

    def expert_action(self) -> str:
        """Look up the ids (projects, then the named projects' items), edit, finish."""
        assert self.task is not None
        if not self.world["listed_projects"]:
            return tool_call_action("list_projects")
        for pid in self.task.sources:
            if pid not in self.world["listed"]:
                return tool_call_action("list_tasks", {"project_id": pid})
        ids = self.task.initial_ids
        for fact in self.task.facts:
            if not fact.holds(self.world, ids):
                action = self._edit(fact)
                if action is not None:
                    return action
        return tool_call_action("finish")

    def _edit(self, fact: Fact) -> str | None:
        """The call that makes ``fact`` hold, or None when none can."""
        if fact.kind == "one_left":
            left = [t["id"] for t in self.world["tasks"] if t["id"] in fact.copies]
            return tool_call_action("delete_task", {"task_id": left[-1]}) if left else None
        if fact.kind == "deleted":
            return tool_call_action("delete_task", {"task_id": fact.task})
        if fact.kind == "created":
            return self._create(fact)
        if find_task(self.world, fact.task) is None:
            return None
        if fact.name == "completed":
            return tool_call_action("complete_task", {"task_id": fact.task})
        if fact.name == "project_id":
            return tool_call_action("move_task", {"task_id": fact.task, "project_id": fact.value})
        argument = "due_date" if fact.name == "due" else str(fact.name)
        return tool_call_action("update_task", {"task_id": fact.task, argument: fact.value})

    def _create(self, fact: Fact) -> str:
        assert self.task is not None
        ids = self.task.initial_ids
        made = [
            t
            for t in self.world["tasks"]
            if t["id"] not in ids
            and t["project_id"] == fact.project
            and normalize(t["content"]) == normalize(fact.content)
        ]
        if made and fact.name is not None:
            argument = "due_date" if fact.name == "due" else fact.name
            return tool_call_action("update_task", {"task_id": made[0]["id"], argument: fact.value})
        spec = {
            f.name: f.value
            for f in self.task.facts
            if f.kind == "created" and f.content == fact.content and f.name is not None
        }
        arguments: dict[str, Any] = {
            "content": fact.content,
            "project_id": fact.project,
            "due_date": spec["due"],
            "priority": spec["priority"],
        }
        if spec["labels"]:
            arguments["labels"] = spec["labels"]
        return tool_call_action("add_task", arguments)

    def argument_choices(self) -> Mapping[str, Sequence[Any]]:
        """Ids that exist now, the world's own phrases, dates around today, real labels."""
        world = self.world
        today = date.fromisoformat(world["today"])
        contents = [t["content"] for t in world["tasks"]]
        labels = sorted({x for t in world["tasks"] for x in t["labels"]} | set(GOAL_LABELS))
        return {
            "project_id": [p["id"] for p in world["projects"]],
            "task_id": [t["id"] for t in world["tasks"]],
            "content": contents or ["Buy milk"],
            "due_date": [(today + timedelta(days=d)).isoformat() for d in range(-2, 8)] + [""],
            "priority": [1, 2, 3, 4],
            "labels": [[], *([x] for x in labels)],
            "description": ["", *GOAL_NOTES[:4]],
            "include_completed": [False, True],
        }

    def random_action(self, rng: np.random.Generator) -> str:
        """A random call (:meth:`ToolEnv.random_action`), never of an item when none is left."""
        if self.task_id is not None and self.world is not None and not self.world["tasks"]:
            # Every item-tool needs an existing id: draw among the others only.
            names = ["list_projects", "list_tasks", "add_task", "finish"]
            name = names[int(rng.integers(len(names)))]
            choices = self.argument_choices()
            definition = next(t for t in self.tools if t["function"]["name"] == name)
            arguments = {
                key: copy.deepcopy(choices[key][int(rng.integers(len(choices[key])))])
                for key in definition["function"]["parameters"]["properties"]
            }
            return tool_call_action(name, arguments)
        return super().random_action(rng)
