"""The README's env tour is tested code: copied into a new package, it passes `palaestra check`.

The "Write your own env" section holds the env (a ``python`` block), its
registration in code (a second ``python`` block), the entry point of its package
(a ``toml`` block) and the commands to run (a ``bash`` block). These tests take
each block as a reader copies it.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import gymnasium
from cli_runner import run_cli

import palaestra
from palaestra.envs.checker import check

ROOT = Path(__file__).parents[1]
PLUGIN = ROOT / "tests" / "plugin" / "acme_envs" / "__init__.py"


def tour() -> str:
    """The README's "Write your own env" section."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## Write your own env")
    return text[start : text.index("\n## ", start)]


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", tour(), re.DOTALL | re.MULTILINE)


def readme_package(root: Path) -> tuple[str, str]:
    """Write the README's env as the package its pyproject snippet names, installed in ``root``.

    Returns:
        The env id and the ``module:Class`` entry point.
    """
    env_code = blocks("python")[0]
    (pyproject,) = blocks("toml")
    ((env_id, target),) = tomllib.loads(pyproject)["project"]["entry-points"][
        "palaestra.envs"
    ].items()
    module = target.split(":")[0]
    (root / module).mkdir()
    (root / module / "__init__.py").write_text(env_code)
    # What `pip install` leaves next to the package: the entry point in a dist-info.
    dist = root / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[palaestra.envs]\n{env_id} = {target}\n")
    return env_id, target


def readme_commands() -> list[list[str]]:
    (script,) = blocks("bash")
    return [line.split("#")[0].split() for line in script.splitlines() if line.strip()]


def test_the_plugin_env_is_the_readme_env_verbatim():
    env_code = blocks("python")[0]
    assert "class Coins(TextEnv):" in env_code
    source = PLUGIN.read_text()
    docstring_end = source.index('"""', 3) + 3
    assert source[docstring_end:].lstrip("\n") == env_code


def test_the_readme_env_as_a_new_package_passes_palaestra_check(tmp_path):
    env_id, target = readme_package(tmp_path)
    commands = readme_commands()
    assert ["palaestra", "envs"] in commands
    listed = {
        e["id"]: e for e in json.loads(run_cli("envs", "--json", pythonpath=str(tmp_path)).stdout)
    }
    assert listed[env_id]["class"] == target.replace(":", ".")
    # Every capability the tour promises is declared, so no check may skip.
    assert listed[env_id]["capabilities"] == [
        "available_actions",
        "expert",
        "random_action",
        "snapshot",
    ]

    check_command = next(c for c in commands if c[:2] == ["palaestra", "check"])
    result = run_cli(*check_command[1:], pythonpath=str(tmp_path))
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "[FAIL]" not in out and "[SKIP]" not in out, out
    assert f"{env_id}: 8 passed, 0 failed, 0 skipped" in out


def test_the_readme_registration_in_code_makes_the_env():
    env_code, register_code = blocks("python")
    saved = gymnasium.registry.get("acme/Coins-v0")
    namespace: dict = {"__name__": "readme_tour"}
    try:
        exec(env_code, namespace)  # the README block, as a reader pastes it
        exec(register_code, namespace)
        assert palaestra.env_class("acme/Coins-v0") is namespace["Coins"]
        results = check("acme/Coins-v0", episodes=2)
    finally:
        if saved is None:
            del gymnasium.registry["acme/Coins-v0"]
        else:
            gymnasium.registry["acme/Coins-v0"] = saved
    assert [r.status for r in results] == ["pass"] * 7 + ["skip"], results  # no server given
