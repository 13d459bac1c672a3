# telco-gamification: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
GAMIFY := $(VENV)/bin/gamify
STAMP := $(VENV)/.installed

# Sample run: a small generated operator, a few weeks of nightly runs.
RAW ?= data/raw
SUBSCRIBERS ?= 2000
DAYS ?= 10
START ?= 2025-03-01
SEED ?= 42
END = $(shell $(PYTHON) -c "import datetime as d; print(d.date.fromisoformat('$(START)') + d.timedelta(days=$(DAYS) - 1))")
SAMPLE := $(RAW)/_manifest.json
# Tests on pytest-xdist workers, each taking whole groups (tests/conftest.py); TEST_WORKERS=0: in one process
TEST_WORKERS ?= 2
XDIST = -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

.DEFAULT_GOAL := help
.PHONY: help install class-archive run sample test test-fast test-cluster lint format bench maintain clean clean-data

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F ':.*?## ' '{printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): setup.py requirements/constraints.txt
	@command -v java >/dev/null || { echo "Java 17+ is needed for Spark (apt-get install openjdk-17-jre-headless)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c requirements/constraints.txt -e ".[airflow,quality,dev]"
	$(VENV)/bin/pip check
	$(PY) -m jobs.spark  # Delta + JDBC driver jars from Maven Central, cached: later sessions start offline
	@touch $(STAMP)

install: $(STAMP) ## create .venv with the pinned dependencies (done by run/test when needed)

class-archive: $(STAMP) ## archive the classes of two local nights (3 min, once per JDK and Spark): local JVMs start faster
	$(PY) -m jobs.spark --class-archive

$(SAMPLE): | $(STAMP)
	$(GAMIFY) sample-data --subscribers $(SUBSCRIBERS) --days $(DAYS) --start $(START) --seed $(SEED) --out $(RAW)

sample: $(SAMPLE) ## generate the sample operator's raw extracts into $(RAW) (if absent)

run: $(STAMP) $(SAMPLE) ## generate sample data if absent, run the nightly pipeline for every sample day, write the report
	$(GAMIFY) run --from $(START) --to $(END) --raw-root $(RAW)
	$(GAMIFY) report --ds $(END) --html

maintain: $(STAMP) ## compact, vacuum and checkpoint the local lakehouse's tables
	$(GAMIFY) maintain

test: $(STAMP) ## run the test suite (the cluster test apart: make test-cluster)
	$(PY) -m pytest -m "not cluster" $(XDIST)

test-fast: $(STAMP) ## unit tests only
	$(PY) -m pytest -m unit $(XDIST)

test-cluster: $(STAMP) ## a 2-day backfill through Airflow's REST API, its jobs on a Spark standalone cluster
	$(PY) -m pytest -m cluster

lint: $(STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check jobs dags tests bench
	$(VENV)/bin/ruff format --check jobs dags tests bench

format: $(STAMP) ## apply ruff formatting and safe fixes
	$(VENV)/bin/ruff check --fix jobs dags tests bench
	$(VENV)/bin/ruff format jobs dags tests bench

# Nightly benchmark: one night stage by stage at each size, checked against the DuckDB reference.
BENCH_SUBSCRIBERS ?= 100000 300000 1000000
BENCH_HISTORY_DAYS ?= 30
BENCH_REPEAT ?= 1
BENCH_ARGS ?=

bench: $(STAMP) ## one night per size, stage by stage, vs DuckDB (BENCH_SUBSCRIBERS=100000 BENCH_REPEAT=3; results in bench/results/)
	$(PY) -m bench.bench_night --subscribers $(BENCH_SUBSCRIBERS) --history-days $(BENCH_HISTORY_DAYS) --repeat $(BENCH_REPEAT) $(BENCH_ARGS)

clean-data: ## remove the generated sample, the local lakehouse and the exports
	rm -rf $(RAW) lakehouse exports

clean: clean-data ## also remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

# Local Airflow: its state under airflow_home/, the DAGs of dags/, Spark jobs on local[2] with this
# virtualenv's spark-submit and Python, working directory the repository (./data/raw, ./lakehouse).
AIRFLOW_HOME ?= $(CURDIR)/airflow_home
AIRFLOW := env AIRFLOW_HOME=$(AIRFLOW_HOME) AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False PATH=$(abspath $(VENV))/bin:$$PATH PYSPARK_PYTHON=$(abspath $(PY)) \
	$(VENV)/bin/airflow
.PHONY: airflow airflow-init

airflow-init: $(STAMP) ## local Airflow in airflow_home/: database, dags/ folder, pools, spark_default on local[2]
	$(AIRFLOW) db migrate
	$(PY) -m jobs.orchestration.pools > $(AIRFLOW_HOME)/pools.json
	$(AIRFLOW) pools import $(AIRFLOW_HOME)/pools.json
	-@$(AIRFLOW) connections delete spark_default >/dev/null 2>&1
	$(AIRFLOW) connections add spark_default --conn-type spark --conn-host 'local[2]' \
		--conn-description "local Spark; a cluster in production: see dags/README.md"

airflow: airflow-init $(SAMPLE) ## run Airflow standalone (http://localhost:8080) with the nightly DAG over the sample
	$(AIRFLOW) standalone
