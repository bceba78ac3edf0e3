"""palaestra.evol: trajectory data, supervised fine-tuning, AgentEvol, Agent-R and GRPO.

Heavy libraries (torch, transformers, datasets, peft) load only when used.
"""

from palaestra.evol.agent_r import AgentRConfig, run_agent_r
from palaestra.evol.agentevol import (
    AgentEvolConfig,
    AgentEvolResult,
    plan_tasks,
    render_evolution_table,
    run_agentevol,
)
from palaestra.evol.data import (
    best_per_task,
    dataset_card,
    filter_trajectories,
    from_dataset,
    load_trajectories,
    merge,
    read_parquet,
    save_trajectories,
    to_dataset,
    transcript,
    write_parquet,
)
from palaestra.evol.examples import IGNORE_INDEX, tokenize_example, turn_examples
from palaestra.evol.grpo import GRPOConfig, GRPOResult, run_grpo
from palaestra.evol.mcts import MCTS, MCTSConfig, Tree, load_trees, save_trees
from palaestra.evol.sft import SFTCollator, SFTConfig, SFTResult, build_examples, train_sft

__all__ = [
    "IGNORE_INDEX",
    "MCTS",
    "AgentEvolConfig",
    "AgentEvolResult",
    "AgentRConfig",
    "GRPOConfig",
    "GRPOResult",
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
