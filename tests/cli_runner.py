"""Run the ``palaestra`` command line as a user does: one subprocess per command."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(
    *args: str,
    stdin: str | None = None,
    timeout: float = 120,
    pythonpath: str | None = None,
    cwd: str | None = None,
) -> subprocess.CompletedProcess:
    """``python -m palaestra.cli ARGS`` without the caller's token; ``pythonpath`` is prepended.

    ``cwd`` runs it in that folder (for commands whose default output is ``runs/...``).
    """
    env = {k: v for k, v in os.environ.items() if k != "PALAESTRA_TOKEN"}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "palaestra.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        cwd=cwd,
    )
