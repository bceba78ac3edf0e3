"""``VLLMPolicy``: in-process ``vllm.LLM`` for GPU rollouts (the ``vllm`` extra).

vLLM does its own continuous batching: one ``LLM.chat`` call takes every
conversation of a turn. It runs in a worker thread so the event loop keeps
stepping envs. Needs a GPU; on a machine without one, use ``palaestra
serve-policy`` or ``vllm serve`` elsewhere and :class:`OpenAIPolicy`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from palaestra.agents.policy import Completion, Message, Policy, Tools
from palaestra.agents.tool_parsers import (
    ToolParser,
    get_tool_parser,
    openai_message,
    parser_for_template,
    template_message,
    tools_key,
)

__all__ = ["VLLMPolicy"]


class VLLMPolicy(Policy):
    """A model loaded by ``vllm.LLM``.

    Args:
        model: A Hugging Face model directory or hub id that vLLM can load.
        tool_parser: How replies to conversations with tools are read (``"hermes"``,
            ``"llama3_json"``); by default the chat template's convention, else hermes.
        **llm_kwargs: Passed to ``vllm.LLM`` (``tensor_parallel_size``,
            ``gpu_memory_utilization``, ``max_model_len``...).

    Raises:
        ImportError: vLLM is not installed (``pip install 'palaestra[vllm]'``).
    """

    def __init__(self, model: str, *, tool_parser: str | None = None, **llm_kwargs: Any) -> None:
        try:
            import vllm
        except ImportError as error:
            raise ImportError(
                "VLLMPolicy needs vLLM and a GPU: pip install 'palaestra[vllm]'; without a GPU "
                "use `palaestra serve-policy` and --policy openai:URL"
            ) from error
        self._vllm = vllm
        self.llm = vllm.LLM(model=model, **llm_kwargs)
        self.name = model
        self.tokenizer = self.llm.get_tokenizer()
        self.context_length = int(self.llm.llm_engine.model_config.max_model_len)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="palaestra-vllm")
        template = getattr(self.tokenizer, "chat_template", None)
        self.tool_parser: ToolParser = (
            get_tool_parser(tool_parser)
            if tool_parser is not None
            else parser_for_template(template if isinstance(template, str) else None)
            or get_tool_parser("hermes")
        )

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
    ) -> list[list[Completion]]:
        """Reply to each conversation ``n`` times (see :meth:`Policy.generate`)."""
        params = self._vllm.SamplingParams(
            n=n, temperature=temperature, max_tokens=max_tokens, stop=list(stop) or None, seed=seed
        )
        per_conversation = list(tools) if tools is not None else [None] * len(conversations)
        # vLLM takes one tool list per chat call: one call per distinct tool list.
        groups: dict[str, list[int]] = {}
        for i, conv_tools in enumerate(per_conversation):
            groups.setdefault(tools_key(conv_tools), []).append(i)
        loop = asyncio.get_running_loop()
        results: list[list[Completion]] = [[] for _ in conversations]
        for indices in groups.values():
            group_tools = per_conversation[indices[0]]
            if group_tools:
                # vLLM turns JSON-text arguments into dicts for the template itself.
                chats = [[openai_message(m) for m in conversations[i]] for i in indices]
                extra: dict[str, Any] = {"tools": [dict(t) for t in group_tools]}
            else:
                chats = [[template_message(m) for m in conversations[i]] for i in indices]
                extra = {}
            outputs = await loop.run_in_executor(
                self._executor,
                lambda chats=chats, extra=extra: self.llm.chat(
                    chats, params, use_tqdm=False, **extra
                ),
            )
            for i, out in zip(indices, outputs, strict=True):
                results[i] = [
                    self._completion(choice, len(out.prompt_token_ids), bool(group_tools))
                    for choice in out.outputs
                ]
        return results

    def _completion(self, choice: Any, prompt_tokens: int, read_calls: bool) -> Completion:
        text = choice.text
        reason = choice.finish_reason or "stop"
        if read_calls:
            parsed = self.tool_parser.parse(text)
            if parsed.tool_calls is not None:
                return Completion(
                    parsed.text,
                    prompt_tokens,
                    len(choice.token_ids),
                    "tool_calls",
                    parsed.tool_calls,
                )
        return Completion(text, prompt_tokens, len(choice.token_ids), reason)

    def count_tokens(self, messages: Sequence[Message], tools: Tools | None = None) -> int:
        """Prompt tokens under the model's chat template (with ``tools``, when given)."""
        plain = [template_message(m) for m in messages]
        extra: dict[str, Any] = {"tools": [dict(t) for t in tools]} if tools else {}
        encoded = self.tokenizer.apply_chat_template(
            plain, add_generation_prompt=True, tokenize=True, return_dict=True, **extra
        )
        return len(encoded["input_ids"])

    async def aclose(self) -> None:
        """Stop the worker thread."""
        self._executor.shutdown(wait=False)
