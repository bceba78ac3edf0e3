import random
import string

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import palaestra.envs  # noqa: F401  (registers the env ids)
from palaestra.envs.wordle import (
    MAX_STEPS,
    MAX_TRIES,
    OPENING,
    TEST_TASKS,
    TRAIN_TASKS,
    WordleEnv,
    answers,
    best_guess,
    best_opening,
    decode,
    encode,
    feedback,
    guesses,
)
from palaestra.envs.wordle.solver import pattern_codes
from palaestra.envs.wordle.words import ALL_GREEN, GRAY, GREEN, YELLOW

MARK = {"G": GREEN, "Y": YELLOW, "-": GRAY}


def marks(pattern: str) -> tuple[int, ...]:
    return tuple(MARK[c] for c in pattern)


def new_env(task_id: int = 0) -> WordleEnv:
    env = WordleEnv()
    env.reset(seed=0, options={"task_id": task_id})
    return env


def play_expert(env: WordleEnv) -> int:
    """Play the expert to the end; return the number of valid guesses."""
    while not env.over:
        env.step(env.expert_action())
    assert env._success, env._last_observation
    return len(env.get_state()["history"])


# -- word lists ---------------------------------------------------------------------


def test_lists_are_sorted_lowercase_five_letter_words():
    for words in (answers(), guesses()):
        assert list(words) == sorted(set(words))
        assert all(len(w) == 5 and w.isascii() and w.isalpha() and w.islower() for w in words)
    assert set(answers()) <= set(guesses())
    assert 2000 <= len(answers()) <= 3000
    assert 8000 <= len(guesses()) <= 15000


def test_answers_leave_out_regular_plurals_and_past_tenses():
    answer_set = set(answers())
    for inflected in ("cakes", "boxes", "flies", "baked", "cried"):
        assert inflected not in answer_set
        assert inflected in set(guesses())
    for kept in ("bless", "bonus", "breed", "abyss"):
        assert kept in answer_set


# -- feedback -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("guess", "answer", "expected"),
    [
        ("crane", "crane", "GGGGG"),
        ("babes", "abbey", "YYGG-"),  # one b green, the other b yellow for the answer's 2nd b
        ("eerie", "crane", "--Y-G"),  # only one e in the answer, and it is green
        ("eerie", "lever", "YGY--"),  # two e's: one green, one yellow, the third gray
        ("geese", "those", "---GG"),
        ("added", "dread", "YY-YG"),  # one d green, one yellow; the middle d is gray
        ("speed", "abide", "--Y-Y"),  # one e in the answer: the second e is gray
        ("sassy", "asses", "YYGY-"),
        ("llama", "hello", "YY---"),
        ("hello", "llama", "--YY-"),
    ],
)
def test_feedback_handles_repeated_letters(guess: str, answer: str, expected: str):
    assert feedback(guess, answer) == marks(expected)
    code = pattern_codes([guess], [answer])[0, 0]
    assert decode(int(code)) == marks(expected)


def test_numpy_table_matches_the_rule():
    rng = random.Random(1)
    repeated = [w for w in guesses() if len(set(w)) <= 3]
    words = rng.sample(repeated, 60) + rng.sample(list(guesses()), 60) + ["abbey", "eerie"]
    table = pattern_codes(words, words)
    expected = np.array([[encode(feedback(g, a)) for a in words] for g in words])
    assert (table == expected).all()


def test_encode_decode_round_trip():
    for code in range(3**5):
        assert encode(decode(code)) == code
    assert encode(marks("GGGGG")) == ALL_GREEN


# -- tasks ------------------------------------------------------------------------------


def test_splits_partition_the_answers():
    assert WordleEnv.splits == {"train": TRAIN_TASKS, "test": TEST_TASKS}
    assert TRAIN_TASKS.start == 0 and TRAIN_TASKS.stop == TEST_TASKS.start
    assert TEST_TASKS.stop == len(answers())
    assert 0.75 <= len(TRAIN_TASKS) / len(answers()) <= 0.85
    words = [new_env(t)._answer for t in range(len(answers()))]
    assert sorted(words) == list(answers())


def test_task_ids_are_deterministic():
    # Pinned: changing these changes every task of Wordle-v0 (bump the version).
    pinned = {t: new_env(t)._answer for t in (0, 1, 2, TEST_TASKS.start, TEST_TASKS.stop - 1)}
    assert pinned == {0: "stoop", 1: "yacht", 2: "chest", 1780: "shear", 2225: "cupid"}
    assert (len(answers()), len(guesses())) == (2226, 11392)
    assert new_env(7)._answer == new_env(7)._answer
    env = WordleEnv()
    _, info = env.reset(seed=3)
    assert info["task_id"] in TRAIN_TASKS
    env2 = WordleEnv()
    env2.reset(seed=3)
    assert (env2.task_id, env2._answer) == (env.task_id, env._answer)


# -- the episode --------------------------------------------------------------------------


def test_win_rewards_and_scores_one():
    env = new_env(0)
    answer = env._answer
    obs, reward, terminated, truncated, info = env.step(f"guess {answer}")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["success"] is True and info["score"] == 1.0
    assert answer.upper() in obs and "Solved in 1 of 6" in obs


@pytest.mark.parametrize(
    "action",
    ["crane", "CRANE", "  guess Crane \n", "Guess: crane", "guess `crane`.", "guess 'crane'"],
)
def test_accepted_spellings(action: str):
    env = new_env(0)  # answer: stoop
    obs, _, _, _, info = env.step(action)
    assert info["valid"] is True
    assert obs.startswith("CRANE -> C:gray R:gray A:gray N:gray E:gray\n")
    assert "5 tries left" in obs


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("", "Could not read"),
        ("guess crane please", "Could not read"),
        ("guess cr4ne", "letters a-z"),
        ("guess cranes", "6 letters"),
        ("guess abcde", "not in the word list"),
        ("\x00\t\u2603 \u00fcn\u00efc\u00f6d\u00e9", "Could not read"),
        ("x" * 300, "300 letters"),
    ],
)
def test_invalid_guesses_cost_no_try(action: str, reason: str):
    env = new_env(0)
    obs, reward, terminated, truncated, info = env.step(action)
    assert reason in obs and "did not cost a try; 6 tries left" in obs
    assert (reward, terminated, truncated, info["valid"]) == (0.0, False, False, False)
    assert info["invalid_action"] is True
    assert set(obs) <= set(string.printable) and len(obs) < 300
    assert env.get_state()["history"] == []


@pytest.mark.parametrize(
    ("action", "invalid"),
    [("", True), ("xyzzy-not-an-action 12345", True), ("guess zzzzz", True), ("crane", False)],
)
def test_invalid_action_flag(action: str, invalid: bool):
    env = new_env(0)
    info = env.step(action)[4]
    assert info["invalid_action"] is invalid and info["valid"] is not invalid


def test_random_action_is_an_accepted_guess_drawn_from_the_given_rng():
    env = new_env(3)
    state = env.np_random.bit_generator.state
    drawn = [env.random_action(np.random.default_rng(seed)) for seed in range(50)]
    assert env.np_random.bit_generator.state == state
    assert drawn == [env.random_action(np.random.default_rng(seed)) for seed in range(50)]
    assert len(set(drawn)) > 40  # spread over the 11,392 words
    for action in drawn[:MAX_TRIES]:
        assert action.startswith("guess ") and action[6:] in guesses()
        *_, terminated, _, info = env.step(action)
        assert info["invalid_action"] is False and info["valid"] is True
        if terminated:
            break


def test_six_wrong_guesses_end_the_game():
    env = new_env(0)  # answer: stoop
    env.step("guess qqqqq")  # invalid guesses in between cost no try
    env.step("guess 12345")
    for i, word in enumerate(["crane", "slate", "stomp", "stoke", "story", "stood"], start=1):
        obs, reward, terminated, truncated, info = env.step(f"guess {word}")
        assert reward == 0.0 and not truncated
        assert terminated == (i == MAX_TRIES)
        if i < MAX_TRIES:
            assert f"{MAX_TRIES - i} tries left" in obs
    assert "Out of tries: the word was STOOP." in obs
    assert info["success"] is False
    assert info["score"] == pytest.approx(4 / 5)  # STOOD has four greens
    assert env.steps == 8


def test_truncation_after_max_steps_of_invalid_guesses():
    env = new_env(0)
    env.step("guess crane")  # no green: progress 0
    for _ in range(MAX_STEPS - 2):
        env.step("nonsense words")
    *_, terminated, truncated, info = env.step("nonsense words")
    assert (terminated, truncated) == (False, True)
    assert info["success"] is False and info["score"] == 0.0


def test_board_summarises_what_is_known():
    env = new_env(0)  # answer: stoop
    env.step("guess stamp")
    obs, *_ = env.step("guess sooty")
    assert "1. STAMP -> S:green T:green A:gray M:gray P:green" in obs
    assert "2. SOOTY -> S:green O:yellow O:green T:yellow Y:gray" in obs
    assert "Known positions: S T O _ P" in obs
    assert "In the word: O P S T" in obs
    assert "Not in the word: A M Y" in obs
    assert "4 tries left" in obs


def test_snapshot_restore_continues_identically():
    env = new_env(5)
    env.step("guess crane")
    env.step("guess what?")
    snap = env.snapshot()
    tail = ["guess sooty", "pilot", "guess lymph"]
    expected = [env.step(a) for a in tail]
    other = new_env(99)
    for target in (env, other):
        target.restore(snap)
        assert target.task_id == 5 and target.steps == 2
        assert [target.step(a) for a in tail] == expected


def test_check_env_passes():
    env = gymnasium.make("palaestra/Wordle-v0").unwrapped
    assert isinstance(env, WordleEnv)
    check_env(env)


def test_capabilities():
    assert WordleEnv.capabilities() == {"snapshot", "expert", "random_action"}
    env = new_env(0)
    _, _, _, _, info = env.step("guess crane")
    assert "available_actions" not in info


# -- the expert ---------------------------------------------------------------------------


def test_expert_opens_with_the_precomputed_guess():
    assert new_env(0).expert_action() == f"guess {OPENING}"


@pytest.mark.parametrize("split", ["train", "test"])
def test_expert_wins_sampled_tasks(split: str):
    ids = WordleEnv.tasks(split)
    tries = [play_expert(new_env(t)) for t in random.Random(split).sample(list(ids), 50)]
    assert max(tries) <= MAX_TRIES


def test_expert_recovers_after_other_guesses():
    rng = random.Random(2)
    for task_id in rng.sample(list(TRAIN_TASKS), 20):
        env = new_env(task_id)
        env.step("guess fuzzy")
        env.step("guess bingo")
        assert play_expert(env) <= MAX_TRIES


def test_expert_wins_every_answer():
    tries = []
    for answer in answers():
        history: list[tuple[str, int]] = []
        while not history or history[-1][1] != ALL_GREEN:
            guess = best_guess(history)
            history.append((guess, encode(feedback(guess, answer))))
        tries.append(len(history))
    assert max(tries) <= MAX_TRIES
    assert sum(tries) / len(tries) < 3.6


def test_opening_is_the_best_opening():
    word, expected = best_opening()
    assert word == OPENING
    assert expected < 70
