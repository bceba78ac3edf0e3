"""The embedded default model: a tiny Llama and a tokenizer trained on the envs' own text.

With no model named, palaestra builds this one locally in a few seconds, with no
download: a byte-level BPE tokenizer trained (with the ``tokenizers`` library) on
text from the registered envs -- instructions, observations and actions of
expert episodes, and the agent formats' system prompts and replies -- and a
randomly initialised ``LlamaForCausalLM`` of about a million parameters. Both are
deterministic functions of a :class:`TinyConfig` (its ``seed`` included): two
builds with the same config give byte-identical files.

The result is an ordinary Hugging Face model directory (``config.json``,
``generation_config.json``, ``model.safetensors``, ``tokenizer.json``,
``tokenizer_config.json``, ``chat_template.jinja``), so everything that loads a
transformers checkpoint loads it, and training it is ordinary fine-tuning.

The chat template renders each message as a role token, the content and the
end-of-turn token ``<|end|>`` (also the tokenizer's ``eos_token``), after one
``<|bos|>``::

    <|bos|><|system|>You are in a maze...<|end|><|user|>Maze of 5x5 cells...<|end|>
    <|assistant|>Thought: ...
    Action: move right<|end|>

(the line break after the user's ``<|end|>`` is only for this page: the template
adds no whitespace of its own).

The assistant's content and its ``<|end|>`` sit in a ``{% generation %}`` block, so
``apply_chat_template(..., return_assistant_tokens_mask=True, return_dict=True)``
marks exactly the tokens a policy should learn to write, stop token included.

:func:`tiny_model_path` builds a config once into a cache folder and reuses it::

    from transformers import AutoModelForCausalLM, AutoTokenizer
    path = tiny_model_path()            # ~/.cache/palaestra/models/tiny-v1-seed0-<hash>
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)

The cache root is ``$PALAESTRA_CACHE`` if set, else ``$XDG_CACHE_HOME/palaestra``,
else ``~/.cache/palaestra``; models go under its ``models/`` folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from palaestra.files import cache_root

__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "TINY_VERSION",
    "TinyConfig",
    "build_corpus",
    "build_tiny_model",
    "models_cache_dir",
    "tiny_model_path",
    "tools_text",
]

logger = logging.getLogger(__name__)

TINY_VERSION = 2
"""Bumped whenever the recipe (corpus, tokenizer, architecture, template) changes.

It is part of the cache folder's name, so a new recipe never reuses an old build.
Version 2: the ``tool`` role, the tool markers and tool calls in the corpus.
"""


MARKER_FILE = "palaestra_tiny.json"
"""The file in a built model folder that records its recipe (config, version, corpus hash)."""

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|end|>"
ROLES = ("system", "user", "assistant", "tool")
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, *(f"<|{role}|>" for role in ROLES))
"""The tokenizer's special tokens, with ids 0, 1, 2...: pad, bos, eos, then one per role."""

TOOL_TOKENS: tuple[str, ...] = ("<tools>", "</tools>", "<tool_call>", "</tool_call>")
"""The tool markers: one token each, after the trained vocabulary, and not special
(as Qwen's), so that decoding with ``skip_special_tokens`` keeps the calls readable."""

CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- set rest = messages %}"
    "{%- if tools %}"
    # The tools go in the system turn (one made when the conversation has none), one
    # signature a line, `name(arg: type, optional?: type (its description)) description`:
    # a JSON schema would take several times the tokens, and the tiny context is short.
    "{%- set system = '' %}"
    "{%- if messages and messages[0]['role'] == 'system' %}"
    "{%- set system = messages[0]['content'] + '\n' %}{%- set rest = messages[1:] %}"
    "{%- endif %}"
    "{{- '<|system|>' + system + '<tools>' }}"
    "{%- for tool in tools %}"
    "{%- if not loop.first %}{{- '\n' }}{%- endif %}"
    "{%- set function = tool['function'] if tool['function'] is defined else tool %}"
    "{%- set schema = function['parameters'] if function['parameters'] is defined else {} %}"
    "{%- set required = schema['required'] if schema['required'] is defined else [] %}"
    "{{- function['name'] + '(' }}"
    "{%- if schema['properties'] is defined %}"
    "{%- for name, spec in schema['properties'].items() %}"
    "{%- if not loop.first %}{{- ', ' }}{%- endif %}"
    "{{- name }}{%- if name not in required %}{{- '?' }}{%- endif %}{{- ': ' }}"
    "{%- if spec['enum'] is defined %}{{- spec['enum'] | map('tojson') | join('|') }}"
    "{%- elif spec['type'] is string %}{{- spec['type'] }}"
    "{%- elif spec['type'] is defined %}{{- spec['type'] | join('|') }}"
    "{%- else %}{{- 'any' }}{%- endif %}"
    "{%- if spec['description'] is defined %}{{- ' (' + spec['description'] + ')' }}{%- endif %}"
    "{%- endfor %}"
    "{%- endif %}"
    "{{- ')' }}"
    "{%- if function['description'] is defined %}{{- ' ' + function['description'] }}{%- endif %}"
    "{%- endfor %}"
    "{{- '</tools>' + eos_token }}"
    "{%- endif %}"
    "{%- for message in rest %}"
    "{%- if message['role'] not in ['system', 'user', 'assistant', 'tool'] %}"
    "{{- raise_exception('the tiny model knows the roles system, user, assistant and tool, not '"
    " + message['role']) }}"
    "{%- endif %}"
    "{{- '<|' + message['role'] + '|>' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] }}"
    "{%- if message['tool_calls'] is defined and message['tool_calls'] %}"
    "{%- for call in message['tool_calls'] %}"
    "{%- set function = call['function'] if call['function'] is defined else call %}"
    "{{- '<tool_call>{\"name\":' + function['name'] | tojson + ',\"arguments\":' }}"
    "{%- if function['arguments'] is string %}{{- function['arguments'] }}"
    "{%- else %}{{- function['arguments'] | tojson(separators=(',', ':')) }}{%- endif %}"
    "{{- '}</tool_call>' }}"
    "{%- endfor %}"
    "{%- endif %}"
    "{{- eos_token }}{%- endgeneration %}"
    "{%- else %}"
    "{{- message['content'] + eos_token }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>' }}{%- endif %}"
)
"""The Jinja chat template: ``<|bos|>``, then ``<|role|>content<|end|>`` per message.

Assistant contents and their ``<|end|>`` are inside ``{% generation %}`` blocks;
``add_generation_prompt`` appends ``<|assistant|>``. Tools, in the Hermes
convention and compact: given ``tools=``, the system turn ends with
``<tools>...</tools>``, one signature a line (see :func:`tools_text`); an assistant's
``tool_calls`` follow its
content as ``<tool_call>{"name":...,"arguments":{...}}</tool_call>`` (inside the
generation block); a ``tool`` message is its own ``<|tool|>`` turn. Without tools
a conversation renders exactly as with version 1 of this template.
"""

# Replies a model might write that no format accepts: their error messages go in the corpus.
_BAD_REPLIES = ("", "move up", "Action:", "{", '{"thought": "x"}', '{"action": 3}')


@dataclass(frozen=True)
class TinyConfig:
    """The recipe of a tiny model; every field is part of its cache key.

    Attributes:
        vocab_size: The most tokens the tokenizer may have (special tokens and the
            256 byte tokens included); the model's vocabulary is the tokenizer's
            actual size, which is smaller when the corpus runs out of merges.
        hidden_size: Width of the residual stream.
        num_layers: Transformer blocks.
        num_heads: Attention heads (as many key/value heads).
        intermediate_size: Width of each MLP.
        context_length: Longest sequence, in tokens (the tokenizer's ``model_max_length``).
        seed: Seeds the weights (``torch.manual_seed``) and which episodes make the corpus.
        env_ids: The envs whose text trains the tokenizer; unavailable ones are skipped.
        episodes_per_env: Expert episodes played per env for the corpus.
    """

    vocab_size: int = 2048
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    context_length: int = 2048
    seed: int = 0
    env_ids: tuple[str, ...] = ("palaestra/Maze-v0", "palaestra/Wordle-v0", "palaestra/BabyAI-v0")
    episodes_per_env: int = 20

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_heads "
                f"({self.num_heads})"
            )
        minimum = 256 + len(SPECIAL_TOKENS) + len(TOOL_TOKENS)
        if self.vocab_size < minimum:
            raise ValueError(f"vocab_size must be at least {minimum}, not {self.vocab_size}")
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.context_length < 16:
            raise ValueError(f"context_length must be at least 16, not {self.context_length}")
        if self.episodes_per_env < 0:
            raise ValueError(f"episodes_per_env must be >= 0, not {self.episodes_per_env}")
        # A list given for env_ids would make the config unhashable and its key unstable.
        object.__setattr__(self, "env_ids", tuple(self.env_ids))

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON-serialisable dict."""
        data = dataclasses.asdict(self)
        data["env_ids"] = list(self.env_ids)
        return data

    def key(self) -> str:
        """A short hash of this config, :data:`TINY_VERSION` and the template, for the cache folder.

        The chat template and the added tokens are in it too: a build with an older
        template is never reused, even if a change forgot to bump the version.
        """
        recipe = {
            "tiny_version": TINY_VERSION,
            "chat_template": CHAT_TEMPLATE,
            "tokens": [*SPECIAL_TOKENS, *TOOL_TOKENS],
        }
        blob = json.dumps({**recipe, **self.to_json()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def dir_name(self) -> str:
        """The cache folder's name: ``tiny-v{TINY_VERSION}-seed{seed}-{key}``."""
        return f"tiny-v{TINY_VERSION}-seed{self.seed}-{self.key()}"


# -- the corpus -------------------------------------------------------------------------


def build_corpus(env_ids: Sequence[str], episodes_per_env: int, seed: int) -> list[str]:
    """The texts the tokenizer is trained on, from the registered envs and the agent formats.

    For each available env: its instruction, each format's system prompt for it, and
    ``episodes_per_env`` expert episodes on tasks of its ``train`` split (picked by
    ``seed``): every observation, every action, and each action as each format renders
    a reply; plus the formats' error messages for unusable replies. Envs without an
    expert give their first observations only. Deterministic in its arguments.

    Args:
        env_ids: Registered env ids; unavailable ones (missing data or software) are
            skipped with a log message.
        episodes_per_env: Episodes to play per env.
        seed: Picks the tasks and the reset seeds.

    Returns:
        The texts, in a fixed order.

    Raises:
        ValueError: If an env id is not registered.
    """
    from palaestra import make
    from palaestra.agents.formats import FORMATS, get_format
    from palaestra.envs import list_envs

    # Text formats only: the tools format renders tool calls, not text actions.
    formats = [get_format(name) for name in sorted(FORMATS) if not FORMATS[name].uses_tools]
    infos = {info.id: info for info in list_envs()}
    texts: list[str] = []
    for fmt in formats:
        for bad in _BAD_REPLIES:
            error = fmt.parse(bad).error
            if error is not None:
                texts.append(fmt.observation_message("", error).strip())
    for env_id in env_ids:
        info = infos.get(env_id)
        if info is None:
            known = ", ".join(sorted(infos)) or "none"
            raise ValueError(f"unknown env {env_id!r}; registered envs: {known}")
        if info.unavailable is not None:
            logger.info("tiny model corpus: skipping %s (%s)", env_id, info.unavailable)
            continue
        env = make(env_id)
        try:
            texts += _env_texts(env, env_id, episodes_per_env, seed, formats)
        finally:
            env.close()
    return texts


def _env_texts(
    env: Any, env_id: str, episodes: int, seed: int, formats: Sequence[Any]
) -> list[str]:
    """The corpus texts of one env: instruction, system prompts, expert episodes.

    An env with tools also gives its tools as the chat template writes them
    (:func:`tools_text`), so that the tools a prompt carries tokenize into few tokens;
    its calls are in the corpus already, as the expert's actions (canonical JSON).
    """
    base = env.unwrapped
    instruction = str(base.instruction)
    texts = [instruction, *(fmt.system_prompt(instruction) for fmt in formats)]
    tools = getattr(base, "tools", None) or None
    if tools:
        texts.append(tools_text(tools))
    has_expert = "expert" in base.capabilities()
    tasks = list(base.tasks("train"))
    rng = random.Random(f"palaestra-tiny:{seed}:{env_id}")
    picked = rng.sample(tasks, min(episodes, len(tasks)))
    for task_id in picked:
        observation, _ = env.reset(seed=rng.randrange(2**31), options={"task_id": task_id})
        texts.append(observation)
        if not has_expert:
            continue
        for _ in range(base.max_steps):
            action = base.expert_action()
            texts.append(action)
            texts += [fmt.render(action) for fmt in formats]
            observation, _, terminated, truncated, _ = env.step(action)
            texts.append(observation)
            if terminated or truncated:
                break
    return texts


def tools_text(tools: Sequence[Mapping[str, Any]]) -> str:
    """The tools as the chat template writes them between ``<tools>`` and ``</tools>``.

    One line per function: ``name(arg: type, optional?: type (description)) description``,
    an enum's values joined by ``|`` in place of its type. For example Tally's ``add``:
    ``add(n: integer) Add a number (1 to 5) to the total.``
    """
    lines = []
    for tool in tools:
        function = tool.get("function", tool)
        schema = function.get("parameters") or {}
        required = schema.get("required") or []
        arguments = []
        for name, spec in (schema.get("properties") or {}).items():
            if "enum" in spec:
                kind = "|".join(json.dumps(v, ensure_ascii=False) for v in spec["enum"])
            elif isinstance(spec.get("type"), str):
                kind = spec["type"]
            elif "type" in spec:
                kind = "|".join(spec["type"])
            else:
                kind = "any"
            note = f" ({spec['description']})" if "description" in spec else ""
            arguments.append(f"{name}{'' if name in required else '?'}: {kind}{note}")
        about = f" {function['description']}" if "description" in function else ""
        lines.append(f"{function['name']}({', '.join(arguments)}){about}")
    return "\n".join(lines)


# -- the build --------------------------------------------------------------------------


def _train_tokenizer(texts: Sequence[str], config: TinyConfig) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``texts`` (deterministic)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size - len(TOOL_TOKENS),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS])
    return tokenizer


def _hf_tokenizer(tokenizer: Any, config: TinyConfig) -> Any:
    """The transformers wrapper of a trained tokenizer: special tokens, chat template."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[f"<|{role}|>" for role in ROLES],
        chat_template=CHAT_TEMPLATE,
        model_max_length=config.context_length,
        padding_side="left",
    )


def _init_model(config: TinyConfig, tokenizer: Any) -> Any:
    """A randomly initialised float32 ``LlamaForCausalLM`` (weights from ``config.seed``)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.context_length,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    # A private RNG state: building a model must not reseed the caller's torch.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = LlamaForCausalLM(model_config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.eval()
    return model


def _write_model(directory: Path, config: TinyConfig) -> None:
    """Build the tokenizer and the model of ``config`` into the existing ``directory``."""
    texts = build_corpus(config.env_ids, config.episodes_per_env, config.seed)
    tokenizer = _hf_tokenizer(_train_tokenizer(texts, config), config)
    model = _init_model(config, tokenizer)
    with _quiet_progress():
        tokenizer.save_pretrained(directory)
        model.save_pretrained(directory)
    corpus_hash = hashlib.sha256()
    for text in texts:
        corpus_hash.update(text.encode("utf-8") + b"\0")
    record = {
        "tiny_version": TINY_VERSION,
        "config": config.to_json(),
        "vocab_size": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
        "corpus": {
            "texts": len(texts),
            "characters": sum(len(text) for text in texts),
            "sha256": corpus_hash.hexdigest(),
        },
    }
    (directory / MARKER_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """No transformers progress bars inside (a 4 MB save needs none)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def build_tiny_model(
    out_dir: str | Path, config: TinyConfig | None = None, *, overwrite: bool = False
) -> Path:
    """Build the tiny model of ``config`` into ``out_dir``, atomically.

    Everything is written to a temporary folder next to ``out_dir`` and renamed into
    place at the end, so a crash never leaves half a model at ``out_dir``.

    Args:
        out_dir: The model folder to create. It must not exist, or be empty, unless
            ``overwrite`` is set.
        config: The recipe; ``TinyConfig()`` by default.
        overwrite: Replace an existing ``out_dir``.

    Returns:
        ``out_dir``, a Hugging Face model folder for ``AutoModelForCausalLM`` and
        ``AutoTokenizer``.

    Raises:
        FileExistsError: ``out_dir`` exists and is not empty (and ``overwrite`` is off),
            or another process created it meanwhile.
    """
    config = TinyConfig() if config is None else config
    out = Path(out_dir).expanduser()
    if not overwrite and _non_empty(out):
        raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        _write_model(tmp, config)
        if overwrite and _non_empty(out):
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                # rename(2) replaces an empty folder and fails on a non-empty one.
                os.replace(tmp, out)
            except OSError as error:
                if _non_empty(out):
                    raise FileExistsError(f"{out} was created while building") from error
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("built the tiny model in %s", out)
    return out


def _non_empty(path: Path) -> bool:
    """Whether ``path`` exists and is not an empty folder."""
    if not path.exists():
        return False
    return not path.is_dir() or any(path.iterdir())


# -- the cache --------------------------------------------------------------------------


def models_cache_dir() -> Path:
    """The folder that holds cached models (not created).

    ``$PALAESTRA_CACHE/models`` if that variable is set, else
    ``$XDG_CACHE_HOME/palaestra/models``, else ``~/.cache/palaestra/models``.
    """
    return cache_root() / "models"


def is_built(path: Path) -> bool:
    """Whether ``path`` holds a finished tiny model build."""
    return (path / MARKER_FILE).is_file() and (path / "config.json").is_file()


def tiny_model_path(config: TinyConfig | None = None, cache_dir: Path | None = None) -> Path:
    """The folder of the tiny model of ``config``, building it on first use.

    The build goes to ``<cache>/tiny-v{TINY_VERSION}-seed{seed}-{hash of config}`` and is
    reused after. Processes sharing a cache are safe: the folder appears by an atomic
    rename, and a file lock makes concurrent callers wait for one build instead of
    each doing their own.

    Args:
        config: The recipe; ``TinyConfig()`` by default.
        cache_dir: The folder for cached models; :func:`models_cache_dir` by default.

    Returns:
        The model folder.
    """
    config = TinyConfig() if config is None else config
    root = models_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    path = root / config.dir_name()
    if is_built(path):
        return path
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / f".{path.name}.lock"):
        if is_built(path):
            return path
        logger.info("building the tiny model into %s (once; a few seconds)", path)
        try:
            build_tiny_model(path, config, overwrite=path.exists())
        except FileExistsError:
            if not is_built(path):  # pragma: no cover - a foreign file in the way
                raise
    return path


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes (POSIX ``flock``; a no-op elsewhere).

    The atomic rename keeps the cache consistent without it; the lock only saves
    building the same model twice.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
