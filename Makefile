# Daisy: the two commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA ?= var

.PHONY: run test lint test-deps stress bench clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv && \
	    $(PYTHON) -m venv $(VENV); \
	  else echo "python3 -m venv failed: install python3-venv" >&2; exit 1; fi; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

## run: set up ./var on first use (dev config, demo domain and user) and serve in the foreground
run: $(VENV)/.installed
	@DATA=$(DATA) VENV=$(VENV) ./scripts/dev-run

## test-deps: Debian tools the integration tests drive (as root; otherwise they must be present)
test-deps:
	@./scripts/test-deps

## test: install everything, then run the whole suite: TEST_JOBS processes (default 2), then
## the tests marked serial (timing and throughput checks) alone
TEST_JOBS ?= 2
test: $(VENV)/.installed test-deps
	$(PY) -m pytest -q -n $(TEST_JOBS) -m "not serial" --durations=15
	$(PY) -m pytest -q -m serial

## bench: Daisy next to Postfix + Dovecot (as root; installs them on first use), ~13 minutes;
## regenerates docs/performance.md. BENCH_ARGS=--quick for a short check of the harness.
bench: $(VENV)/.installed
	$(PY) bench/run $(BENCH_ARGS)

## stress: the long reliability runs (crash loop, fuzz, floods), bounded by STRESS_TIMEOUT s
STRESS_TIMEOUT ?= 3600
stress: $(VENV)/.installed test-deps
	DAISY_STRESS=1 DAISY_REPORT=$${DAISY_REPORT:-var/stress-report.jsonl} \
	  timeout --signal=INT --kill-after=60 $(STRESS_TIMEOUT) $(PY) -m pytest -q tests/reliability

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
