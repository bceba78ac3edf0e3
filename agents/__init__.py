"""palaestra.agents: LLM policies, reply formats, the rollout engine and the evaluator.

Heavy libraries (torch, transformers, vLLM) load only when a model is loaded, so
``import palaestra.agents`` stays fast.
"""

from palaestra.agents.baselines import EnvPolicy, ExpertPolicy, RandomPolicy
from palaestra.agents.env_pool import EnvPool, EpisodeEnv, LocalEnvs, RemoteEnvs
from palaestra.agents.evaluate import EvalConfig, EvalResult, run_eval, summarize
from palaestra.agents.formats import (
    FORMATS,
    Format,
    JSONFormat,
    ParsedReply,
    ReActFormat,
    ToolsFormat,
    get_format,
)
from palaestra.agents.heuristics import HeuristicPolicy, UniformPolicy
from palaestra.agents.models import ModelRef, load_model, resolve_model
from palaestra.agents.openai_policy import (
    OpenAIPolicy,
    PolicyConnectionError,
    PolicyRequestError,
    PolicyTimeoutError,
)
from palaestra.agents.policy import Completion, Message, Policy, TurnTokens
from palaestra.agents.policy_server import create_policy_app, run_policy_server
from palaestra.agents.policy_spec import make_policy
from palaestra.agents.rollout import (
    EpisodeSpec,
    RolloutConfig,
    RolloutEngine,
    RolloutStats,
    prompt_window,
)
from palaestra.agents.tiny import TinyConfig, build_tiny_model, tiny_model_path
from palaestra.agents.trajectory import Trajectory, TrajectoryWriter, read_trajectories
from palaestra.agents.transformers_policy import TransformersPolicy
from palaestra.agents.vllm_policy import VLLMPolicy

__all__ = [
    "FORMATS",
    "Completion",
    "EnvPolicy",
    "EnvPool",
    "EpisodeEnv",
    "EpisodeSpec",
    "EvalConfig",
    "EvalResult",
    "ExpertPolicy",
    "Format",
    "HeuristicPolicy",
    "JSONFormat",
    "LocalEnvs",
    "Message",
    "ModelRef",
    "OpenAIPolicy",
    "ParsedReply",
    "Policy",
    "PolicyConnectionError",
    "PolicyRequestError",
    "PolicyTimeoutError",
    "RandomPolicy",
    "ReActFormat",
    "RemoteEnvs",
    "RolloutConfig",
    "RolloutEngine",
    "RolloutStats",
    "TinyConfig",
    "ToolsFormat",
    "Trajectory",
    "TrajectoryWriter",
    "TransformersPolicy",
    "TurnTokens",
    "UniformPolicy",
    "VLLMPolicy",
    "build_tiny_model",
    "create_policy_app",
    "get_format",
    "load_model",
    "make_policy",
    "prompt_window",
    "read_trajectories",
    "resolve_model",
    "run_eval",
    "run_policy_server",
    "summarize",
    "tiny_model_path",
]
