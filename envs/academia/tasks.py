"""The questions of ``palaestra/Academia-v0``: seven templates over the shipped graph.

Each question is drawn from the graph by a seeded template and carries its
answer, its sub-goals (the lookups whose results hold the facts the answer
needs, then the answer itself) and the expert's plan of tool calls. Task ``t``
is question ``t // 7`` of template ``KINDS[t % 7]``; the first 150 questions of
each template are ``train``, the next 50 ``test``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

from palaestra.envs.academia.data import Graph, author_id, load_graph, normalize, paper_id
from palaestra.envs.tools import tool_call_action

__all__ = [
    "KINDS",
    "PER_KIND",
    "TEST_TASKS",
    "TRAIN_TASKS",
    "Task",
    "answer_matches",
    "load_tasks",
    "make_tasks",
]

PER_KIND = 200
TRAIN_PER_KIND = 150
KINDS = (
    "top_coauthor",
    "citing_count",
    "top_cited_at_venue",
    "first_venue_together",
    "year_citation_sum",
    "shared_references",
    "peak_citation_year",
)
TRAIN_TASKS = range(0, TRAIN_PER_KIND * len(KINDS))
TEST_TASKS = range(TRAIN_PER_KIND * len(KINDS), PER_KIND * len(KINDS))

Alternatives = tuple[frozenset[str], ...]
"""One sub-goal: it holds when every lookup key of one of these sets was looked up."""


@dataclass(frozen=True)
class Task:
    """One question with its answer, sub-goals and expert plan.

    Attributes:
        kind: The template (one of :data:`KINDS`).
        question: The question as the agent reads it (says the answer's form).
        answer: The right answer, as text.
        answer_type: ``"number"`` (an integer, years too) or ``"text"`` (a name,
            title or venue, compared without case, spaces and punctuation).
        lookups: The lookup sub-goals; keys are ``"<tool>:<id>"`` (see the env).
        plan: The expert's tool calls (canonical action strings), ``finish`` last.
        authors: Author indices the question is about (for plausible random calls).
        papers: Paper indices the question is about (idem).
        answers: Plausible answers of the question's type (for random calls).
    """

    kind: str
    question: str
    answer: str
    answer_type: str
    lookups: tuple[Alternatives, ...]
    plan: tuple[str, ...]
    authors: tuple[int, ...]
    papers: tuple[int, ...]
    answers: tuple[str, ...]


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def answer_matches(task: Task, given: str) -> bool:
    """Whether ``given`` answers ``task``.

    Numbers: the reply holds exactly one number and it equals the answer
    ("3", "3 papers", "The answer is 3."). Text: equal after lowercasing and
    turning every run of punctuation and spaces into one space (quotes, a final
    period, hyphens and case do not matter); a venue may carry a trailing year.
    """
    if task.answer_type == "number":
        found = _NUMBER.findall(given.replace(",", ""))
        return len(found) == 1 and float(found[0]) == float(task.answer)
    wanted, got = normalize(task.answer), normalize(given)
    if got == wanted:
        return True
    return task.kind == "first_venue_together" and re.sub(r" (19|20)\d\d$", "", got) == wanted


def _alt(tool: str, ident: str) -> frozenset[str]:
    return frozenset({f"{tool}:{ident}"})


def _lookup(tool: str, ident: str) -> Alternatives:
    """The sub-goal of one lookup, with no other way to reach it."""
    return (_alt(tool, ident),)


def _count_lookup(p: int) -> Alternatives:
    """A paper's citation count shows in its details and in its citing list."""
    return (_alt("get_paper", paper_id(p)), _alt("get_citing_papers", paper_id(p)))


def _find_author(g: Graph, a: int) -> str:
    return tool_call_action("search_author", {"name": g.authors[a].name})


def _find_paper(g: Graph, p: int) -> str:
    return tool_call_action("search_paper", {"title": g.papers[p].title})


def _finish(answer: object) -> str:
    return tool_call_action("finish", {"answer": str(answer)})


# -- the templates: each yields candidate tasks in a seeded order ----------------------


def _top_coauthor(g: Graph, rng: random.Random) -> Iterator[Task]:
    for a in rng.sample(range(len(g.authors)), len(g.authors)):
        counts = g.coauthors(a).most_common()
        if len(counts) < 3 or counts[0][1] < 2 or counts[0][1] == counts[1][1]:
            continue
        name, best = g.authors[a].name, g.authors[counts[0][0]].name
        yield Task(
            "top_coauthor",
            f"Which co-author of {name} wrote the most papers together with {name}? "
            "Answer with the co-author's full name.",
            best,
            "text",
            (_lookup("get_coauthors", author_id(a)),),
            (
                _find_author(g, a),
                tool_call_action("get_coauthors", {"author_id": author_id(a)}),
                _finish(best),
            ),
            (a, counts[0][0]),
            (),
            tuple(g.authors[c].name for c, _ in counts[:8]),
        )


def _citing_count(g: Graph, rng: random.Random) -> Iterator[Task]:
    for a in rng.sample(range(len(g.authors)), len(g.authors)):
        mine = g.authors[a].papers
        if len(mine) < 3:
            continue
        cited: dict[int, int] = {}
        for p in mine:
            for r in g.papers[p].references:
                cited[r] = cited.get(r, 0) + 1
        if not cited:
            continue
        several = sorted(r for r, n in cited.items() if n >= 2)
        target = rng.choice(several if several and rng.random() < 0.6 else sorted(cited))
        n = cited[target]
        yield Task(
            "citing_count",
            f'How many papers by {g.authors[a].name} cite the paper "{g.papers[target].title}"? '
            "Answer with a number.",
            str(n),
            "number",
            (
                _lookup("get_author", author_id(a)),
                (
                    _alt("get_citing_papers", paper_id(target)),
                    frozenset(f"get_references:{paper_id(p)}" for p in mine),
                ),
            ),
            (
                _find_author(g, a),
                tool_call_action("get_author", {"author_id": author_id(a)}),
                _find_paper(g, target),
                tool_call_action("get_citing_papers", {"paper_id": paper_id(target)}),
                _finish(n),
            ),
            (a,),
            (target, *mine[:3]),
            tuple(str(k) for k in range(6)),
        )


def _top_cited_at_venue(g: Graph, rng: random.Random) -> Iterator[Task]:
    for a in rng.sample(range(len(g.authors)), len(g.authors)):
        by_venue: dict[str, list[int]] = {}
        for p in g.authors[a].papers:
            by_venue.setdefault(g.papers[p].venue, []).append(p)
        options = sorted(v for v, ps in by_venue.items() if 2 <= len(ps) <= 5)
        if not options:
            continue
        venue = rng.choice(options)
        candidates = by_venue[venue]
        ranked = sorted(candidates, key=lambda p: -len(g.papers[p].cited_by))
        top = g.papers[ranked[0]]
        if len(top.cited_by) == len(g.papers[ranked[1]].cited_by):
            continue
        yield Task(
            "top_cited_at_venue",
            f"Which paper by {g.authors[a].name} published at {venue} has the most citations? "
            "Answer with the paper's exact title.",
            top.title,
            "text",
            (_lookup("get_author", author_id(a)), *(_count_lookup(p) for p in candidates)),
            (
                _find_author(g, a),
                tool_call_action("get_author", {"author_id": author_id(a)}),
                *(tool_call_action("get_paper", {"paper_id": paper_id(p)}) for p in candidates),
                _finish(top.title),
            ),
            (a,),
            tuple(candidates),
            tuple(g.papers[p].title for p in g.authors[a].papers[:8]),
        )


def _first_venue_together(g: Graph, rng: random.Random) -> Iterator[Task]:
    for a in rng.sample(range(len(g.authors)), len(g.authors)):
        counts = g.coauthors(a)
        partners = sorted(b for b, n in counts.items() if n >= 2 and b > a)
        if not partners:
            continue
        b = rng.choice(partners)
        joint = [p for p in g.authors[a].papers if b in g.papers[p].authors]
        first_year = min(g.papers[p].year for p in joint)
        venues = {g.papers[p].venue for p in joint if g.papers[p].year == first_year}
        if len(venues) != 1:
            continue
        (venue,) = venues
        first, second = (a, b) if rng.random() < 0.5 else (b, a)
        yield Task(
            "first_venue_together",
            f"At which venue did {g.authors[first].name} and {g.authors[second].name} first "
            "publish a paper together? Answer with the venue's name.",
            venue,
            "text",
            (_lookup("get_author", author_id(first)), _lookup("get_author", author_id(second))),
            (
                _find_author(g, first),
                tool_call_action("get_author", {"author_id": author_id(first)}),
                _find_author(g, second),
                tool_call_action("get_author", {"author_id": author_id(second)}),
                _finish(venue),
            ),
            (first, second),
            tuple(joint[:4]),
            tuple(sorted({g.papers[p].venue for p in g.authors[a].papers})),
        )


def _year_citation_sum(g: Graph, rng: random.Random) -> Iterator[Task]:
    for a in rng.sample(range(len(g.authors)), len(g.authors)):
        by_year: dict[int, list[int]] = {}
        for p in g.authors[a].papers:
            by_year.setdefault(g.papers[p].year, []).append(p)
        options = sorted(y for y, ps in by_year.items() if 2 <= len(ps) <= 5)
        if not options:
            continue
        year = rng.choice(options)
        papers = by_year[year]
        total = sum(len(g.papers[p].cited_by) for p in papers)
        yield Task(
            "year_citation_sum",
            f"How many citations do the papers that {g.authors[a].name} published in {year} "
            "have in total? Answer with a number.",
            str(total),
            "number",
            (_lookup("get_author", author_id(a)), *(_count_lookup(p) for p in papers)),
            (
                _find_author(g, a),
                tool_call_action("get_author", {"author_id": author_id(a)}),
                *(tool_call_action("get_paper", {"paper_id": paper_id(p)}) for p in papers),
                _finish(total),
            ),
            (a,),
            tuple(papers),
            tuple(str(total + d) for d in (-10, -3, -1, 1, 2, 5, 12) if total + d >= 0),
        )


def _shared_references(g: Graph, rng: random.Random) -> Iterator[Task]:
    for p in rng.sample(range(len(g.papers)), len(g.papers)):
        refs = set(g.papers[p].references)
        if len(refs) < 4:
            continue
        overlap = {
            q: len(refs & set(g.papers[q].references))
            for r in refs
            for q in g.papers[r].cited_by
            if q != p
        }
        several = sorted(q for q, n in overlap.items() if n >= 2)
        if not several:
            continue
        q = rng.choice(several)
        first, second = (p, q) if rng.random() < 0.5 else (q, p)
        n = overlap[q]
        yield Task(
            "shared_references",
            f'How many papers are cited by both "{g.papers[first].title}" and '
            f'"{g.papers[second].title}"? Answer with a number.',
            str(n),
            "number",
            (
                _lookup("get_references", paper_id(first)),
                _lookup("get_references", paper_id(second)),
            ),
            (
                _find_paper(g, first),
                tool_call_action("get_references", {"paper_id": paper_id(first)}),
                _find_paper(g, second),
                tool_call_action("get_references", {"paper_id": paper_id(second)}),
                _finish(n),
            ),
            tuple(g.papers[first].authors[:2]),
            (first, second),
            tuple(str(k) for k in range(8)),
        )


def _peak_citation_year(g: Graph, rng: random.Random) -> Iterator[Task]:
    for p in rng.sample(range(len(g.papers)), len(g.papers)):
        citers = g.papers[p].cited_by
        if len(citers) < 6:
            continue
        per_year: dict[int, int] = {}
        for c in citers:
            per_year[g.papers[c].year] = per_year.get(g.papers[c].year, 0) + 1
        ranked = sorted(per_year.items(), key=lambda item: -item[1])
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            continue
        year = ranked[0][0]
        yield Task(
            "peak_citation_year",
            f'In which year was the paper "{g.papers[p].title}" cited by the most papers? '
            "Answer with the year.",
            str(year),
            "number",
            (_lookup("get_citing_papers", paper_id(p)),),
            (
                _find_paper(g, p),
                tool_call_action("get_citing_papers", {"paper_id": paper_id(p)}),
                _finish(year),
            ),
            tuple(g.papers[p].authors[:2]),
            (p, *citers[:3]),
            tuple(str(y) for y in sorted(per_year)),
        )


_TEMPLATES: dict[str, Callable[[Graph, random.Random], Iterator[Task]]] = {
    "top_coauthor": _top_coauthor,
    "citing_count": _citing_count,
    "top_cited_at_venue": _top_cited_at_venue,
    "first_venue_together": _first_venue_together,
    "year_citation_sum": _year_citation_sum,
    "shared_references": _shared_references,
    "peak_citation_year": _peak_citation_year,
}


def make_tasks(graph: Graph) -> tuple[Task, ...]:
    """Every task of ``graph``, indexed by task id (see the module docstring).

    Raises:
        ValueError: A template found fewer than :data:`PER_KIND` distinct questions.
    """
    per_kind: list[list[Task]] = []
    for kind in KINDS:
        seen: set[str] = set()
        made: list[Task] = []
        for task in _TEMPLATES[kind](graph, random.Random(f"academia/{kind}")):
            if task.question not in seen:
                seen.add(task.question)
                made.append(task)
            if len(made) == PER_KIND:
                break
        if len(made) < PER_KIND:
            raise ValueError(f"template {kind} made {len(made)} of {PER_KIND} questions")
        per_kind.append(made)
    # Task t is question t // 7 of template t % 7; the 150 first of each are train.
    return tuple(per_kind[t % len(KINDS)][t // len(KINDS)] for t in range(PER_KIND * len(KINDS)))


@cache
def load_tasks() -> tuple[Task, ...]:
    """The tasks of the shipped graph (made once per process)."""
    return make_tasks(load_graph())
