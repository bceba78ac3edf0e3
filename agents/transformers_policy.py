"""``TransformersPolicy``: a local Hugging Face causal LM, batched, on CPU or GPU.

Prompts are rendered with the tokenizer's own chat template, left-padded into
batches of at most ``max_batch_size`` rows (``n`` replies per conversation are
``n`` rows) and decoded by ``model.generate``. Generation runs in one worker
thread, so the event loop (env steps, HTTP) keeps going meanwhile; calls are
served one at a time, in order, which keeps seeded sampling reproducible.

Tools: a conversation given tools is rendered with ``apply_chat_template(...,
tools=...)`` (each call's ``arguments`` handed to the template as a dict), and its
replies are read by the tool parser of the template's family
(:mod:`palaestra.agents.tool_parsers`): the calls go to ``Completion.tool_calls``,
the text around them stays the completion's text.

Tokens: with ``record_tokens=True`` every completion carries its
:class:`~palaestra.agents.policy.TurnTokens` (the prompt ids fed to the model, the
ids generated up to the one that ended the reply, and their log-probabilities
under the sampling distribution), which online RL trains on as they are.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from palaestra.agents.policy import (
    Completion,
    Message,
    Policy,
    Tools,
    TurnTokens,
    truncate_at_stop,
)
from palaestra.agents.tool_parsers import (
    ToolParser,
    get_tool_parser,
    parser_for_template,
    template_message,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from palaestra.agents.models import ModelRef

__all__ = ["TransformersPolicy"]

logger = logging.getLogger(__name__)


class TransformersPolicy(Policy):
    """A local ``AutoModelForCausalLM`` with batched, left-padded generation.

    Args:
        model: A model name for :func:`palaestra.agents.models.resolve_model`
            (``"tiny"``, ``"smollm2"``, a directory), a ``ModelRef``, or a loaded model.
        tokenizer: The tokenizer, when ``model`` is a loaded model.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: Torch dtype name for loading (``"bfloat16"``...); the checkpoint's by default.
        max_batch_size: Most rows per ``generate`` call.
        name: What trajectories record as the model (the path by default).
        threads: CPU threads for torch (process-wide; ``None`` keeps torch's choice).
            On a small shared CPU one thread is often faster than several that
            contend with the env and client threads.
        tool_parser: How replies to conversations with tools are read (``"hermes"``,
            ``"llama3_json"``); by default the convention the chat template shows
            (``<tool_call>`` -> hermes), else hermes.
        record_tokens: Attach each reply's exact tokens and log-probabilities
            (:attr:`Completion.tokens`), for online RL.
        train_mode: A loaded model being trained (online RL): it is not moved or put
            in eval mode here; each ``generate`` puts it in eval mode and back.

    Example::

        policy = TransformersPolicy("tiny")
        [[reply]] = await policy.generate([[{"role": "user", "content": "hi"}]])
    """

    def __init__(
        self,
        model: str | Path | ModelRef | PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        max_batch_size: int = 32,
        name: str | None = None,
        threads: int | None = None,
        tool_parser: str | None = None,
        record_tokens: bool = False,
        train_mode: bool = False,
    ) -> None:
        try:
            import torch
            import transformers  # noqa: F401
        except ImportError as error:
            raise ImportError(
                "local models need torch and transformers: pip install 'palaestra[train]'"
            ) from error
        from palaestra.agents.models import ModelRef, load_model, resolve_model

        if threads is not None:
            torch.set_num_threads(threads)

        if isinstance(model, str | Path):
            model = resolve_model(str(model))
        if isinstance(model, ModelRef):
            self.name = name or model.name
            model, tokenizer = load_model(model, device=device, dtype=dtype)
        else:
            if tokenizer is None:
                raise ValueError("a loaded model needs its tokenizer")
            self.name = name or str(getattr(model.config, "_name_or_path", "") or "model")
            if not train_mode:
                model = model.to(device)
                model.eval()
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, not {max_batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_batch_size = max_batch_size
        self.record_tokens = record_tokens
        self.train_mode = train_mode
        limit = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        declared = int(getattr(tokenizer, "model_max_length", 0) or 0)
        if 0 < declared < 10**8:
            limit = min(limit, declared) if limit else declared
        self.context_length = limit or None
        template = getattr(tokenizer, "chat_template", None)
        template = template if isinstance(template, str) else None
        # A template that never mentions tools drops ``tools=`` silently: say so once.
        self._renders_tools = bool(template) and "tools" in str(template)
        self._warned_tools = False
        self.tool_parser: ToolParser = (
            get_tool_parser(tool_parser)
            if tool_parser is not None
            else parser_for_template(template) or get_tool_parser("hermes")
        )
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="palaestra-generate")
        self._lock = threading.Lock()

    # -- Policy -------------------------------------------------------------------------

    async def generate(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_tokens: int = 256,
        stop: Sequence[str] = (),
        seed: int | None = None,
        tools: Sequence[Tools | None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[list[Completion]]:
        """Reply to each conversation ``n`` times (see :meth:`Policy.generate`).

        ``should_stop``, when given, is asked after every decoding step (on the
        generation thread): once it answers True the call ends early, its replies cut
        where they were (the policy server uses it when every client of a call left).
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, not {n}")
        if not conversations:
            return []
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor,
            self.generate_sync,
            conversations,
            n,
            temperature,
            max_tokens,
            tuple(stop),
            seed,
            should_stop,
            tools,
        )

    def count_tokens(self, messages: Sequence[Message], tools: Tools | None = None) -> int:
        """Prompt tokens of ``messages`` (and ``tools``) under the chat template."""
        return len(self._prompt_ids(messages, tools))

    def describe(self) -> dict[str, Any]:
        """Name, backend, device and context length."""
        return {
            "name": self.name,
            "backend": type(self).__name__,
            "device": self.device,
            "context_length": self.context_length,
            "parameters": sum(p.numel() for p in self.model.parameters()),
        }

    async def aclose(self) -> None:
        """Stop the generation thread."""
        self._executor.shutdown(wait=False)

    # -- the work -----------------------------------------------------------------------

    def render(self, messages: Sequence[Message], tools: Tools | None = None) -> str:
        """The prompt text of ``messages`` (and ``tools``), with a generation prompt."""
        plain, extra = self._template_args(messages, tools)
        return self.tokenizer.apply_chat_template(
            plain, add_generation_prompt=True, tokenize=False, **extra
        )

    def _prompt_ids(self, messages: Sequence[Message], tools: Tools | None = None) -> list[int]:
        plain, extra = self._template_args(messages, tools)
        encoded = self.tokenizer.apply_chat_template(
            plain, add_generation_prompt=True, tokenize=True, return_dict=True, **extra
        )
        return list(encoded["input_ids"])

    def _template_args(
        self, messages: Sequence[Message], tools: Tools | None
    ) -> tuple[list[Message], dict[str, Any]]:
        """The messages as the template takes them, and ``tools=`` when there are tools.

        Without tools the template gets no ``tools`` argument at all, so a conversation
        without tools renders exactly as it always did.
        """
        plain = [template_message(m) for m in messages]
        if not tools:
            return plain, {}
        if not self._renders_tools and not self._warned_tools:
            self._warned_tools = True
            logger.warning(
                "the chat template of %s does not render tools: the model will not see them",
                self.name,
            )
        return plain, {"tools": [dict(t) for t in tools]}

    def generate_sync(
        self,
        conversations: Sequence[Sequence[Message]],
        n: int = 1,
        temperature: float = 1.0,
        max_tokens: int = 256,
        stop: Sequence[str] = (),
        seed: int | None = None,
        should_stop: Callable[[], bool] | None = None,
        tools: Sequence[Tools | None] | None = None,
    ) -> list[list[Completion]]:
        """The blocking twin of :meth:`generate` (for scripts and the policy server)."""
        import torch

        if tools is not None and len(tools) != len(conversations):
            raise ValueError(
                f"tools has {len(tools)} entries for {len(conversations)} conversations"
            )
        per_conversation = list(tools) if tools is not None else [None] * len(conversations)
        rows = [
            ids
            for conv, conv_tools in zip(conversations, per_conversation, strict=True)
            for ids in [self._prompt_ids(conv, conv_tools)] * n
        ]
        texts: list[Completion] = []
        training = self.train_mode and self.model.training
        if training:
            self.model.eval()
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            for start in range(0, len(rows), self.max_batch_size):
                if should_stop is not None and should_stop():
                    # Nobody waits for the rest: the remaining rows answer empty.
                    texts += [Completion("", len(r), 0, "stop") for r in rows[start:]]
                    break
                texts += self._generate_batch(
                    rows[start : start + self.max_batch_size],
                    temperature,
                    max_tokens,
                    stop,
                    should_stop,
                )
        if training:
            self.model.train()
        out = [texts[i * n : (i + 1) * n] for i in range(len(conversations))]
        return [
            [self._read_calls(c) for c in replies] if conv_tools else replies
            for replies, conv_tools in zip(out, per_conversation, strict=True)
        ]

    def _read_calls(self, completion: Completion) -> Completion:
        """``completion`` with its tool calls read out by the template family's parser."""
        parsed = self.tool_parser.parse(str(completion))
        if parsed.tool_calls is None:
            return completion
        return Completion(
            parsed.text,
            completion.prompt_tokens,
            completion.completion_tokens,
            "tool_calls",
            parsed.tool_calls,
            completion.tokens,
        )

    def _generate_batch(
        self,
        rows: list[list[int]],
        temperature: float,
        max_tokens: int,
        stop: Sequence[str],
        should_stop: Callable[[], bool] | None = None,
    ) -> list[Completion]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, StopStringCriteria

        tok = self.tokenizer
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.device)
        mask = torch.tensor(
            [[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device
        )
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": float(temperature), "top_k": 0, "top_p": 1.0}
            if temperature > 0
            else {"do_sample": False}
        )
        criteria: list[Any] = []
        ends: _RowEnds | None = None
        if self.record_tokens:
            # The stop strings are checked here, so the step where each row ended is
            # known: the tokens HF writes after that are padding, not the model's.
            ends = _RowEnds(StopStringCriteria(tok, list(stop)) if stop else None, len(rows), width)
            criteria.append(ends)
        elif stop:
            sampling["stop_strings"] = list(stop)
            sampling["tokenizer"] = tok
        if should_stop is not None:

            class _Asked(StoppingCriteria):
                def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                    return torch.full(
                        (input_ids.shape[0],),
                        should_stop(),
                        dtype=torch.bool,
                        device=input_ids.device,
                    )

            criteria.append(_Asked())
        if criteria:
            sampling["stopping_criteria"] = StoppingCriteriaList(criteria)
        if self.record_tokens:
            sampling["return_dict_in_generate"] = True
            sampling["output_scores"] = True
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=mask,
            max_new_tokens=max_tokens,
            pad_token_id=pad,
            eos_token_id=tok.eos_token_id,
            **sampling,
        )
        sequences = output.sequences if self.record_tokens else output
        completions = []
        eos_ids = {tok.eos_token_id, pad} - {None}
        generated = sequences[:, width:].tolist()
        chosen_logprobs: list[list[float]] = []
        if self.record_tokens and output.scores:
            # One log-softmax for the whole batch: per row and step, the chosen id's.
            steps = torch.stack(output.scores, dim=1).float().log_softmax(-1)
            ids = sequences[:, width : width + steps.shape[1]]
            chosen_logprobs = steps.gather(-1, ids.unsqueeze(-1)).squeeze(-1).tolist()
        for index, (row, prompt) in enumerate(zip(generated, rows, strict=True)):
            used = len(row)
            tokens = None
            if ends is not None:
                # The reply ends at its first end-of-turn token or where a stop string
                # ended it; what follows is padding (a pad id the model itself chose
                # before that stays: it is one of its tokens).
                if tok.eos_token_id in row:
                    used = row.index(tok.eos_token_id) + 1
                if ends.at[index] is not None:
                    used = min(used, ends.at[index] + 1)
                tokens = TurnTokens(
                    tuple(prompt), tuple(row[:used]), tuple(chosen_logprobs[index][:used])
                )
            else:
                for i, token in enumerate(row):
                    if token in eos_ids:
                        used = i + 1
                        break
            ended = used < len(row) or (row and row[used - 1] in eos_ids)
            text = tok.decode(row[:used], skip_special_tokens=True)
            text, stopped = truncate_at_stop(text, stop)
            reason = "stop" if ended or stopped or used < max_tokens else "length"
            completions.append(Completion(text, len(prompt), used, reason, tokens=tokens))
        return completions


class _RowEnds:
    """A stopping criterion that notes the step at which each row ended.

    It ends a row on a stop string (through ``StopStringCriteria``) or on the end
    of turn token (``model.generate`` ends those itself; noted here too), and keeps
    in ``at[row]`` the index, among the generated tokens, of the row's last token.
    """

    def __init__(self, stop_strings: Any, rows: int, prompt_width: int) -> None:
        self.stop_strings = stop_strings
        self.at: list[int | None] = [None] * rows
        self.prompt_width = prompt_width

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        step = input_ids.shape[1] - self.prompt_width - 1
        if self.stop_strings is None:
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        else:
            done = self.stop_strings(input_ids, scores, **kwargs)
        for row in torch.nonzero(done).flatten().tolist():
            if self.at[row] is None:
                self.at[row] = step
        return done
