"""``--ray`` is optional: nothing imports Ray without it; without Ray it names the extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from cli_runner import run_cli

MAZE = "palaestra/Maze-v0"


def test_an_eval_without_ray_flags_never_imports_ray(tmp_path):
    code = textwrap.dedent(
        f"""
        import sys
        from palaestra.cli import main
        import palaestra.evol.agentevol, palaestra.agents.evaluate
        status = main(["eval", "--policy", "expert", "--envs", "{MAZE}", "--limit", "2",
                       "--quiet", "--out", {str(tmp_path / "run")!r}])
        assert status == 0, status
        assert "ray" not in sys.modules, "ray was imported"
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True)


def test_ray_flags_without_ray_installed_say_what_to_install(tmp_path):
    # A package named ray that fails to import stands for an install without the extra.
    fake = tmp_path / "site" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    args = ["--policy", "expert", "--envs", MAZE, "--limit", "1", "--ray", "--quiet"]
    result = run_cli("eval", *args, "--out", str(tmp_path / "run"), pythonpath=str(fake.parent))
    assert result.returncode == 2, result.stderr
    assert "pip install 'palaestra[ray]'" in result.stderr
    assert not (tmp_path / "run" / "trajectories.jsonl").exists()


def test_the_ray_flags_are_documented():
    result = run_cli("eval", "--help")
    assert "--ray [ADDRESS]" in result.stdout and "--ray-workers" in result.stdout
    for method in ("agentevol", "agent-r"):
        result = run_cli("evolve", method, "--help")
        assert "--ray [ADDRESS]" in result.stdout and "--ray-workers" in result.stdout


def test_agent_r_hands_its_ray_settings_to_the_stages_it_shares_with_agentevol():
    from palaestra.evol.agent_r import AgentRConfig

    evol = AgentRConfig(ray="10.0.0.1:6379", ray_workers=3).evol()
    assert (evol.ray, evol.ray_workers) == ("10.0.0.1:6379", 3)
    assert AgentRConfig().evol().ray is None
