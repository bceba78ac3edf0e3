# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install java chromium demo test lint bench clean

# ScienceWorld runs on a JVM: install a Java runtime where none is on PATH (Debian/Ubuntu).
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "no java on PATH: installing openjdk-17-jre-headless for ScienceWorld"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q openjdk-17-jre-headless; }

# The viewer's browser tests drive a real headless Chromium: Debian's, as playwright's own
# browser download cannot be fetched everywhere (tests/view/conftest.py).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "no chromium on PATH: installing Debian's chromium for the viewer's browser tests"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

$(BIN)/.installed: pyproject.toml | java chromium
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed  ## create .venv and install palaestra with the dev extra

demo: install  ## self-train the tiny model end to end (BC, AgentEvol); print the table
	$(BIN)/palaestra demo

lint: install  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint  ## lint, then every test (slow ones included)
	PALAESTRA_REQUIRE_BROWSER=1 $(BIN)/pytest -m "" -q --durations=25

bench: install  ## the benchmark tables: server and client throughput, sessions, per-env speed and cost, fork vs replay, tools, Ray, distributed SFT
	$(BIN)/python bench/server_throughput.py
	$(BIN)/python bench/server_sessions.py
	$(BIN)/python bench/client_throughput.py
	$(BIN)/python bench/env_speed.py
	$(BIN)/python bench/rollout_speed.py
	$(BIN)/python bench/mcts_speed.py
	$(BIN)/python bench/sft_speed.py
	$(BIN)/python bench/tool_overhead.py
	$(BIN)/python bench/ray_scale.py
	$(BIN)/python bench/ray_eval.py
	$(BIN)/python bench/sft_distributed.py
	$(BIN)/python bench/grpo_speed.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache runs
