"""palaestra/Sheet-v0: formulas, row moves, tools, tasks, score, expert, random play."""

from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pytest

from palaestra.envs.checker import check
from palaestra.envs.sheet import TEST_TASKS, TRAIN_TASKS, SheetEnv, make_task
from palaestra.envs.sheet import grid as sheet
from palaestra.envs.sheet.formula import FormulaError, address, parse, round_half_up
from palaestra.envs.sheet.tasks import plan_states
from palaestra.envs.tools import tool_call_action as call


def shown_of(grid):
    return [[sheet.format_value(v) for v in line] for line in sheet.display(grid)]


def play(env, task_id, actions):
    env.reset(options={"task_id": task_id})
    out = None
    for action in actions:
        out = env.step(action)
    return out


# -- formulas ----------------------------------------------------------------------------

GRID = [
    ["Item", "Units", "Price", None],
    ["Pens", 10.0, 2.5, None],
    ["Paper", 4.0, 7.0, None],
    ["Ink", 3.0, "n/a", None],
]


@pytest.mark.parametrize(
    ("formula", "shown"),
    [
        ("=1+2*3", "7"),
        ("=(1+2)*3", "9"),
        ("=-B2+1", "-9"),
        ("=B2*C2", "25"),
        ("=10/4", "2.5"),
        ("=SUM(B2:B4)", "17"),
        ("=sum(B2:C3)", "23.5"),  # function names in any case
        ("=AVERAGE(C2:C4)", "4.75"),  # text in a range is skipped
        ("=COUNT(B2:C4)", "5"),
        ("=MIN(B2:B4)+MAX(B2:B4)", "13"),
        ("=MAX(0,B4-40)", "0"),
        ("=ROUND(0.125,2)", "0.13"),  # halves away from zero, as spreadsheets round
        ("=ROUND(-2.5,0)", "-3"),
        ("=ROUND(B2/3,1)", "3.3"),
        ("=$B$2+B3", "14"),
        ("=A2", "Pens"),
        ("=C4*2", "#VALUE!"),
        ("=B2/0", "#DIV/0!"),
        ("=AVERAGE(D2:D4)", "#DIV/0!"),
        ("=E1+1", "1"),  # an empty cell counts as 0
        ("=E1", "0"),
    ],
)
def test_formulas_evaluate_like_a_spreadsheet(formula, shown):
    grid = copy.deepcopy(GRID)
    sheet.set_raw(grid, 6, 1, sheet.parse_input(formula))
    assert shown_of(grid)[5][0] == shown


@pytest.mark.parametrize(
    ("formula", "says"),
    [
        ("=1+", "unexpected"),
        ("=SUM(B2:B4", "expected ')'"),
        ("=FOO(1)", "unknown function FOO"),
        ("=__import__('os')", "cannot read"),
        ("=B2:B4", "only be an argument"),
        ("=AA1", "outside the sheet"),
        ("=B99", "outside the sheet"),
        ("=1 2", "unexpected"),
        ("=ROUND(1)", "two arguments"),
        ("=", "empty"),
    ],
)
def test_formulas_that_do_not_parse_are_refused_with_a_reason(formula, says):
    with pytest.raises(FormulaError) as caught:
        parse(formula)
    assert says in str(caught.value)


def test_a_cycle_shows_an_error_not_a_crash():
    grid = [["=B1", "=A1+1", "=C1"]]
    assert shown_of(grid) == [["#CYCLE!", "#CYCLE!", "#CYCLE!"]]


def test_long_chains_and_huge_numbers_show_errors_not_crashes():
    grid = [[f"=A{r + 1}+((((((((((1))))))))))"] for r in range(1, 60)] + [[1.0]]
    assert shown_of(grid)[0][0] == "60"  # a 59-formula chain evaluates
    cells = [(r, c) for r in range(1, 5) for c in range(1, 27)][:81]
    grid = []
    for (r, c), (r2, c2) in itertools.pairwise(cells):
        sheet.set_raw(grid, r, c, f"={address(r2, c2)}+1")
    shown = shown_of(grid)
    assert shown[0][0] == "#ERROR!"  # an 80-formula chain is cut, not a RecursionError
    assert shown[3][1] == "1"  # B4, the last formula of the chain: =C4+1 over an empty C4
    grid = [["=99999999*99999999*99999999", "=1/3"]]
    assert shown_of(grid) == [["#NUM!", "0.333333"]]


def test_round_half_up():
    assert round_half_up(2.675, 2) == 2.68  # the float 2.675 is a hair below; its repr is not
    assert round_half_up(1.05, 1) == 1.1
    assert round_half_up(-0.5, 0) == -1.0


# -- rows move, references follow ---------------------------------------------------------------


def sales_grid():
    grid = [*copy.deepcopy(GRID[:3]), ["Ink", 3.0, 4.0, None]]
    for r in (2, 3, 4):
        sheet.set_raw(grid, r, 4, f"=B{r}*C{r}")
    sheet.set_raw(grid, 5, 4, "=SUM(D2:D4)")
    return grid


def test_inserting_a_row_shifts_the_references_below_it():
    grid = sales_grid()
    sheet.insert_row(grid, 3)
    assert sheet.get_raw(grid, 4, 4) == "=B4*C4"
    assert sheet.get_raw(grid, 6, 4) == "=SUM(D2:D5)"  # the range grows over the new row
    sheet.set_raw(grid, 3, 4, 5.0)
    assert shown_of(grid)[5][3] == "70"  # 25 + 5 + 28 + 12


def test_deleting_a_row_shrinks_ranges_and_breaks_single_references():
    grid = sales_grid()
    sheet.set_raw(grid, 6, 1, "=D3")
    sheet.delete_row(grid, 3)
    assert sheet.get_raw(grid, 4, 4) == "=SUM(D2:D3)"
    assert sheet.get_raw(grid, 5, 1) == "=#REF!"
    assert shown_of(grid)[3][3] == "37"
    assert shown_of(grid)[4][0] == "#REF!"


def test_sorting_moves_rows_and_their_formulas_follow_the_cells():
    grid = sales_grid()
    order = sheet.sort_rows(grid, 4, True, 2, 4)  # by the formula column D, largest first
    assert order == [3, 2, 4]
    assert shown_of(grid)[1:4] == [
        ["Paper", "4", "7", "28"],
        ["Pens", "10", "2.5", "25"],
        ["Ink", "3", "4", "12"],
    ]
    assert sheet.get_raw(grid, 2, 4) == "=B2*C2"
    assert shown_of(grid)[4][3] == "65"  # the total below is untouched


def test_sort_puts_numbers_before_text_and_empty_cells_last():
    grid = [["h"], ["b"], [None, 1.0], [3.0], ["A"], [1.0]]
    sheet.sort_rows(grid, 1, False, 2, 6)
    assert [line[0] if line else None for line in grid[1:6]] == [1.0, 3.0, "A", "b", None]


def test_cells_match_numbers_within_a_cent_and_text_ignoring_case():
    assert sheet.cells_match(41.884, 41.88)
    assert not sheet.cells_match(41.9, 41.88)
    assert sheet.cells_match(" up ", "Up")
    assert sheet.cells_match(None, "")
    assert not sheet.cells_match("41.88", 41.88)
    assert not sheet.cells_match(sheet.CellError("#REF!"), "#REF!")


# -- tasks ----------------------------------------------------------------------------------


def test_tasks_are_deterministic_and_pinned():
    first = make_task(1003)
    make_task.cache_clear()
    again = make_task(1003)
    assert (again.goal, again.initial, again.target, again.plan) == (
        first.goal,
        first.initial,
        first.target,
        first.plan,
    )
    assert first.theme == "stores" and first.kinds == ("fix", "delete", "rule")
    assert first.goal == (
        "(1) A value was typed wrong: the Q3 of Tucson should be 191.2. (2) Delete every data "
        "row whose Q4 is below 180. (3) Add a column 'Trend' in column F (header in F1): for "
        "every data row, Up if Q4 is more than Q1, otherwise Down."
    )
    assert first.initial[1] == ["Hartford", 811.5, 779.2, 808.3, 855.3]
    assert first.initial[9] == ["Tucson", 183.7, 187.5, 95.6, 176.0]  # the typo
    assert first.target[-1] == ["Memphis", 308.1, 289.0, 311.3, 303.9, "Down"]


def test_every_train_task_builds_and_its_plan_reaches_the_target():
    kinds = set()
    sizes = set()
    for task_id in TRAIN_TASKS:
        task = make_task(task_id)
        assert len(plan_states(task_id)) == len(task.plan)  # raises if the plan misses
        kinds.update(task.kinds)
        sizes.add(len(task.initial) - 1)
        assert 3 <= len(task.initial[0]) <= 6
    assert kinds == {"fix", "insert", "delete", "computed", "rule", "sort", "summary"}
    assert min(sizes) >= 4 and max(sizes) <= 17


def test_splits_are_disjoint_and_large_enough():
    assert len(SheetEnv.tasks("test")) >= 100 and len(SheetEnv.tasks("train")) >= 500
    assert not set(SheetEnv.tasks("test")) & set(SheetEnv.tasks("train"))


# -- tools ----------------------------------------------------------------------------------


def test_the_tools():
    assert [t["function"]["name"] for t in SheetEnv.tools] == [
        "read_sheet",
        "read_range",
        "update_cell",
        "update_range",
        "insert_row",
        "delete_row",
        "sort_rows",
        "clear_range",
        "finish",
    ]
    sort = SheetEnv.tools[6]["function"]["parameters"]
    assert sort["required"] == ["column", "order"]
    assert sort["properties"]["order"]["enum"] == ["asc", "desc"]


def test_the_expert_writes_formulas_that_follow_a_sort():
    env = SheetEnv()
    env.reset(options={"task_id": 1011})  # delete, Stock value = Stock * Unit cost, sort by Stock
    while not env.over:
        env.step(env.expert_action())
    # Copy paper A3 was row 4 after the deletes, with =B4*D4; sorted first, its formula follows
    assert env.world["grid"][1] == ["Copy paper A3", 13.0, 10.0, 11.75, "=B2*D2"]
    assert env.world["grid"][4] == ["Toner cartridge", 43.0, 25.0, 112.0, "=B5*D5"]
    assert env.world["grid"][0][4] == "Stock value"


def test_the_first_observation_names_the_sheet_and_the_goal_but_not_the_cells():
    observation, info = SheetEnv().reset(options={"task_id": 1011})
    assert observation.startswith(
        "Sheet 'Office supplies inventory': A1:D10 (a header row and 9 data rows, 4 columns)."
    )
    assert "Goal: (1) Delete every data row whose Reorder level is above 30." in observation
    assert "Toner" not in observation and info["task_id"] == 1011


def test_each_tool_on_a_known_sheet():
    env = SheetEnv()
    env.reset(options={"task_id": 1011})
    text = env.step(call("read_sheet"))[0]
    assert text.splitlines()[:3] == [
        "A1:D10 (10 rows x 4 columns)",
        "row | A | B | C | D",
        "1 | Item | Stock | Reorder level | Unit cost",
    ]
    assert text.splitlines()[3] == "2 | Toner cartridge | 43 | 25 | 112"
    assert env.step(call("read_range", {"range": "B2:C3"}))[0] == ("B2: 43; C2: 25\nB3: 52; C3: 50")
    assert env.step(call("update_cell", {"cell": "E2", "value": "=B2*D2"}))[0] == (
        "E2 = 4816 (=B2*D2)"
    )
    assert env.step(call("read_range", {"range": "E2:E3"}))[0] == "E2: 4816 (=B2*D2)\nE3: (empty)"
    observation = env.step(
        call("update_range", {"start": "E1", "values": [["Value"], ["=B2*D2"], [""]]})
    )[0]
    assert observation == "Wrote E1:E3; it shows: Value; 4816; "
    assert env.step(call("insert_row", {"row": 3, "row_values": ["Tape", 5, 10, 1.5]}))[0] == (
        "Inserted row 3; rows 3-10 moved down one. Row 3: Tape | 5 | 10 | 1.5"
    )
    assert env.step(call("delete_row", {"row": 11}))[0] == (
        "Deleted row 11 (Notebooks A5 | 133 | 60 | 3.25)."
    )
    assert env.step(call("delete_row", {"row": 3}))[0] == (
        "Deleted row 3 (Tape | 5 | 10 | 1.5); rows 4-10 moved up one."
    )
    assert env.step(call("sort_rows", {"column": "b", "order": "desc"}))[0] == (
        "Sorted rows 2-9 by column B (Stock), largest first."
    )
    rows = env.step(call("read_sheet"))[0].splitlines()
    assert rows[3].startswith("2 | Ring binders | 134") and rows[-1].startswith("9 | Copy paper")
    assert "| 4816" in next(line for line in rows if "Toner" in line)  # the formula followed
    assert env.step(call("clear_range", {"range": "E1:E9"}))[0] == "Cleared E1:E9."
    observation, reward, terminated, _, info = env.step(call("finish"))
    assert observation == "Finished: the sheet does not match the goal."
    assert terminated and reward == 0.0 and info["success"] is False


@pytest.mark.parametrize(
    ("action", "says"),
    [
        ("update E2 5", "is a tool call"),
        (call("fill_down", {"range": "E2:E9"}), "there is no tool 'fill_down'"),
        (call("update_cell", {"cell": "E2"}), "'value' is a required property"),
        (call("update_cell", {"cell": "E2", "value": True}), "is not of type"),
        (call("update_cell", {"cell": "AA2", "value": 1}), "outside the sheet"),
        (call("update_cell", {"cell": "E61", "value": 1}), "outside the sheet"),
        (call("update_cell", {"cell": "2E", "value": 1}), "not a cell address"),
        (call("update_cell", {"cell": "E2", "value": "=B2*"}), "does not parse"),
        (call("update_cell", {"cell": "E2", "value": "S\u00e3o Paulo"}), "ASCII"),
        (call("update_cell", {"cell": "E2", "value": "x" * 81}), "at most 80"),
        (call("update_cell", {"cell": "E2", "value": 1e300}), "finite and below 1e15"),
        (
            '{"name": "update_cell", "arguments": {"cell": "E2", "value": NaN}}',
            "NaN is not a JSON number",
        ),
        (call("update_range", {"start": "Z60", "values": [[1, 2]]}), "goes past"),
        (call("update_range", {"start": "E1", "values": [[1], ["=SUM("]]}), "does not parse"),
        (call("update_range", {"start": "E1", "values": []}), "should be non-empty"),
        (call("insert_row", {"row": 12}), "from 1 to 11"),
        (call("delete_row", {"row": 11}), "row 11 is empty"),
        (call("delete_row", {"row": 0}), "less than the minimum"),
        (call("sort_rows", {"column": "E2", "order": "asc"}), "not a column"),
        (call("sort_rows", {"column": "B", "order": "up"}), "is not one of"),
        (call("sort_rows", {"column": "B", "order": "asc", "first_row": 5, "last_row": 3}), "5..3"),
        (call("read_range", {"range": "A1:Z20"}), "at most 200 cells"),
        (call("clear_range", {"range": "A1:B2:C3"}), "not a range"),
    ],
)
def test_malformed_and_out_of_world_calls_are_invalid_and_change_nothing(action, says):
    env = SheetEnv()
    env.reset(options={"task_id": 1011})
    before = copy.deepcopy(env.world)
    observation, reward, terminated, _, info = env.step(action)
    assert observation.startswith("Error: ") and says in observation, observation
    assert info["invalid_action"] is True and not terminated and reward == 0.0
    assert env.world == before


def test_observations_are_printable_ascii():
    env = SheetEnv()
    rng = np.random.default_rng(5)
    for task_id in list(TEST_TASKS)[:20]:
        observation, _ = env.reset(options={"task_id": task_id})
        texts = [observation]
        for _ in range(12):
            texts.append(env.step(env.random_action(rng))[0])
            if env.over:
                break
        for text in texts:
            assert text.isascii() and all(ch.isprintable() or ch == "\n" for ch in text), text


# -- score, expert, random ------------------------------------------------------------------


def test_progress_counts_the_changed_cells_and_one_for_the_rest():
    env = SheetEnv()
    env.reset(options={"task_id": 1003})
    goals = env.subgoals()
    assert goals[-1] is True and not any(goals[:-1])  # the untouched start: 1 of k+1
    env.step(call("read_sheet"))
    env.step(call("update_cell", {"cell": "D10", "value": 191.2}))  # the fix: still off
    env.step(call("delete_row", {"row": 10}))  # the delete: rows 10-11 now right
    *_, info = env.step(call("finish"))
    assert info["success"] is False and 0.0 < info["score"] < 1.0
    reached = env.subgoals()
    assert info["score"] == pytest.approx(sum(reached) / len(reached))


def test_an_emptied_sheet_scores_low_and_text_case_does_not_matter():
    env = SheetEnv()
    env.reset(options={"task_id": 1003})
    start = env.subgoals()
    env.step(call("clear_range", {"range": "A1:F11"}))
    assert not any(env.subgoals())  # a wiped sheet reaches no sub-goal
    *_, info = env.step(call("finish"))
    assert info["success"] is False
    assert info["score"] == pytest.approx(1 / len(start))  # the best seen: the start's
    env.reset(options={"task_id": 1003})
    plan = [a.replace('"Up"', '"UP"').replace('"Down"', '"down"') for a in make_task(1003).plan]
    *_, info = play(env, 1003, [*plan, call("finish")])
    assert info["success"] is True and info["score"] == 1.0


def test_the_expert_solves_every_test_task():
    env = SheetEnv()
    steps = []
    for task_id in TEST_TASKS:
        env.reset(options={"task_id": task_id})
        while not env.over:
            *_, info = env.step(env.expert_action())
        assert info["success"] is True and info["score"] == 1.0, task_id
        assert not info["invalid_action"]
        steps.append(env.steps)
    assert max(steps) <= 12 and min(steps) >= 3


def test_the_expert_recovers_from_random_detours():
    env = SheetEnv()
    for task_id in list(TEST_TASKS)[::10]:
        rng = np.random.default_rng(task_id)
        env.reset(options={"task_id": task_id})
        for _ in range(6):
            action = env.random_action(rng)
            if json.loads(action)["name"] != "finish":
                env.step(action)
        while not env.over:
            *_, info = env.step(env.expert_action())
        assert info["success"] is True, task_id


def test_random_play_mostly_fails():
    env = SheetEnv()
    rng = np.random.default_rng(0)
    wins, scores, invalid, steps = 0, [], 0, 0
    for task_id in TEST_TASKS:
        env.reset(options={"task_id": task_id})
        while not env.over:
            *_, info = env.step(env.random_action(rng))
            invalid += info["invalid_action"]
            steps += 1
        wins += info["success"]
        scores.append(info["score"])
    assert wins <= 2
    assert float(np.mean(scores)) < 0.3
    assert invalid == 0  # random calls are plausible: the sheet accepts them all


def test_snapshot_restore_mid_episode():
    env = SheetEnv()
    env.reset(options={"task_id": 1011})
    plan = make_task(1011).plan
    for action in [call("read_sheet"), *plan[:3]]:
        env.step(action)
    snap = env.snapshot()
    rest = [*plan[3:], call("finish")]
    first = [env.step(action) for action in rest]
    env.restore(snap)
    assert env.step(call("read_sheet"))[0].startswith("A1:D7 (7 rows")
    env.restore(snap)
    assert [env.step(action) for action in rest] == first
    assert first[-1][4]["success"] is True


def test_the_checker_passes_in_process():
    results = check("palaestra/Sheet-v0")
    assert all(r.passed or r.skipped for r in results), [
        (r.name, r.detail) for r in results if r.failed
    ]
