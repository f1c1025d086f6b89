# InferWatch: `make demo` sets up and runs everything locally; `make test` runs the suite.
# Every install step lives here: three locked virtual environments (pipeline and Superset,
# which cannot share SQLAlchemy; Spark, the dbt-spark target of issue 10), installed with uv
# from requirements/*.lock.txt.

SHELL := /bin/bash
PYTHON ?= python3.11
UV_VERSION := 0.13.9
VENV := .venv
PIPE := $(VENV)/pipeline
SUPERSET := $(VENV)/superset
SPARK := $(VENV)/spark
UV := $(VENV)/uv/bin/uv
export UV_PYTHON_DOWNLOADS := never
# Compile every installed module to bytecode at install time (uv does not by default): where
# Python cannot write its cache (PYTHONDONTWRITEBYTECODE, a read-only install), each
# `inferwatch run` and each Airflow task otherwise compiles ~2,200 modules from source again.
export UV_COMPILE_BYTECODE := 1
export INFERWATCH_DATA_DIR ?= $(CURDIR)/data
IW := $(PIPE)/bin/inferwatch
# pytest-xdist workers for `make test`: the suite waits on servers and schedules as much as it
# computes, so two workers on two cores finish well before one.
TEST_WORKERS ?= 2

.PHONY: setup spark services browser demo stop test lint lock clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(UV):
	$(PYTHON) -m venv $(VENV)/uv
	$(VENV)/uv/bin/pip install -q uv==$(UV_VERSION)

$(PIPE)/.installed: requirements/pipeline.lock.txt pyproject.toml | $(UV)
	[ -x $(PIPE)/bin/python ] || $(UV) venv -q -p $(PYTHON) $(PIPE)
	$(UV) pip install -q -p $(PIPE)/bin/python -r requirements/pipeline.lock.txt
	$(UV) pip install -q -p $(PIPE)/bin/python --no-deps -e .
	touch $@

$(SUPERSET)/.installed: requirements/superset.lock.txt | $(UV)
	[ -x $(SUPERSET)/bin/python ] || $(UV) venv -q -p $(PYTHON) $(SUPERSET)
	$(UV) pip install -q -p $(SUPERSET)/bin/python -r requirements/superset.lock.txt
	touch $@

# dbt-spark (session mode) with a local PySpark 3.5 on the machine's Java 17: the Spark target
# (`INFERWATCH_DBT_TARGET=spark`, docs/scaling.md). Not needed by `make demo`.
$(SPARK)/.installed: requirements/spark.lock.txt | $(UV)
	[ -x $(SPARK)/bin/python ] || $(UV) venv -q -p $(PYTHON) $(SPARK)
	$(UV) pip install -q -p $(SPARK)/bin/python -r requirements/spark.lock.txt
	touch $@

setup: $(PIPE)/.installed $(SUPERSET)/.installed  ## install the pipeline and Superset environments

spark: $(SPARK)/.installed services  ## install the Spark environment (dbt-spark + PySpark; Java 17 from Debian)

# Debian packages the servers need: redis-server (the Celery broker of Superset's scheduled
# reports), chromium + chromium-driver (report screenshots, and the dashboard browser test via
# Selenium in the Superset environment). Installed only when missing; needs root (CI and these
# machines are). Nothing is started here: `inferwatch superset start` runs its own Redis on
# 127.0.0.1 (no system service, no persistence).
# postgresql: the scale-out test runs Airflow's and Superset's metadata on a private server.
# openjdk-17-jre-headless: the JVM of PySpark 3.5 (the Spark target of the dbt project).
DEBIAN_PACKAGES := redis-server chromium chromium-driver postgresql openjdk-17-jre-headless
services:  ## install the Debian packages above when missing
	@missing=""; \
	for pkg in $(DEBIAN_PACKAGES); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "missing Debian packages:$$missing (sudo apt-get install$$missing): reports and the browser test fail without them"; fi

browser: services  ## (alias of services, kept for CI)

demo: setup services  ## simulate two weeks (if the lake is empty), run the pipeline, serve dashboards + reports
	$(IW) simulate --if-empty
	$(IW) run
	$(IW) superset start
	$(IW) superset sync > /dev/null
	$(IW) airflow start
	@echo; $(IW) urls; echo; echo "Stop everything with: make stop"

stop:  ## stop the Superset (+ report workers) and Airflow that `make demo` started (by pid)
	-[ ! -x $(IW) ] || $(IW) airflow stop
	-[ ! -x $(IW) ] || $(IW) superset stop

test: setup spark services lint  ## install what the tests need and run the whole suite
	$(PIPE)/bin/python -m pytest -n $(TEST_WORKERS) tests

lint: setup  ## ruff (lint and format) + sqlfluff
	$(PIPE)/bin/ruff check plugins dags tests benchmarks
	$(PIPE)/bin/ruff format --check plugins dags tests benchmarks
	$(PIPE)/bin/sqlfluff lint dbt_project/models

.PHONY: bench
bench: setup  ## benchmarks vs the DuckDB floor (10M events, see benchmarks/README.md; BENCH_ARGS=...)
	$(PIPE)/bin/python benchmarks/run.py $(BENCH_ARGS)

lock: | $(UV)  ## re-resolve the lock files from requirements/*.in
	$(UV) pip compile -q --python-version 3.11 requirements/pipeline.in -o requirements/pipeline.lock.txt
	$(UV) pip compile -q --python-version 3.11 requirements/superset.in -o requirements/superset.lock.txt
	$(UV) pip compile -q --python-version 3.11 requirements/spark.in -o requirements/spark.lock.txt

clean: stop  ## remove environments and generated data
	rm -rf $(VENV) data
