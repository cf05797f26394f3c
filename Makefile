# retention-processor: the commands developers and CI run.  `make help` lists them.
#
# `make test` is the whole suite: install (once), lint, type-check, then every test
# under tests/ against a real Kafka broker and redis-server that the test session
# starts and stops itself (see docs/local-stack.md).  The tiers run alone:
# `make unit` (no broker, no worker; the third-party checkers promtool, the
# AsyncAPI parser and compose-go run as programs), `make integration` (the
# harness: broker, Redis, local stack), `make e2e` (real worker processes).
# Tests marked `slow` (pyproject.toml) are left out of all of these for the time
# budget and run by `make test-slow` alone.
# CHANGELOG.md gives their recorded times (the tiers: docs/testing.md).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The first Python >= 3.11 on PATH (override: make PYTHON=/path/to/python3.12 install).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c "import sys; sys.exit(sys.version_info < (3, 11))" \
	2>/dev/null && { echo $$p; break; }; done)

.PHONY: help venv install jars lint typecheck test test-slow unit integration e2e demo bench clean distclean

help:  ## list the targets
	@awk -F ':.*## ' '/^[a-z][a-z0-9 -]*:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv install: $(STAMP)  ## create .venv (Python 3.11+) and install the package with its dev tools

# Re-runs only when the dependencies change; pins come from constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "make: no Python 3.11+ on PATH (install python3.11 or set PYTHON=...)" >&2; exit 1; }
	@test -x $(BIN)/python || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

jars: $(STAMP)  ## download the Apache Kafka jars for the local stack (once; mvn or direct)
	$(BIN)/python -m streams.local.kafka --fetch

lint: $(STAMP)  ## ruff check + ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)  ## mypy (strict, settings in pyproject.toml)
	$(BIN)/mypy

test: $(STAMP) lint typecheck jars  ## lint, type-check and run every test but the slow ones (real Kafka + Redis)
	$(BIN)/pytest --durations=25 -m "not slow" tests

test-slow: $(STAMP) jars  ## the slow tier: the tests `make test` leaves out (marked slow)
	$(BIN)/pytest --durations=25 -m slow tests

unit: $(STAMP)  ## tier 1: unit tests only (no broker, no worker process)
	$(BIN)/pytest -q tests/unit

.PHONY: fuzz
fuzz: $(STAMP)  ## the pure-path fuzz (tests/unit/agents/test_fuzz_pipeline.py), 10,000 examples a test
	RETENTION_FUZZ_PROFILE=long $(BIN)/pytest -q tests/unit/agents/test_fuzz_pipeline.py

integration: $(STAMP) jars  ## tier 2: the harness against a real Kafka broker + Redis
	$(BIN)/pytest -m "not slow" tests/integration

e2e: $(STAMP) jars  ## tier 3: real worker processes end to end (Kafka + Redis)
	$(BIN)/pytest -m "not slow" tests/e2e

demo: $(STAMP)  ## run the demo on the local stack
	$(BIN)/retention demo

bench: $(STAMP)  ## run the throughput benchmark
	$(BIN)/retention bench

clean:  ## remove caches and build output (keeps .venv and the Kafka jar cache)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean  ## also remove .venv
	rm -rf $(VENV)
