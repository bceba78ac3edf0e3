"""palaestra.evol: trajectory data, supervised fine-tuning and AgentEvol self-training.

Heavy libraries (torch, transformers, datasets, peft) load only when used.
"""

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
    write_parquet,
)
from palaestra.evol.examples import IGNORE_INDEX, tokenize_example, turn_examples
from palaestra.evol.sft import SFTCollator, SFTConfig, SFTResult, build_examples, train_sft

__all__ = [
    "IGNORE_INDEX",
    "AgentEvolConfig",
    "AgentEvolResult",
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
