# ComputeNet — two commands on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TSTAMP  := $(VENV)/.installed-test

.PHONY: demo test test-fast check lint format bench web services-start services-stop clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(TSTAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $@

## demo: create .venv, install, run the embedded network with real jobs
demo: $(STAMP)
	$(BIN)/cnet demo

## test: install test extras and system services, run the whole suite (CI runs this)
test: $(TSTAMP)
	bash scripts/test.sh

# What test-fast runs, said once: the recipe prints it before running it.
FAST_TESTS := tests/unit tests/contract
FAST_MARKS := not integration and not services and not e2e

## test-fast: unit and contract tests (fakes, local processes) on SQLite: no services, no
##   server or agent processes, no browser, no lint (`make check`; `make test` runs it all)
test-fast: $(TSTAMP)
	@echo "test-fast: pytest $(FAST_TESTS) -m '$(FAST_MARKS)'"
	@echo "  skipped here: integration (server/agent processes), services (Slurm, Ray,"
	@echo "  PostgreSQL), e2e (browser) and lint; \`make test\` runs them all, as CI does"
	$(BIN)/pytest -q $(FAST_TESTS) -m '$(FAST_MARKS)'

## check: lint and type-check, as CI does first (ruff check, ruff format --check, mypy --strict)
check: $(TSTAMP)
	bash scripts/lint.sh

format: $(TSTAMP)
	$(BIN)/ruff format src tests bench

## bench: run the benchmarks (prints figures; never part of the tests)
bench: $(TSTAMP)
	$(BIN)/python bench/schedule_cycle.py
	$(BIN)/python bench/api_submit.py

## web: rebuild the dashboard's static assets from web-src (needs Node.js)
web:
	bash scripts/build-web.sh

services-start: $(TSTAMP)
	bash scripts/services.sh start all

services-stop:
	bash scripts/services.sh stop all

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
