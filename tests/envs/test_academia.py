"""palaestra/Academia-v0: the shipped graph, the questions, each tool, the score, the expert."""

from __future__ import annotations

import gzip
import json
from importlib import resources

import numpy as np
import pytest

import palaestra
from palaestra.envs import tool_call_action
from palaestra.envs.academia import (
    KINDS,
    MAX_STEPS,
    TEST_TASKS,
    TRAIN_TASKS,
    AcademiaEnv,
    Graph,
    answer_matches,
    load_graph,
    load_tasks,
)
from palaestra.envs.academia.tasks import make_tasks
from palaestra.envs.tools import MAX_RESULT_CHARS


def new_env(task_id: int = 0) -> AcademiaEnv:
    env = AcademiaEnv()
    env.reset(seed=0, options={"task_id": task_id})
    return env


def call(env: AcademiaEnv, tool: str, **arguments):
    """One tool call; the observation parsed as JSON where it is JSON."""
    observation, _, _, _, info = env.step(tool_call_action(tool, arguments))
    try:
        return json.loads(observation), info
    except ValueError:
        return observation, info


def raw_data() -> dict:
    raw = resources.files("palaestra.envs.academia").joinpath("academia.json.gz").read_bytes()
    return json.loads(gzip.decompress(raw))


# -- the data -------------------------------------------------------------------------


def test_the_shipped_graph_is_small_ascii_and_as_documented():
    raw = resources.files("palaestra.envs.academia").joinpath("academia.json.gz").read_bytes()
    assert len(raw) < 2_000_000
    assert gzip.decompress(raw).isascii()
    g = load_graph()
    assert (len(g.authors), len(g.papers)) == (1810, 2929)
    assert sum(len(p.references) for p in g.papers) == 34088
    assert len({a.affiliation for a in g.authors}) == 44
    assert len({a.country for a in g.authors}) == 16
    assert len(g.venues) == 63 and {"NeurIPS", "ACL", "CVPR", "Nature"} <= set(g.venues)
    assert min(p.year for p in g.papers) == 2004 and max(p.year for p in g.papers) == 2024


def test_names_and_titles_are_unique_and_every_author_wrote_something():
    g = load_graph()
    assert len({a.name.lower() for a in g.authors}) == len(g.authors)
    assert len({p.title.lower() for p in g.papers}) == len(g.papers)
    assert all(a.papers for a in g.authors)
    assert all(p.authors and len(set(p.authors)) == len(p.authors) for p in g.papers)


def test_citations_point_only_to_earlier_papers_and_counts_are_in_degrees():
    g = load_graph()
    for paper in g.papers:
        assert all(g.papers[r].year < paper.year for r in paper.references)
        assert all(paper.index in g.papers[c].references for c in paper.cited_by)
    counts = sorted((len(p.cited_by) for p in g.papers), reverse=True)
    assert counts[0] > 200 > 10 > counts[len(counts) // 2]  # preferential attachment: a long tail


def test_two_loads_give_the_same_graph_and_the_same_tasks():
    fresh = Graph(raw_data())
    assert fresh.authors == load_graph().authors and fresh.papers == load_graph().papers
    assert make_tasks(fresh) == load_tasks()


def test_known_tasks_are_pinned():
    tasks = load_tasks()
    assert len(tasks) == 1400 and len(TRAIN_TASKS) == 1050 and len(TEST_TASKS) == 350
    assert tasks[0].question == (
        "Which co-author of Leonard Bond wrote the most papers together with Leonard Bond? "
        "Answer with the co-author's full name."
    )
    assert tasks[0].answer == "Linda Serrano"
    assert tasks[3].answer == "SODA" and "Alex Siebert and Aldin Muller" in tasks[3].question
    assert tasks[1050].kind == "top_coauthor" and tasks[1050].answer == "Adya Guha"
    assert [tasks[t].kind for t in range(7)] == list(KINDS)


def test_every_answer_is_true_of_the_graph():
    """Recompute a few answers straight from the raw file, not through the task makers."""
    raw = raw_data()
    names = [a[0] for a in raw["authors"]]
    papers = raw["papers"]
    t0 = load_tasks()[0]  # top co-author of Leonard Bond
    me = names.index("Leonard Bond")
    joint: dict[str, int] = {}
    for _, _, _, authors, _ in papers:
        if me in authors:
            for a in authors:
                if a != me:
                    joint[names[a]] = joint.get(names[a], 0) + 1
    assert max(joint, key=joint.__getitem__) == t0.answer
    t1 = load_tasks()[1]  # papers by Amira Linschoten citing a title
    title = t1.question.split('"')[1]
    target = next(i for i, p in enumerate(papers) if p[0] == title)
    me = names.index("Amira Linschoten")
    assert str(sum(me in p[3] and target in p[4] for p in papers)) == t1.answer


# -- the tools ----------------------------------------------------------------------------


def test_search_author_finds_by_any_words_exact_name_first():
    env = new_env()
    found, info = call(env, "search_author", name="brian  SIMS")
    assert not info["invalid_action"]
    assert found["authors"][0] == {
        "author_id": "A0000",
        "name": "Brian Sims",
        "affiliation": "University of Illinois Urbana-Champaign",
    }
    many, _ = call(env, "search_author", name="Wei")
    assert many["matches"] > 10 and len(many["authors"]) == 10
    assert all("wei" in a["name"].lower().split() for a in many["authors"])
    none, info = call(env, "search_author", name="Zzyzx Quux")
    assert (
        none == "No author's name holds every word of 'Zzyzx Quux'." and not info["invalid_action"]
    )


def test_get_author_lists_affiliation_and_papers_oldest_first():
    env = new_env()
    author, _ = call(env, "get_author", author_id="A0000")
    assert author["name"] == "Brian Sims" and author["country"] == "United States"
    assert author["paper_count"] == 3
    assert [p.split(":")[0] for p in author["papers"]] == ["P0118", "P0460", "P1780"]
    first = env.graph.papers[118]
    assert author["papers"][0] == f"P0118: {first.title} ({first.venue} {first.year})"
    years = [int(p[-5:-1]) for p in author["papers"]]
    assert years == sorted(years)
    again, _ = call(env, "get_author", author_id=" a0000 ")  # ids forgive case and spaces
    assert again == author


def test_get_paper_gives_venue_authors_in_order_and_counts():
    env = new_env()
    paper, _ = call(env, "get_paper", paper_id="P0000")
    assert (
        paper["title"] == "VitaSketch: Accurate Sequence-to-Sequence Models for Sentiment Analysis"
    )
    assert (paper["year"], paper["venue"]) == (2011, "ACL")
    assert [a["author_id"] for a in paper["authors"]] == ["A1741", "A0290", "A1177"]
    assert (paper["citation_count"], paper["reference_count"]) == (32, 7)


def test_citing_papers_and_references_are_grouped_by_year():
    env = new_env()
    g = env.graph
    citing, _ = call(env, "get_citing_papers", paper_id="P0000")
    assert citing["citation_count"] == 32
    flat = [p for ids in citing["citing_papers_by_year"].values() for p in ids]
    assert sorted(flat) == sorted(g.papers[i].id for i in g.papers[0].cited_by)
    for year, ids in citing["citing_papers_by_year"].items():
        assert all(g.paper(p).year == int(year) for p in ids)
    assert list(citing["citing_papers_by_year"]) == sorted(citing["citing_papers_by_year"])
    refs, _ = call(env, "get_references", paper_id="P0000")
    assert refs["reference_count"] == 7
    assert sorted(p for ids in refs["references_by_year"].values() for p in ids) == [
        "P0184",
        "P1146",
        "P1248",
        "P1424",
        "P1556",
        "P2225",
        "P2444",
    ]


def test_get_coauthors_counts_joint_papers_most_first():
    env = new_env(0)
    coauthors, _ = call(env, "get_coauthors", author_id="A1699")  # Leonard Bond
    assert coauthors["name"] == "Leonard Bond"
    first = coauthors["coauthors"][0]
    assert first["name"] == "Linda Serrano"
    counts = [c["joint_papers"] for c in coauthors["coauthors"]]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[1]
    assert coauthors["coauthor_count"] == len(coauthors["coauthors"])


def test_search_paper_matches_words_and_a_prefix_of_the_last():
    env = new_env()
    exact, _ = call(env, "search_paper", title="VitaSketch: Accurate Sequence-to-Sequence Models")
    assert exact["papers"][0]["paper_id"] == "P0000"
    prefix, _ = call(env, "search_paper", title="VitaSketch Accur")
    assert prefix["papers"][0]["paper_id"] == "P0000"
    full, _ = call(
        env,
        "search_paper",
        title="vitasketch accurate sequence to sequence models for sentiment analysis",
    )
    assert full["matches"] >= 1 and full["papers"][0]["paper_id"] == "P0000"


def test_every_name_and_title_asked_about_is_found_first_by_its_search():
    g = load_graph()
    assert all(g.search_authors(a.name)[0] is a for a in g.authors)
    assert all(g.search_papers(p.title)[0] is p for p in g.papers)


def test_no_tool_result_is_ever_cut():
    env = new_env()
    g = env.graph
    longest = 0
    for a in g.authors:
        longest = max(longest, len(json.dumps(env.get_author(a.id))))
        longest = max(longest, len(json.dumps(env.get_coauthors(a.id))))
    for p in g.papers:
        longest = max(longest, len(json.dumps(env.get_citing_papers(p.id))))
        longest = max(longest, len(json.dumps(env.get_references(p.id))))
    assert longest < MAX_RESULT_CHARS


@pytest.mark.parametrize(
    ("action", "says"),
    [
        ("get author A0001", "is a tool call"),
        (tool_call_action("get_authors", {"author_id": "A0001"}), "there is no tool"),
        (tool_call_action("get_author", {}), "'author_id' is a required property"),
        (tool_call_action("get_author", {"author_id": 12}), "12 is not of type 'string'"),
        (tool_call_action("get_paper", {"paper_id": "P0001", "x": 1}), "Additional properties"),
        (tool_call_action("get_author", {"author_id": "A9999"}), "no author has the id 'A9999'"),
        (tool_call_action("get_author", {"author_id": "P0001"}), "author ids look like A0123"),
        (tool_call_action("get_paper", {"paper_id": "P12345"}), "find one with search_paper"),
        (tool_call_action("get_citing_papers", {"paper_id": "Attention"}), "no paper has the id"),
        (tool_call_action("get_coauthors", {"author_id": ""}), "no author has the id ''"),
    ],
)
def test_malformed_and_out_of_world_calls_are_invalid_and_change_nothing(action, says):
    env = new_env(1)
    call(env, "get_author", author_id="A1052")
    before = env.snapshot()
    observation, reward, terminated, truncated, info = env.step(action)
    assert info["invalid_action"] and observation.startswith("Error: ")
    assert says in observation, observation
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert env.world == before.state["world"]


# -- answers, sub-goals, score -------------------------------------------------------------


@pytest.mark.parametrize(
    ("task_id", "given", "right"),
    [
        (1, "1", True),
        (1, "1 paper", True),
        (1, "The answer is 1.", True),
        (1, "1.0", True),
        (1, "one", False),
        (1, "1 or 2", False),
        (0, "linda serrano", True),
        (0, '"Linda  Serrano."', True),
        (0, "Serrano", False),
        (2, "scaling semidefinite programming to high dimensions", True),
        (2, "Scaling Semidefinite Programming", False),
        (3, "soda", True),
        (3, "SODA 2012", True),
        (3, "STOC", False),
    ],
)
def test_answers_are_checked_robustly(task_id, given, right):
    assert answer_matches(load_tasks()[task_id], given) is right


def test_half_the_lookups_then_a_wrong_answer_scores_in_between():
    env = new_env(3)  # first venue of Alex Siebert (A0512) and Aldin Muller (A1365): 3 sub-goals
    call(env, "search_author", name="Alex Siebert")
    assert env.subgoals() == [False, False, False]
    call(env, "get_author", author_id="A0512")
    assert env.subgoals() == [True, False, False]
    _, info = call(env, "finish", answer="NeurIPS")
    assert info["success"] is False and info["score"] == pytest.approx(1 / 3)


def test_a_right_answer_without_the_lookups_is_not_a_success():
    env = new_env(3)
    _, info = call(env, "finish", answer="SODA")
    assert info["success"] is False and info["score"] == pytest.approx(1 / 3)


def test_score_is_the_best_progress_and_success_needs_all():
    env = new_env(2)  # Barbara Gomes at FOCS: author + two papers + answer
    task = env.task
    for action in task.plan[:-1]:
        env.step(action)
    assert env.subgoals() == [True, True, True, False]
    _, info = call(env, "finish", answer=task.answer)
    assert info["success"] is True and info["score"] == 1.0


def test_citation_counts_may_come_from_the_citing_list_too():
    env = new_env(2)
    call(env, "get_author", author_id="A1453")
    call(env, "get_citing_papers", paper_id="P2335")
    call(env, "get_paper", paper_id="P0203")
    assert env.subgoals() == [True, True, True, False]


def test_snapshot_and_restore_mid_episode():
    env = new_env(5)
    env.step(env.expert_action())
    env.step(env.expert_action())
    snap = env.snapshot()
    rest = []
    while not env.over:
        action = env.expert_action()
        rest.append((action, env.step(action)))
    env.restore(snap)
    assert env.steps == 2 and not env.over
    for action, expected in rest:
        assert env.expert_action() == action
        assert env.step(action) == expected
    # A snapshot of another task restores that task's question and sub-goals.
    other = new_env(6)
    other.restore(snap)
    assert other.task == load_tasks()[5] and other.subgoals() == [True, False, False]


# -- the expert and random play -------------------------------------------------------------


def test_the_expert_solves_every_task():
    env = AcademiaEnv()
    steps = []
    for task_id in [*TRAIN_TASKS, *TEST_TASKS]:
        env.reset(options={"task_id": task_id})
        while not env.over:
            *_, info = env.step(env.expert_action())
        assert info["success"] and info["score"] == 1.0, (task_id, env.task.question)
        steps.append(env.steps)
    assert max(steps) <= 8 < MAX_STEPS


def test_the_expert_recovers_after_detours():
    env = new_env(1052)
    rng = np.random.default_rng(7)
    for _ in range(4):
        action = env.random_action(rng)
        if '"finish"' not in action:
            env.step(action)
    while not env.over:
        *_, info = env.step(env.expert_action())
    assert info["success"]


def test_random_play_is_mostly_valid_and_mostly_fails():
    env = AcademiaEnv()
    wins, scores, invalid, steps = 0, [], 0, 0
    for task_id in TEST_TASKS:
        env.reset(options={"task_id": task_id})
        rng = np.random.default_rng(task_id)
        while not env.over:
            *_, info = env.step(env.random_action(rng))
            invalid += info["invalid_action"]
            steps += 1
        wins += info["success"]
        scores.append(info["score"])
    assert invalid == 0
    assert wins / len(TEST_TASKS) < 0.05
    assert float(np.mean(scores)) < 0.3


def test_observations_are_printable_ascii():
    env = new_env(0)
    observation, _, _, _, _ = env.step(
        tool_call_action("search_author", {"name": "Jos\u00e9 \u738b"})
    )
    assert observation.isascii()
    observation, _, _, _, _ = env.step(tool_call_action("finish", {"answer": "Jos\u00e9\n\u738b"}))
    assert observation.isascii() and "\n" not in observation
    assert AcademiaEnv.instruction.isascii()


def test_registered_and_made_by_id():
    env = palaestra.make("palaestra/Academia-v0")
    observation, info = env.reset(options={"task_id": 1051})
    assert observation == load_tasks()[1051].question and info["task_id"] == 1051
    assert "tools" in env.unwrapped.capabilities()
    assert [t["function"]["name"] for t in env.unwrapped.tools] == [
        "search_author",
        "get_author",
        "get_coauthors",
        "search_paper",
        "get_paper",
        "get_citing_papers",
        "get_references",
        "finish",
    ]
    _, _, _, _, info = env.step(tool_call_action("search_author", {"name": "Wei"}))
    assert info["kind"] == "citing_count" and not info["invalid_action"]
