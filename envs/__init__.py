"""The text-env protocol, the registry, the checker, and the built-in envs.

This package imports nothing from ``palaestra.servers``, ``palaestra.agents`` or
``palaestra.evol``.
"""

from palaestra.envs.core import CHARSET, EnvSnapshot, Outcome, TaskId, TextEnv, echo_action
from palaestra.envs.registration import (
    ENTRY_POINT_GROUP,
    EnvInfo,
    env_class,
    list_envs,
    load_plugins,
    register,
    set_remote_factory,
)
from palaestra.envs.tools import (
    ToolCall,
    ToolCallError,
    ToolEnv,
    parse_tool_call,
    tool,
    tool_call_action,
)

__all__ = [
    "CHARSET",
    "ENTRY_POINT_GROUP",
    "EnvInfo",
    "EnvSnapshot",
    "Outcome",
    "TaskId",
    "TextEnv",
    "ToolCall",
    "ToolCallError",
    "ToolEnv",
    "echo_action",
    "env_class",
    "list_envs",
    "load_plugins",
    "parse_tool_call",
    "register",
    "set_remote_factory",
    "tool",
    "tool_call_action",
]

# Built-in envs: registered by import path, so their modules load on first use.
register("palaestra/Maze-v0", "palaestra.envs.maze:MazeEnv")
register("palaestra/MazeCells-v0", "palaestra.envs.maze:MazeCellsEnv")
register("palaestra/Wordle-v0", "palaestra.envs.wordle:WordleEnv")
register("palaestra/BabyAI-v0", "palaestra.envs.babyai:BabyAIEnv")
register("palaestra/SciWorld-v0", "palaestra.envs.sciworld:SciWorldEnv")
register("palaestra/TextWorld-v0", "palaestra.envs.textworld:TextWorldEnv")
register("palaestra/ALFWorld-v0", "palaestra.envs.textworld:ALFWorldEnv")
register("palaestra/TextCraft-v0", "palaestra.envs.textcraft:TextCraftEnv")
register("palaestra/SQL-v0", "palaestra.envs.sql:SQLEnv")
register("palaestra/WebShop-v0", "palaestra.envs.webshop:WebShopEnv")
register("palaestra/Weather-v0", "palaestra.envs.weather:WeatherEnv")
register("palaestra/Movie-v0", "palaestra.envs.movie:MovieEnv")
register("palaestra/Academia-v0", "palaestra.envs.academia:AcademiaEnv")
register("palaestra/Todo-v0", "palaestra.envs.todo:TodoEnv")
register("palaestra/Sheet-v0", "palaestra.envs.sheet:SheetEnv")
