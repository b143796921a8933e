# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080
# `make run` is for trying the relay locally: a known development token unless you set your own.
RELAY_INGEST_TOKENS ?= dev-token
export RELAY_INGEST_TOKENS

.PHONY: run test lint check-mappings clean

$(BIN)/aep-relay: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/aep-relay
	$(BIN)/aep-relay serve --host 0.0.0.0 --port $(PORT)

test: $(BIN)/aep-relay
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile
	$(BIN)/bandit --quiet --recursive app
	$(BIN)/aep-relay mappings test mappings
	$(BIN)/pytest

lint: $(BIN)/aep-relay
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
