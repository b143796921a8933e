# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080
# `make run` is for trying the relay locally: a known development token unless you set your own.
RELAY_INGEST_TOKENS ?= dev-token
export RELAY_INGEST_TOKENS

.PHONY: run test lint check-mappings clean system-deps fuzz lock audit

$(BIN)/aep-relay: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/aep-relay
	$(BIN)/aep-relay serve --host 0.0.0.0 --port $(PORT)

# Debian packages the tests use (a real redis-server, chromium for the browser tests, npm for
# Adobe's Web SDK and openssl for its fake Edge's certificate in tests/alloy, prometheus for
# promtool and the alert rules' end-to-end test), installed with apt-get only when missing;
# without root, say which are missing and stop. Installing prometheus starts no daemon here
# (no init system in containers); where one runs, tests use their own on another port.
SYSTEM_PACKAGES := redis-server:redis-server chromium:/usr/bin/chromium fonts-dejavu-core:/usr/share/fonts/truetype/dejavu \
	npm:npm openssl:openssl prometheus:promtool
system-deps:
	@missing=""; for entry in $(SYSTEM_PACKAGES); do pkg=$${entry%%:*}; probe=$${entry#*:}; \
		{ command -v "$$probe" >/dev/null || [ -e "$$probe" ]; } || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "make test needs these Debian packages, and installing them needs root:$$missing"; \
			echo "install them (sudo apt-get install$$missing) and run make test again"; exit 2; fi; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# Workers for pytest-xdist. Half of the suite's time is waiting (rate limits, restarts, the
# browser), so three workers beat two even on a 2-core machine; set 0 to run serially.
TEST_WORKERS ?= 3

# Adobe's Web SDK for tests/alloy, from npm as its package-lock.json pins it (no install scripts:
# the tests load alloy's prebuilt standalone file and run nothing else of the package).
ALLOY := tests/alloy/node_modules/@adobe/alloy/package.json
$(ALLOY): tests/alloy/package-lock.json | system-deps
	cd tests/alloy && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

test: $(BIN)/aep-relay system-deps $(ALLOY)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile
	$(BIN)/bandit --quiet --recursive app
	$(BIN)/pip-audit --require-hashes --disable-pip --progress-spinner off -r requirements.lock
	$(BIN)/aep-relay mappings test mappings
	$(BIN)/pytest -n $(TEST_WORKERS) --durations=25

lint: $(BIN)/aep-relay
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache tests/alloy/node_modules

# The browser tests (tests/ui, tests/alloy) drive Debian's chromium through Playwright (never
# `playwright install`, which downloads its own browser): system-deps installs it.
# Longer fuzzing than `make test` does: schemathesis on every route, hypothesis on parser and renderer.
FUZZ_EXAMPLES ?= 1000
fuzz: $(BIN)/aep-relay
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest tests/fuzz tests/unit/test_fuzz_parsing.py

# The image's pinned, hashed dependencies (runtime only), for every platform, from pyproject.toml.
lock: $(BIN)/aep-relay
	$(BIN)/uv pip compile pyproject.toml --universal --generate-hashes --python-version 3.11 \
	  --custom-compile-command "make lock" --quiet -o requirements.lock

# Fails on any unaudited package too (needs PyPI's per-release JSON API).
audit: $(BIN)/aep-relay
	$(BIN)/pip-audit --strict --require-hashes --disable-pip -r requirements.lock
