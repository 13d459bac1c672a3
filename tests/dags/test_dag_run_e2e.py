"""One run of the real DAG with `dag.test()`: the configuration check, the sensors, one
spark-submit for the selected group on local Spark (which also writes the HTML report), skips
for what the params leave out, the report read without Spark, and the tables the run date got."""

from __future__ import annotations

import copy
import os
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from deltalake import DeltaTable

from jobs.sample_data import generate

pytestmark = pytest.mark.integration

DS = date(2025, 3, 2)  # not a 1st: the monthly DWH source is not due and its tasks are skipped
# One Spark application: the ingest group, for two sources (the DWH source is not due); every
# other group is skipped, and so is the later-days job (ds is the latest processed date).
RUN_CONF = {"stages": ["ingest"], "sources": ["crm_subscribers", "cdr", "dwh_monthly_kpis"]}
RAN = {"check_config", "extracts.crm_subscribers", "extracts.cdr", "ingest", "report"}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A local checkout's layout: ./data/raw with one sample day, ./lakehouse written by the jobs."""
    from airflow.utils.db import initdb

    initdb()
    generate(tmp_path / "data" / "raw", subscribers=100, days=1, start=DS, seed=11)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GAMIFY_ENV", "test")
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)  # driver and workers: this interpreter
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # spark-submit
    return tmp_path


def rows_for(lakehouse: Path, table: str, column: str) -> int:
    return DeltaTable(str(lakehouse / table)).to_pyarrow_table(filters=[(column, "=", DS)]).num_rows


def test_dag_run_ingests_the_selected_sources_for_the_run_date_and_skips_the_rest(dag, workdir):
    dag = copy.deepcopy(dag)
    for task in dag.tasks:
        task.retries = 0  # a failure fails the run at once instead of waiting for a retry
    started = time.monotonic()
    run = dag.test(logical_date=datetime(DS.year, DS.month, DS.day, tzinfo=UTC), run_conf=RUN_CONF)
    print(f"dag.test: {time.monotonic() - started:.0f}s")

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success"
    assert {t for t, s in states.items() if s == "success"} == RAN
    assert {t for t, s in states.items() if s != "success"} == set(dag.task_ids) - RAN
    assert set(states.values()) == {"success", "skipped"}

    lakehouse = workdir / "lakehouse"
    assert rows_for(lakehouse, "subscriber_profile", "snapshot_date") == 100
    assert rows_for(lakehouse, "events", "ingest_date") > 0
    assert not (lakehouse / "daily_activity").exists()
    runs = DeltaTable(str(lakehouse / "pipeline_runs")).to_pyarrow_table(filters=[("run_ds", "=", DS)]).to_pylist()
    ingested = {r["source"]: r["status"] for r in runs if r["stage"] == "ingest"}
    assert ingested == {"crm_subscribers": "succeeded", "cdr": "succeeded", "dwh_monthly_kpis": "not_due"}
    page = lakehouse / "_reports" / f"{DS}.html"
    assert run.get_task_instance("report").xcom_pull(task_ids="report") == str(page)
    assert f"{DS}" in page.read_text(encoding="utf-8")
