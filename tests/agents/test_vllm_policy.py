"""In-process vLLM: runs only where vllm and a GPU exist (skipped here, and said so)."""

import asyncio
import importlib.util

import pytest


def _gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


needs_vllm_gpu = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None or not _gpu(),
    reason="VLLMPolicy needs the vllm package and a CUDA GPU (neither is on this machine)",
)


@needs_vllm_gpu
def test_vllm_policy_generates_batched_replies(tmp_path):
    from palaestra.agents.tiny import TinyConfig, build_tiny_model
    from palaestra.agents.vllm_policy import VLLMPolicy

    path = build_tiny_model(tmp_path / "tiny", TinyConfig())
    policy = VLLMPolicy(str(path), gpu_memory_utilization=0.2, enforce_eager=True)
    chats = [[{"role": "user", "content": f"task {i}"}] for i in range(4)]
    replies = asyncio.run(policy.generate(chats, n=2, temperature=1.0, max_tokens=8, seed=1))
    assert [len(r) for r in replies] == [2, 2, 2, 2]
    assert all(c.completion_tokens <= 8 and c.prompt_tokens > 0 for r in replies for c in r)
    again = asyncio.run(policy.generate(chats, n=2, temperature=1.0, max_tokens=8, seed=1))
    assert replies == again
    assert policy.count_tokens(chats[0]) == replies[0][0].prompt_tokens


def test_vllm_policy_without_vllm_says_how_to_get_it():
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    from palaestra.agents.vllm_policy import VLLMPolicy

    with pytest.raises(ImportError, match=r"palaestra\[vllm\]"):
        VLLMPolicy("some/model")
