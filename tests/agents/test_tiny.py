"""The embedded tiny model: a deterministic build, its tokenizer, chat template and cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from palaestra.agents import tiny  # noqa: E402
from palaestra.agents.tiny import (  # noqa: E402
    MARKER_FILE,
    TINY_VERSION,
    TinyConfig,
    build_corpus,
    build_tiny_model,
    models_cache_dir,
    tiny_model_path,
)
from palaestra.envs import TextEnv, register  # noqa: E402

# A recipe that builds in about a second: one cheap env, few episodes.
SMALL = TinyConfig(env_ids=("palaestra/Maze-v0",), episodes_per_env=3, vocab_size=512)

CHAT = [
    {"role": "system", "content": "You are in a maze.\nReply with one action."},
    {"role": "user", "content": "Position: (1, 1).\n#####\n#A.G#\n#####"},
    {"role": "assistant", "content": "Thought: the goal is right.\nAction: move right"},
    {"role": "user", "content": "You moved right. Café ✓ 🙂"},
    {"role": "assistant", "content": "Action: move right"},
]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny tensors gain nothing from threads, and spinning threads crawl on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def default_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tokenizer(default_model: Path):
    return AutoTokenizer.from_pretrained(default_model)


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# -- the build ------------------------------------------------------------------------


def test_build_is_a_small_llama_that_auto_classes_load(default_model: Path, tokenizer) -> None:
    names = {p.name for p in default_model.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", MARKER_FILE} <= names
    model = AutoModelForCausalLM.from_pretrained(default_model)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.dtype == torch.float32
    assert model.config.tie_word_embeddings
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    parameters = sum(p.numel() for p in model.parameters())
    assert 1_000_000 <= parameters <= 5_000_000
    assert model.config.vocab_size == len(tokenizer) <= TinyConfig().vocab_size
    assert tokenizer.model_max_length == model.config.max_position_embeddings == 2048
    assert tokenizer.eos_token == "<|end|>" and tokenizer.pad_token == "<|pad|>"
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    record = json.loads((default_model / MARKER_FILE).read_text())
    assert record["tiny_version"] == TINY_VERSION
    assert record["parameters"] == parameters
    assert record["config"] == TinyConfig().to_json()


def test_same_seed_is_bitwise_identical_and_another_seed_is_not(
    default_model: Path, tmp_path: Path
) -> None:
    again = build_tiny_model(tmp_path / "again")
    assert files_of(again) == files_of(default_model)
    other = build_tiny_model(tmp_path / "other", TinyConfig(seed=1))
    theirs, ours = files_of(other), files_of(default_model)
    assert theirs["model.safetensors"] != ours["model.safetensors"]
    assert json.loads(theirs["config.json"])["vocab_size"] > 0


def test_build_does_not_touch_the_callers_torch_rng(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_model(tmp_path / "m", SMALL)
    assert torch.equal(torch.rand(3), expected)


def test_build_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(directory: Path, config: TinyConfig) -> None:
        (directory / "config.json").write_text("{}")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(tiny, "_write_model", crash)
    with pytest.raises(RuntimeError, match="disk on fire"):
        build_tiny_model(tmp_path / "m", SMALL)
    assert list(tmp_path.iterdir()) == []  # neither the model nor a temporary folder


def test_build_refuses_a_non_empty_folder_unless_overwriting(tmp_path: Path) -> None:
    out = tmp_path / "m"
    out.mkdir()
    build_tiny_model(out, SMALL)  # an empty folder is fine
    with pytest.raises(FileExistsError, match="overwrite"):
        build_tiny_model(out, SMALL)
    (out / "stale.txt").write_text("old")
    build_tiny_model(out, SMALL, overwrite=True)
    assert not (out / "stale.txt").exists() and (out / MARKER_FILE).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_config_is_validated_and_keyed() -> None:
    with pytest.raises(ValueError, match="multiple of num_heads"):
        TinyConfig(hidden_size=130)
    with pytest.raises(ValueError, match="vocab_size"):
        TinyConfig(vocab_size=100)
    assert TinyConfig(env_ids=["palaestra/Maze-v0"]).env_ids == ("palaestra/Maze-v0",)  # type: ignore[arg-type]
    assert TinyConfig().key() == TinyConfig().key()
    assert TinyConfig(seed=1).key() != TinyConfig().key()
    assert TinyConfig(hidden_size=64).key() != TinyConfig().key()
    assert TinyConfig(seed=3).dir_name().startswith(f"tiny-v{TINY_VERSION}-seed3-")


def test_a_template_change_is_a_new_cache_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build with another template is never reused, even without a version bump."""
    import palaestra.agents.tiny as tiny

    before = TinyConfig().key()
    monkeypatch.setattr(tiny, "CHAT_TEMPLATE", tiny.CHAT_TEMPLATE + "{{- '' }}")
    assert TinyConfig().key() != before


# -- the corpus and the tokenizer ---------------------------------------------------------


class _Unavailable(TextEnv):
    instruction = "never seen"
    max_steps = 3
    splits = {"train": range(3)}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return "it needs a thing this machine lacks"

    def start(self, task_id: int) -> str:  # pragma: no cover - never built
        raise AssertionError


register("tinytest/Unavailable-v0", _Unavailable)


def test_corpus_is_deterministic_and_skips_unavailable_envs() -> None:
    env_ids = ("palaestra/Maze-v0", "tinytest/Unavailable-v0")
    texts = build_corpus(env_ids, 2, seed=0)
    assert texts == build_corpus(env_ids, 2, seed=0)
    assert texts != build_corpus(env_ids, 2, seed=1)
    joined = "\n".join(texts)
    assert "never seen" not in joined
    assert "Action: move" in joined and '{"action": "move' in joined  # react and json replies
    assert any(text.startswith("Maze of") for text in texts)
    with pytest.raises(ValueError, match="unknown env 'nope/Nope-v0'"):
        build_corpus(["nope/Nope-v0"], 1, seed=0)


def test_every_env_text_round_trips(tokenizer) -> None:
    config = TinyConfig()
    texts = build_corpus(config.env_ids, config.episodes_per_env, config.seed)
    texts += [
        "Café naïve façade — “quotes” ✓ 🙂 日本語 Ωμέγα",
        "\n\n  leading and trailing  \n\t tabs\r\nCRLF\n",
        "",
        " ",
        "\x00\x7f control",
    ]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert tokenizer.decode(ids) == text
        assert tokenizer.unk_token_id is None or tokenizer.unk_token_id not in ids


def test_env_text_is_compact(tokenizer) -> None:
    import palaestra

    env = palaestra.make("palaestra/Maze-v0")
    observation, _ = env.reset(seed=0, options={"task_id": 0})
    # Trained on this text, the tokenizer needs well under one token per 2 characters.
    assert len(tokenizer(observation).input_ids) < len(observation) / 2


# -- the chat template ----------------------------------------------------------------------


def test_assistant_mask_covers_exactly_the_assistant_turns_and_their_eos(tokenizer) -> None:
    encoded = tokenizer.apply_chat_template(
        CHAT, return_assistant_tokens_mask=True, return_dict=True, tokenize=True
    )
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    assert len(mask) == len(ids)
    spans: list[list[int]] = []
    for position, (token, flag) in enumerate(zip(ids, mask, strict=True)):
        if flag:
            if not mask[position - 1]:
                spans.append([])
            spans[-1].append(token)
    replies = [m["content"] for m in CHAT if m["role"] == "assistant"]
    assert [tokenizer.decode(span) for span in spans] == [f"{r}<|end|>" for r in replies]
    assert all(span[-1] == tokenizer.eos_token_id for span in spans)
    outside = tokenizer.decode([t for t, flag in zip(ids, mask, strict=True) if not flag])
    for message in CHAT:
        if message["role"] != "assistant":
            assert message["content"] in outside
    assert "Action" not in outside
    assert ids[0] == tokenizer.bos_token_id


def test_template_renders_roles_and_generation_prompt(tokenizer) -> None:
    text = tokenizer.apply_chat_template(CHAT[:2], add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|bos|><|system|>You are in a maze.\nReply with one action.<|end|>"
        "<|user|>Position: (1, 1).\n#####\n#A.G#\n#####<|end|><|assistant|>"
    )
    # Each role marker is one token.
    for role in ("system", "user", "assistant"):
        assert len(tokenizer(f"<|{role}|>", add_special_tokens=False).input_ids) == 1
    # An empty reply still ends its turn, and the end is learned.
    encoded = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}],
        return_assistant_tokens_mask=True,
        return_dict=True,
    )
    pairs = zip(encoded["input_ids"], encoded["assistant_masks"], strict=True)
    assert [token for token, flag in pairs if flag] == [tokenizer.eos_token_id]
    with pytest.raises(Exception, match="roles system, user, assistant and tool"):
        tokenizer.apply_chat_template([{"role": "ipython", "content": "x"}], tokenize=False)


# Version 1 of the template (before tools), verbatim: conversations without tools must
# render exactly as they did, so stored trajectories and trained models keep their prompts.
TEMPLATE_V1 = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{- raise_exception('the tiny model knows the roles system, user and assistant, not '"
    " + message['role']) }}"
    "{%- endif %}"
    "{{- '<|' + message['role'] + '|>' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] + eos_token }}{%- endgeneration %}"
    "{%- else %}"
    "{{- message['content'] + eos_token }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>' }}{%- endif %}"
)


def test_conversations_without_tools_render_as_with_the_first_template(tokenizer) -> None:
    for end in range(1, len(CHAT) + 1):
        for prompt in (False, True):
            options = {
                "add_generation_prompt": prompt,
                "return_assistant_tokens_mask": True,
                "return_dict": True,
            }
            now = tokenizer.apply_chat_template(CHAT[:end], **options)
            before = tokenizer.apply_chat_template(CHAT[:end], chat_template=TEMPLATE_V1, **options)
            assert dict(now) == dict(before)
    assert tokenizer.apply_chat_template(CHAT, tokenize=False, tools=None) == (
        tokenizer.apply_chat_template(CHAT, tokenize=False, chat_template=TEMPLATE_V1)
    )


def test_generation_stops_within_max_new_tokens(default_model: Path, tokenizer) -> None:
    model = AutoModelForCausalLM.from_pretrained(default_model)
    prompt = tokenizer.apply_chat_template(
        CHAT[:2], add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    with torch.inference_mode():
        output = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    new = output[0, prompt["input_ids"].shape[1] :]
    assert 1 <= len(new) <= 12
    assert isinstance(tokenizer.decode(new, skip_special_tokens=True), str)


def test_a_trained_model_learns_to_stop(tmp_path: Path) -> None:
    """The eos inside the generation block is what makes a fine-tuned model end its turn."""
    folder = build_tiny_model(tmp_path / "m", SMALL)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    chat = CHAT[:3]
    encoded = tok.apply_chat_template(
        chat, return_assistant_tokens_mask=True, return_dict=True, return_tensors="pt"
    )
    labels = encoded["input_ids"].masked_fill(encoded["assistant_masks"] == 0, -100)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        loss = model(input_ids=encoded["input_ids"], labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    prompt = tok.apply_chat_template(
        chat[:2], add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    with torch.inference_mode():
        output = model.generate(**prompt, max_new_tokens=40, do_sample=False)
    new = output[0, prompt["input_ids"].shape[1] :].tolist()
    assert new[-1] == tok.eos_token_id and len(new) < 40
    assert tok.decode(new, skip_special_tokens=True) == chat[2]["content"]


# -- the cache ------------------------------------------------------------------------------


def test_cache_root_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PALAESTRA_CACHE", str(tmp_path / "root"))
    assert models_cache_dir() == tmp_path / "root" / "models"
    monkeypatch.delenv("PALAESTRA_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models_cache_dir() == tmp_path / "xdg" / "palaestra" / "models"


def test_tiny_model_path_builds_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PALAESTRA_CACHE", str(tmp_path))
    path = tiny_model_path(SMALL)
    assert path == tmp_path / "models" / SMALL.dir_name()
    marker = path / MARKER_FILE
    stamp = marker.stat().st_mtime_ns

    def no_build(*args: object, **kwargs: object) -> Path:
        raise AssertionError("rebuilt a cached model")

    monkeypatch.setattr(tiny, "build_tiny_model", no_build)
    assert tiny_model_path(SMALL) == path
    assert marker.stat().st_mtime_ns == stamp
    assert tiny_model_path(SMALL, cache_dir=tmp_path / "models") == path


_BUILD_IN_A_PROCESS = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from palaestra.agents.tiny import TinyConfig, tiny_model_path
    config = TinyConfig(env_ids=("palaestra/Maze-v0",), episodes_per_env=3, vocab_size=512)
    print(tiny_model_path(config, cache_dir=Path(sys.argv[1])))
    """
)


def test_two_processes_building_at_once_share_one_good_model(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONHASHSEED": "random", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _BUILD_IN_A_PROCESS, str(cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    results = [proc.communicate(timeout=240) for proc in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    paths = {Path(out.strip()) for out, _ in results}
    assert paths == {cache / SMALL.dir_name()}
    (path,) = paths
    # Nothing half-built is left, and what was built elsewhere matches a build here.
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == [path.name]
    here = build_tiny_model(tmp_path / "here", SMALL)
    assert files_of(path) == files_of(here)


def test_a_rename_race_without_the_lock_is_harmless(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib
    import threading

    both_building = threading.Barrier(2, timeout=30)

    def fake_write(directory: Path, config: TinyConfig) -> None:
        both_building.wait()  # both builds are under way before either renames
        (directory / "config.json").write_text("{}")
        (directory / MARKER_FILE).write_text(threading.current_thread().name)

    monkeypatch.setattr(tiny, "_write_model", fake_write)
    monkeypatch.setattr(tiny, "_file_lock", lambda path: contextlib.nullcontext())
    results: list[Path | BaseException] = []

    def call() -> None:
        try:
            results.append(tiny_model_path(SMALL, cache_dir=tmp_path))
        except BaseException as error:  # pragma: no cover - reported below
            results.append(error)

    threads = [threading.Thread(target=call, name=f"builder-{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [tmp_path / SMALL.dir_name()] * 2
    assert (tmp_path / SMALL.dir_name() / MARKER_FILE).read_text().startswith("builder-")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == [
        SMALL.dir_name()
    ]
