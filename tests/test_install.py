"""`pip install .` and `pip install -e .` both give working imports of the mapped subpackages."""

import subprocess
import sys
from pathlib import Path

import pytest

import palaestra
import palaestra.envs

ROOT = Path(__file__).parents[1]

PROBE = (
    "import palaestra, palaestra.envs, palaestra.servers, palaestra.agents, palaestra.evol, "
    "palaestra.scale, "
    "palaestra.envs.maze, palaestra.envs.wordle\n"
    "print(palaestra.envs.__file__)\n"
    "env = palaestra.make('palaestra/Wordle-v0'); env.reset(options={'task_id': 0})\n"
    "print(env.step(env.expert_action())[0][:20])\n"
)


def test_current_install_maps_folders_to_subpackages():
    assert Path(palaestra.envs.__file__).parent.name == "envs"
    assert Path(palaestra.__file__).parent.name == "palaestra"


@pytest.mark.slow
def test_regular_install_imports_from_site_packages(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (target / "palaestra" / "envs" / "wordle" / "answers.txt").exists()
    assert (target / "palaestra" / "envs" / "textcraft" / "recipes.json").exists()
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(str(target))
