"""Layers hold at import time: importing a layer loads only the stacks it may.

Dependencies point one way (envs <- servers <- agents <- evol); each import runs in
a fresh interpreter, so what another test imported cannot hide a leak.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SERVER_STACK = ("fastapi", "starlette", "uvicorn", "aiohttp", "httpx", "prometheus_client")
ML_STACK = ("torch", "transformers", "datasets", "accelerate", "peft", "trl", "vllm")
# Ray is loaded only where the [ray] extra is used: palaestra.scale, or lazily.
RAY = ("ray",)

# module -> (heavy modules it must not load, heavy modules it does load)
LAYERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "palaestra.errors": (SERVER_STACK + ML_STACK + RAY + ("pydantic",), ()),
    "palaestra.envs": (SERVER_STACK + ML_STACK + RAY + ("pydantic",), ("gymnasium",)),
    "palaestra": (SERVER_STACK + ML_STACK + RAY + ("pydantic",), ("gymnasium",)),
    "palaestra.servers": (ML_STACK + RAY, ("fastapi", "aiohttp", "httpx")),
    "palaestra.agents": (ML_STACK + RAY, ("fastapi", "aiohttp")),
    # Beside agents: it imports envs, servers and agents, and Ray.
    "palaestra.scale": (ML_STACK, ("ray", "fastapi", "aiohttp")),
    "palaestra.evol": (ML_STACK + RAY, ("fastapi", "aiohttp")),
    "palaestra.view": (ML_STACK + RAY, ("fastapi",)),
    # Every command without --ray: the parser and the serve path load no Ray.
    "palaestra.cli": (ML_STACK + RAY, ()),
}


def loaded_after_import(module: str, names: tuple[str, ...]) -> list[str]:
    code = (
        f"import sys, json, {module}; "
        f"print(json.dumps([n for n in {list(names)!r} if n in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", LAYERS)
def test_each_layer_loads_only_the_stacks_it_may(module: str) -> None:
    forbidden, expected = LAYERS[module]
    loaded = loaded_after_import(module, forbidden + expected)
    assert not set(loaded) & set(forbidden), f"import {module} loaded {sorted(loaded)}"
    # The probe sees what a layer does load, so an empty answer above means something.
    assert set(expected) <= set(loaded), f"import {module} loaded {sorted(loaded)}"


def test_the_server_names_still_resolve_from_the_top_package() -> None:
    code = (
        "import sys, palaestra; assert 'fastapi' not in sys.modules; "
        "from palaestra import RemoteEnv, create_app; import gymnasium; "
        "assert RemoteEnv.__module__ == 'palaestra.servers.remote_env'; "
        "assert callable(create_app) and 'fastapi' in sys.modules; "
        "assert 'RemoteEnv' in dir(palaestra)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_errors_module_imports_nothing_of_palaestra() -> None:
    import ast

    import palaestra.errors

    with open(palaestra.errors.__file__, encoding="utf-8") as file:
        tree = ast.parse(file.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("palaestra"), node.module
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("palaestra") for a in node.names)
