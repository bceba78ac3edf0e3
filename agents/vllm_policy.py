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

from palaestra.agents.policy import Completion, Message, Policy

__all__ = ["VLLMPolicy"]


class VLLMPolicy(Policy):
    """A model loaded by ``vllm.LLM``.

    Args:
        model: A Hugging Face model directory or hub id that vLLM can load.
        **llm_kwargs: Passed to ``vllm.LLM`` (``tensor_parallel_size``,
            ``gpu_memory_utilization``, ``max_model_len``...).

    Raises:
        ImportError: vLLM is not installed (``pip install 'palaestra[vllm]'``).
    """

    def __init__(self, model: str, **llm_kwargs: Any) -> None:
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

    async def generate(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        n: int = 1,
        temperature: float = 1.0,
        max_tokens: int = 256,
        stop: Sequence[str] = (),
        seed: int | None = None,
    ) -> list[list[Completion]]:
        """Reply to each conversation ``n`` times (see :meth:`Policy.generate`)."""
        params = self._vllm.SamplingParams(
            n=n, temperature=temperature, max_tokens=max_tokens, stop=list(stop) or None, seed=seed
        )
        plain = [[{"role": m["role"], "content": m["content"]} for m in c] for c in conversations]
        loop = asyncio.get_running_loop()
        outputs = await loop.run_in_executor(
            self._executor, lambda: self.llm.chat(plain, params, use_tqdm=False)
        )
        return [
            [
                Completion(
                    choice.text,
                    len(out.prompt_token_ids),
                    len(choice.token_ids),
                    choice.finish_reason or "stop",
                )
                for choice in out.outputs
            ]
            for out in outputs
        ]

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Prompt tokens under the model's chat template."""
        plain = [{"role": m["role"], "content": m["content"]} for m in messages]
        return len(self.tokenizer.apply_chat_template(plain, add_generation_prompt=True))

    async def aclose(self) -> None:
        """Stop the worker thread."""
        self._executor.shutdown(wait=False)
