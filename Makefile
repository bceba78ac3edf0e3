# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed  ## create .venv and install palaestra with the dev extra

demo: install  ## serve every env and let the experts play over HTTP
	$(BIN)/palaestra demo

lint: install  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint  ## lint, then every test (slow ones included)
	$(BIN)/pytest -m "" -q

bench: install  ## client throughput table (1, 8, 64 sessions vs in-process)
	$(BIN)/python bench/client_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache runs
