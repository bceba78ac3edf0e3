"""The public surface is pinned: changing it is a deliberate act."""

from pathlib import Path

import palaestra
import palaestra.envs
import palaestra.errors
import palaestra.servers


def test_palaestra_exports():
    assert sorted(palaestra.__all__) == [
        "AsyncEnvClient",
        "EnvInfo",
        "EnvSnapshot",
        "Outcome",
        "RemoteEnv",
        "Settings",
        "TaskId",
        "TextEnv",
        "__version__",
        "create_app",
        "env_class",
        "errors",
        "list_envs",
        "make",
        "register",
    ]
    for name in palaestra.__all__:
        assert hasattr(palaestra, name), name


def test_subpackage_exports_resolve():
    for module in (palaestra.envs, palaestra.servers, palaestra.errors):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_errors_exports():
    names = sorted(palaestra.errors.__all__)
    assert names == [
        "ActionTooLongError",
        "BadRequestError",
        "BodyTooLargeError",
        "CapacityError",
        "ContractError",
        "EnvBusyError",
        "EnvError",
        "EnvFailedError",
        "EnvUnavailableError",
        "EpisodeOverError",
        "NotSupportedError",
        "PalaestraError",
        "PolicyConnectionError",
        "PolicyRequestError",
        "PolicyTimeoutError",
        "ReplicaLostError",
        "RequestTimeoutError",
        "ServerError",
        "ServerUnavailableError",
        "SessionBrokenError",
        "SessionConflictError",
        "SessionNotFoundError",
        "StepTimeoutError",
        "UnauthorizedError",
        "UnknownEnvError",
        "UnknownSplitError",
        "UnknownTaskError",
        "WIRE_ERRORS",
        "error_from_wire",
    ]


def test_every_error_is_a_palaestra_error_with_a_status_and_a_code():
    import palaestra.agents

    classes = [getattr(palaestra.errors, n) for n in palaestra.errors.__all__ if n[0].isupper()]
    classes = [c for c in classes if isinstance(c, type)]
    for cls in classes:
        assert issubclass(cls, palaestra.errors.PalaestraError), cls
        assert isinstance(cls.status, int) and cls.code and cls.code.islower(), cls
        assert cls.__name__ in (palaestra.errors.__doc__ or ""), f"{cls} not in the table"
    # The policy errors are the errors module's, re-exported where they are raised.
    assert palaestra.agents.PolicyRequestError is palaestra.errors.PolicyRequestError
    # One code per class, but EnvFailedError: the wire form of EnvError, with its code.
    codes = [cls.code for cls in classes if "code" in vars(cls)]
    assert len(codes) == len(set(codes)), codes
    assert palaestra.errors.WIRE_ERRORS["env_error"] is palaestra.errors.EnvFailedError


def test_envs_does_not_import_the_layers_above():
    """Dependencies point one way: envs <- servers <- agents <- evol."""
    envs_dir = Path(palaestra.envs.__file__).parent
    for path in envs_dir.rglob("*.py"):
        text = path.read_text()
        for layer in ("palaestra.servers", "palaestra.agents", "palaestra.evol"):
            assert f"from {layer}" not in text and f"import {layer}" not in text, (path, layer)


def test_agents_exports():
    import palaestra.agents

    assert sorted(palaestra.agents.__all__) == [
        "Completion",
        "EnvPolicy",
        "EnvPool",
        "EpisodeEnv",
        "EpisodeSpec",
        "EvalConfig",
        "EvalResult",
        "ExpertPolicy",
        "FORMATS",
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
    for name in palaestra.agents.__all__:
        assert hasattr(palaestra.agents, name), name


def test_evol_exports():
    import palaestra.evol

    assert sorted(palaestra.evol.__all__) == [
        "AgentEvolConfig",
        "AgentEvolResult",
        "AgentRConfig",
        "GRPOConfig",
        "GRPOResult",
        "IGNORE_INDEX",
        "MCTS",
        "MCTSConfig",
        "SFTCollator",
        "SFTConfig",
        "SFTResult",
        "Tree",
        "best_per_task",
        "build_examples",
        "dataset_card",
        "filter_trajectories",
        "from_dataset",
        "load_trajectories",
        "load_trees",
        "merge",
        "plan_tasks",
        "read_parquet",
        "render_evolution_table",
        "run_agent_r",
        "run_agentevol",
        "run_grpo",
        "save_trajectories",
        "save_trees",
        "to_dataset",
        "tokenize_example",
        "train_sft",
        "transcript",
        "turn_examples",
        "write_parquet",
    ]
    for name in palaestra.evol.__all__:
        assert hasattr(palaestra.evol, name), name
