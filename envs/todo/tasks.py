"""The tasks of ``palaestra/Todo-v0``: a seeded to-do list per task id and a goal on it.

:func:`make_task` builds task ``t`` from ``random.Random(f"palaestra-todo-{t}")``
alone (about 0.1 ms), so a task is the same on every machine and Python 3.11+.

A world is an Inbox plus 3-4 projects drawn from :data:`~.data.THEMES` (a trip
takes a city), with 2-6 items each (8-20 in all; phrases from the theme, unique
in the world), each with a due date (none for a quarter; else from a week ago
to three weeks ahead), a priority (1 highest to 4, the default), 0-2 of the
theme's labels, a note as description for about a third, and a few already
completed. Today's date is drawn from 2024-2025.

The goal joins 1-3 clauses, each from one template (:data:`KINDS`):

- project-wide: complete every overdue item of a project; move them to
  tomorrow; label the items due tomorrow; delete duplicates (the world is made
  to hold 1-3 overdue items, 1-2 due tomorrow, or 1-2 duplicated items there,
  and at least one other open item the clause must leave alone);
- one item (always named with its project): mark done, reschedule, set the
  priority, delete, add a label, set the description;
- file an item of a project's kind that sits in the Inbox into that project
  (optionally with a new priority);
- create an item in a project with a due date, a priority and maybe a label.

A project-wide clause owns its project (no other clause names it), so the
clauses never depend on their order. Each clause gives target facts
(:class:`Fact`); one more fact says everything else is as it was: no item the
goal does not name changed or vanished, named items changed only in what the
goal asks, and no item was added but the asked ones.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from palaestra.envs.todo.data import CITIES, GOAL_LABELS, GOAL_NOTES, INBOX, THEMES, Theme

__all__ = [
    "FIELDS",
    "KINDS",
    "Fact",
    "TodoTask",
    "find_task",
    "make_task",
    "normalize",
    "same_value",
]

FIELDS: tuple[str, ...] = (
    "content",
    "project_id",
    "due",
    "priority",
    "labels",
    "description",
    "completed",
)
"""The fields of an item besides its id."""

KINDS: tuple[str, ...] = (
    "complete_overdue",
    "postpone_overdue",
    "label_tomorrow",
    "delete_duplicates",
    "complete",
    "reschedule",
    "set_priority",
    "move",
    "delete",
    "add_label",
    "describe",
    "create",
)
"""The clause templates; the first four are project-wide."""

PROJECT_WIDE = frozenset(KINDS[:4])


def normalize(text: str) -> str:
    """Text as compared: case-folded, spaces collapsed, no trailing full stop."""
    return " ".join(text.split()).casefold().rstrip(".").strip()


def same_value(name: str, a: Any, b: Any) -> bool:
    """Whether two values of field ``name`` count as equal (labels as sets, text loosely)."""
    if a == b:
        return True
    if name == "labels":
        return sorted({normalize(x) for x in a}) == sorted({normalize(x) for x in b})
    if name in ("content", "description"):
        return normalize(a) == normalize(b)
    return False


def find_task(world: dict[str, Any], task_id: int) -> dict[str, Any] | None:
    """The item ``task_id`` of ``world``, or ``None`` when there is none (deleted)."""
    return next((t for t in world["tasks"] if t["id"] == task_id), None)


@dataclass(frozen=True)
class Fact:
    """One target fact of a goal.

    Kinds:
        ``field``: item ``task`` exists and its ``name`` equals ``value``.
        ``deleted``: item ``task`` no longer exists.
        ``one_left``: exactly one of the items ``copies`` exists.
        ``created``: an open item added during the episode whose content is
            ``content`` is in project ``project`` (``name`` None), and has
            ``name`` equal to ``value`` (else).
    """

    kind: str
    task: int = 0
    name: str | None = None
    value: Any = None
    copies: tuple[int, ...] = ()
    content: str = ""
    project: int = 0

    def holds(self, world: dict[str, Any], initial_ids: frozenset[int]) -> bool:
        """Whether this fact holds in ``world`` (``initial_ids``: the items at the start)."""
        if self.kind == "field":
            item = find_task(world, self.task)
            return item is not None and same_value(str(self.name), item[str(self.name)], self.value)
        if self.kind == "deleted":
            return find_task(world, self.task) is None
        if self.kind == "one_left":
            return sum(find_task(world, i) is not None for i in self.copies) == 1
        made = [
            t
            for t in world["tasks"]
            if t["id"] not in initial_ids
            and t["project_id"] == self.project
            and not t["completed"]
            and normalize(t["content"]) == normalize(self.content)
        ]
        if self.name is None:
            return bool(made)
        return any(same_value(self.name, t[self.name], self.value) for t in made)


@dataclass(frozen=True)
class TodoTask:
    """A task: the starting world, the goal, and what reaching it means.

    Attributes:
        task_id: The task id.
        goal: The goal in English (1-3 sentences).
        kinds: The template of each clause, in goal order.
        world: The starting world (copy it before changing it).
        facts: The target facts, in goal order (the expert reaches them in this order).
        sources: The projects whose items the goal names, in goal order: the
            projects whose items must be listed to find their ids.
        allowed: Per named item, the fields the goal may change (``"deleted"``
            when it may be deleted).
    """

    task_id: int
    goal: str
    kinds: tuple[str, ...]
    world: dict[str, Any]
    facts: tuple[Fact, ...]
    sources: tuple[int, ...]
    allowed: dict[int, frozenset[str]] = field(default_factory=dict)

    @property
    def initial_ids(self) -> frozenset[int]:
        """The ids of the items at the start."""
        return frozenset(t["id"] for t in self.world["tasks"])

    def preserved(self, world: dict[str, Any]) -> bool:
        """Whether everything the goal does not ask to change is as it was."""
        current = {t["id"]: t for t in world["tasks"]}
        for before in self.world["tasks"]:
            allowed = self.allowed.get(before["id"], frozenset())
            now = current.get(before["id"])
            if now is None:
                if "deleted" not in allowed:
                    return False
                continue
            for name in FIELDS:
                if name not in allowed and not same_value(name, now[name], before[name]):
                    return False
        asked = [(f.project, normalize(f.content)) for f in self.facts if f.kind == "created"]
        added = [t for t in world["tasks"] if t["id"] not in self.initial_ids]
        return len(added) <= len(set(asked)) and all(
            (t["project_id"], normalize(t["content"])) in asked for t in added
        )

    def subgoals(self, world: dict[str, Any]) -> list[bool]:
        """Each target fact that holds in ``world``, then whether the rest is preserved."""
        ids = self.initial_ids
        return [f.holds(world, ids) for f in self.facts] + [self.preserved(world)]


def _iso(day: date) -> str:
    return day.isoformat()


class _Builder:
    """Draws one world and its goal; one instance per task."""

    def __init__(self, task_id: int) -> None:
        self.rng = random.Random(f"palaestra-todo-{task_id}")
        self.task_id = task_id
        self.today = date(2024, 1, 1) + timedelta(days=self.rng.randrange(731))
        self.tomorrow = _iso(self.today + timedelta(days=1))
        self.themes: dict[int, Theme] = {}
        self.city = self.rng.choice(CITIES)
        self.world: dict[str, Any] = {}
        self.fresh_ids: list[int] = []
        self.owned: set[int] = set()  # projects of project-wide clauses
        self.named: set[int] = set()  # projects other clauses name
        self.reserved: set[int] = set()  # items some clause names
        self.clauses: list[str] = []
        self.kinds: list[str] = []
        self.facts: list[Fact] = []
        self.sources: list[int] = []
        self.allowed: dict[int, set[str]] = {}

    # -- the world ---------------------------------------------------------------

    def _phrases(self, theme: Theme) -> list[str]:
        return [p.format(city=self.city) for p in theme.items]

    def build_world(self) -> None:
        rng = self.rng
        themes = [INBOX, *rng.sample(THEMES, rng.randint(3, 4))]
        project_ids = rng.sample(range(10, 100), len(themes))
        counts = [rng.randint(1, 3)] + [rng.randint(2, 6) for _ in themes[1:]]
        while sum(counts) < 8:
            counts[rng.randrange(1, len(counts))] += 1
        while sum(counts) > 20:
            k = max(range(len(counts)), key=lambda i: counts[i])
            counts[k] -= 1
        ids = rng.sample(range(100, 1000), sum(counts) + 10)
        self.fresh_ids = ids[sum(counts) :]
        projects, tasks, used = [], [], set()
        for theme, pid, count in zip(themes, project_ids, counts, strict=True):
            self.themes[pid] = theme
            projects.append({"id": pid, "name": theme.name.format(city=self.city)})
            phrases = [p for p in self._phrases(theme) if p not in used]
            for content in rng.sample(phrases, count):
                used.add(content)
                tasks.append(self._item(ids[len(tasks)], content, pid, theme))
        self.world = {
            "today": _iso(self.today),
            "projects": projects,
            "tasks": tasks,
            "next_id": 1000,
            "listed_projects": False,
            "listed": [],
        }

    def _item(self, item_id: int, content: str, pid: int, theme: Theme) -> dict[str, Any]:
        rng = self.rng
        due = None
        if rng.random() >= 0.25:
            due = _iso(self.today + timedelta(days=rng.randint(-7, 21)))
        labels = rng.sample(theme.labels, rng.choices([0, 1, 2], [55, 35, 10])[0])
        return {
            "id": item_id,
            "content": content,
            "project_id": pid,
            "due": due,
            "priority": rng.choices([4, 3, 2, 1], [60, 15, 15, 10])[0],
            "labels": labels,
            "description": rng.choice(theme.notes) if rng.random() < 0.35 else "",
            "completed": rng.random() < 0.08,
        }

    def _used(self) -> set[str]:
        """Contents in the world or asked for: a new item's content must be none of them."""
        used = {t["content"] for t in self.world["tasks"]}
        return used | {f.content for f in self.facts if f.kind == "created"}

    def _open(self, pid: int) -> list[dict[str, Any]]:
        return [t for t in self.world["tasks"] if t["project_id"] == pid and not t["completed"]]

    def _name(self, pid: int) -> str:
        return next(p["name"] for p in self.world["projects"] if p["id"] == pid)

    # -- the goal ----------------------------------------------------------------

    def add_clause(self, kind: str) -> bool:
        """Add a clause of ``kind`` if the world allows one; whether it did."""
        if kind in PROJECT_WIDE:
            taken, least = self.owned | self.named, 1 if kind == "delete_duplicates" else 2
            free = [
                p["id"]
                for p in self.world["projects"]
                if p["id"] not in taken and len(self._open(p["id"])) >= least
            ]
            if not free:
                return False
            pid = self.rng.choice(free)
            getattr(self, f"_{kind}")(pid)
            self.owned.add(pid)
            self._source(pid)
        elif kind == "create":
            free = [p["id"] for p in self.world["projects"] if p["id"] not in self.owned]
            self._create(self.rng.choice(free))
        elif kind == "move":
            if not self._move():
                return False
        else:
            items = [
                t
                for t in self.world["tasks"]
                if not t["completed"]
                and t["id"] not in self.reserved
                and t["project_id"] not in self.owned
            ]
            if not items:
                return False
            item = self.rng.choice(items)
            if not getattr(self, f"_{kind}")(item):
                return False
            self.reserved.add(item["id"])
            self.named.add(item["project_id"])
            self._source(item["project_id"])
        self.kinds.append(kind)
        return True

    def _source(self, pid: int) -> None:
        if pid not in self.sources:
            self.sources.append(pid)

    def _allow(self, item_id: int, *names: str) -> None:
        self.allowed.setdefault(item_id, set()).update(names)

    def _set(self, item: dict[str, Any], name: str, value: Any) -> None:
        self.facts.append(Fact("field", task=item["id"], name=name, value=value))
        self._allow(item["id"], name)

    def _date_words(self, due: str) -> str:
        return "tomorrow" if due == self.tomorrow else due

    def _later(self, not_this: str | None) -> str:
        """A due date 1-14 days ahead (tomorrow 40% of the time), not ``not_this``."""
        while True:
            if self.rng.random() < 0.4:
                due = self.tomorrow
            else:
                due = _iso(self.today + timedelta(days=self.rng.randint(2, 14)))
            if due != not_this:
                return due

    def _overdue(self, pid: int) -> list[dict[str, Any]]:
        """Make 1-3 open items of ``pid`` overdue and its other open items not."""
        rng, items = self.rng, self._open(pid)
        chosen = {t["id"] for t in rng.sample(items, rng.randint(1, min(3, len(items) - 1)))}
        for item in items:
            if item["id"] in chosen:
                item["due"] = _iso(self.today - timedelta(days=rng.randint(1, 9)))
            elif item["due"] is not None and item["due"] < _iso(self.today):
                item["due"] = rng.choice([None, _iso(self.today + timedelta(rng.randint(0, 10)))])
        return [t for t in items if t["id"] in chosen]  # in list order

    def _complete_overdue(self, pid: int) -> None:
        for item in self._overdue(pid):
            self._set(item, "completed", True)
        self.clauses.append(f"Mark every overdue item of {self._name(pid)} as done.")

    def _postpone_overdue(self, pid: int) -> None:
        for item in self._overdue(pid):
            self._set(item, "due", self.tomorrow)
        self.clauses.append(f"Reschedule every overdue item of {self._name(pid)} to tomorrow.")

    def _label_tomorrow(self, pid: int) -> None:
        rng, items = self.rng, self._open(pid)
        label = rng.choice(sorted({*GOAL_LABELS, *self.themes[pid].labels}))
        chosen = {t["id"] for t in rng.sample(items, rng.randint(1, min(2, len(items) - 1)))}
        for item in items:
            if item["id"] in chosen:
                item["due"] = self.tomorrow
                item["labels"] = [x for x in item["labels"] if x != label]
                self._set(item, "labels", [*item["labels"], label])
            elif item["due"] == self.tomorrow:
                item["due"] = _iso(self.today + timedelta(days=rng.randint(2, 9)))
        for item in self.world["tasks"]:
            # A completed item due tomorrow would make "every item due tomorrow" ambiguous.
            if item["project_id"] == pid and item["completed"] and item["due"] == self.tomorrow:
                item["due"] = _iso(self.today - timedelta(days=1))
        self.clauses.append(
            f'Add the label "{label}" to every item of {self._name(pid)} due tomorrow.'
        )

    def _delete_duplicates(self, pid: int) -> None:
        rng, tasks = self.rng, self.world["tasks"]
        items = self._open(pid)
        for item in rng.sample(items, rng.randint(1, min(2, len(items)))):
            copy_ = {**copy.deepcopy(item), "id": self.fresh_ids.pop()}
            last = max(i for i, t in enumerate(tasks) if t["project_id"] == pid)
            tasks.insert(last + 1, copy_)
            self.facts.append(Fact("one_left", copies=(item["id"], copy_["id"])))
            self._allow(item["id"], "deleted")
            self._allow(copy_["id"], "deleted")
        self.clauses.append(
            f"Delete the duplicate items in {self._name(pid)}, keeping one of each."
        )

    def _complete(self, item: dict[str, Any]) -> bool:
        self._set(item, "completed", True)
        where = self._name(item["project_id"])
        self.clauses.append(f'Mark "{item["content"]}" in {where} as done.')
        return True

    def _reschedule(self, item: dict[str, Any]) -> bool:
        due = self._later(item["due"])
        self._set(item, "due", due)
        where = self._name(item["project_id"])
        self.clauses.append(
            f'Change the due date of "{item["content"]}" in {where} to {self._date_words(due)}.'
        )
        return True

    def _set_priority(self, item: dict[str, Any]) -> bool:
        priority = self.rng.choice([p for p in (1, 2, 3, 4) if p != item["priority"]])
        self._set(item, "priority", priority)
        where = self._name(item["project_id"])
        self.clauses.append(f'Set the priority of "{item["content"]}" in {where} to {priority}.')
        return True

    def _move(self) -> bool:
        """Triage: an item of project Q's kind sits in the Inbox; the goal moves it to Q."""
        inbox = self.world["projects"][0]["id"]
        targets = [p["id"] for p in self.world["projects"][1:] if p["id"] not in self.owned]
        if inbox in self.owned or not targets:
            return False
        pid = self.rng.choice(targets)
        used = self._used()
        content = self.rng.choice([p for p in self._phrases(self.themes[pid]) if p not in used])
        item = self._item(self.fresh_ids.pop(), content, inbox, self.themes[pid])
        item["completed"] = False
        tasks = self.world["tasks"]
        tasks.insert(max(i for i, t in enumerate(tasks) if t["project_id"] == inbox) + 1, item)
        self.reserved.add(item["id"])
        self.named.update((inbox, pid))
        self._source(inbox)
        self._set(item, "project_id", pid)
        text = f'Move "{content}" from {self._name(inbox)} to {self._name(pid)}'
        if self.rng.random() < 0.5:
            priority = self.rng.choice([p for p in (1, 2, 3) if p != item["priority"]])
            self._set(item, "priority", priority)
            text += f" with priority {priority}"
        self.clauses.append(text + ".")
        return True

    def _delete(self, item: dict[str, Any]) -> bool:
        self.facts.append(Fact("deleted", task=item["id"]))
        self._allow(item["id"], "deleted")
        where = self._name(item["project_id"])
        self.clauses.append(f'Delete "{item["content"]}" from {where}.')
        return True

    def _add_label(self, item: dict[str, Any]) -> bool:
        pool = sorted({*GOAL_LABELS, *self.themes[item["project_id"]].labels} - set(item["labels"]))
        label = self.rng.choice(pool)
        self._set(item, "labels", [*item["labels"], label])
        where = self._name(item["project_id"])
        self.clauses.append(f'Add the label "{label}" to "{item["content"]}" in {where}.')
        return True

    def _describe(self, item: dict[str, Any]) -> bool:
        note = self.rng.choice([n for n in GOAL_NOTES if n != item["description"]])
        self._set(item, "description", note)
        where = self._name(item["project_id"])
        self.clauses.append(f'Set the description of "{item["content"]}" in {where} to "{note}".')
        return True

    def _create(self, pid: int) -> None:
        rng = self.rng
        used = self._used()
        content = rng.choice([p for p in self._phrases(self.themes[pid]) if p not in used])
        due, priority = self._later(None), rng.randint(1, 3)
        label = rng.choice(self.themes[pid].labels) if rng.random() < 0.5 else None
        labels = [label] if label else []
        self.named.add(pid)
        for name, value in ((None, None), ("due", due), ("priority", priority), ("labels", labels)):
            self.facts.append(Fact("created", name=name, value=value, content=content, project=pid))
        text = (
            f'Add "{content}" to {self._name(pid)}, due {self._date_words(due)}, '
            f"priority {priority}"
        )
        self.clauses.append(text + (f', with the label "{label}".' if label else "."))

    def build_goal(self) -> None:
        rng = self.rng
        wanted = rng.choices([1, 2, 3], [3, 4, 3])[0]
        for _ in range(40):
            if len(self.kinds) == wanted:
                break
            self.add_clause(rng.choice(KINDS))

    def task(self) -> TodoTask:
        return TodoTask(
            task_id=self.task_id,
            goal=" ".join(self.clauses),
            kinds=tuple(self.kinds),
            world=self.world,
            facts=tuple(self.facts),
            sources=tuple(self.sources),
            allowed={k: frozenset(v) for k, v in self.allowed.items()},
        )


@lru_cache(maxsize=4096)
def make_task(task_id: int) -> TodoTask:
    """The task ``task_id`` (cached; copy its ``world`` before changing it)."""
    builder = _Builder(task_id)
    builder.build_world()
    builder.build_goal()
    return builder.task()
