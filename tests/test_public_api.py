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


def test_every_error_is_a_palaestra_error():
    for name in palaestra.errors.__all__:
        assert issubclass(getattr(palaestra.errors, name), palaestra.errors.PalaestraError)


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
        "Trajectory",
        "TrajectoryWriter",
        "TransformersPolicy",
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
        "IGNORE_INDEX",
        "SFTCollator",
        "SFTConfig",
        "SFTResult",
        "best_per_task",
        "build_examples",
        "dataset_card",
        "filter_trajectories",
        "from_dataset",
        "load_trajectories",
        "merge",
        "plan_tasks",
        "read_parquet",
        "render_evolution_table",
        "run_agentevol",
        "save_trajectories",
        "to_dataset",
        "tokenize_example",
        "train_sft",
        "turn_examples",
        "write_parquet",
    ]
    for name in palaestra.evol.__all__:
        assert hasattr(palaestra.evol, name), name


def test_evol_does_not_import_torch_on_import():
    import subprocess
    import sys

    code = "import sys, palaestra.evol, palaestra.agents; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
