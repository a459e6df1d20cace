# tierflow — every target does its own set-up on a fresh machine with only Python 3.11+ and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tierflow-installed
RUN_DAYS ?= 3

export GX_ANALYTICS_ENABLED := False
export AIRFLOW__COSMOS__ENABLE_TELEMETRY := False
export DO_NOT_TRACK := 1

.PHONY: setup run test lint bench-ingest bench-clv bench-pipeline bench-nights clean warehouse-stop

setup: $(STAMP)

# Reinstall only when the lock file (or the project metadata) changes.
$(STAMP): requirements.lock pyproject.toml
	@# a venv left half-made by an interrupted set-up (no pip) is made again
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	@# --compile-bytecode: the .pyc files of every dependency, written once here. Where
	@# PYTHONDONTWRITEBYTECODE is set (this kind of machine, many images) Python would otherwise
	@# compile Airflow, dbt, GX and pymc from source in every process: ~16 s of each night
	@# (docs/performance.md, "Stop 25")
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

run: setup
	$(BIN)/tierflow warehouse start
	$(BIN)/tierflow demo --if-absent
	$(BIN)/tierflow run --last $(RUN_DAYS)

# Two pytest workers, each taking one test module at a time (a module's fixtures are set up
# once), the modules with the longest tests first (tests/conftest.py): the end-to-end DAG runs
# are shared between both workers and the short modules fill the gaps at the end.
PYTEST_WORKERS ?= 2
test: setup
	$(BIN)/ruff check plugins dags tests
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check plugins dags tests

warehouse-stop: setup
	$(BIN)/tierflow warehouse stop

# Deletes the embedded warehouse's data too, also where it lives outside the checkout (as root:
# /var/lib/tierflow/warehouses/...).
clean:
	-$(BIN)/tierflow warehouse remove
	rm -rf .tierflow

# Issue 3 item 8: BENCH_ROWS order lines (default 5 million) through our ingest and through
# psql's \copy, side by side (rows/s, ratio, the loader's peak memory). psql comes from
# Debian's postgresql-client when missing (else the embedded wheel's own psql is used).
BENCH_ROWS ?= 5000000
BENCH_REPEAT ?= 3
bench-ingest: setup
	@command -v psql >/dev/null || { apt-get update -qq && apt-get install -y -qq postgresql-client; } \
		|| echo "postgresql-client not installed; using the embedded wheel's psql"
	$(BIN)/python bench/bench_ingest.py --rows $(BENCH_ROWS) --repeat $(BENCH_REPEAT)

# Issue 13 item 6: fit (on a sample of clv.fit_sample_size) and score the CLV models at
# CLV_CUSTOMERS synthetic customers; seconds and peak RSS (target < 60 s, < 1 GB on 2 cores).
# The first fit on a machine compiles pytensor's C code: measured here with a fresh compile dir.
CLV_CUSTOMERS ?= 100000
bench-clv: setup
	$(BIN)/python bench/bench_clv.py --customers $(CLV_CUSTOMERS); \
		cold=$$?; $(BIN)/python bench/bench_clv.py --customers $(CLV_CUSTOMERS) --warm && exit $$cold

# Issue 11 item 1: a fresh warehouse, `tierflow demo --customers $(BENCH_CUSTOMERS) --days 730`,
# night 1 (full) and night 2 (one day of new files) through the real DAG, and the core of the
# night as hand-written SQL (bench/core.sql) on the same order lines; prints per-task seconds
# and the ratio lines (docs/performance.md).
BENCH_CUSTOMERS ?= 50000
bench-pipeline: setup
	$(BIN)/python bench/bench_pipeline.py --customers $(BENCH_CUSTOMERS)

# Issue 11 item 2 over time: a full night, then BENCH_NIGHTS nights of one day of new files
# each, every night a `tierflow run --date` of its own; prints each night's wall and the growth
# per night (a night that costs its delta does not grow with the nights before it).
BENCH_NIGHTS ?= 20
bench-nights: setup
	$(BIN)/python bench/bench_nights.py --customers $(BENCH_CUSTOMERS) --nights $(BENCH_NIGHTS)
