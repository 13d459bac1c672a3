"""A 2-day backfill end to end on a real Airflow and a real Spark standalone cluster.

The test starts a Spark master and worker from the installed Spark, then Airflow (API server,
scheduler, DAG processor, its metadata on a PostgreSQL server of its own) with `spark_default`
pointing at the master, and creates the backfill
through the REST API as the UI's *Trigger > Backfill* does: dry run, unpause, create, with *Max
Active Runs* 2, after creating the DAG's pools (`airflow_pools`) as a deployment does. Every Spark
task is a `spark-submit --master spark://...` in client mode with the Delta and JDBC jars
shipped from the local cache (`--conf spark.jars`, as the DAG passes them), the driver on the
Airflow worker and the executors on the Spark worker. The jobs use the `prod` overlay (no
`spark.master` of their own) with paths and the key from the environment, as on a cluster.

Checked: both runs succeed; for both days, every selected stage recorded its success, ingest read,
rejected and kept the rows the generator wrote (its manifest), `events` and `behavior_scores`
hold the day, and missions were assigned to scored subscribers; every Spark task ran in the
one-slot Spark pool, never two at once although both runs were active together, and no other
task did; the master lists every application as finished, and the worker ran an executor for
each. Nothing depends on the DAG's task ids or task count.
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from deltalake import DeltaTable

from jobs.orchestration.settings import AirflowSettings
from jobs.sample_data import generate
from tests.support.airflow_server import AirflowServer
from tests.support.postgres import PostgresServer
from tests.support.spark_standalone import SparkStandalone

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "gamification_nightly"
# not a 1st: the monthly DWH source (a database query in the prod overlay) is not due
DAYS = [date(2025, 3, 2), date(2025, 3, 3)]
SUBSCRIBERS = 100
KEY = "demo-pseudonymisation-key-not-secret"
# The backfill form's params: the stages that fill events, behavior_scores and mission_assignments,
# over the CRM snapshot and the CDRs (the other sources' tasks are skipped, the score components
# depending on them degraded). Every selected stage is a Spark job on the cluster.
STAGES = ["ingest", "activity", "scores", "segments", "missions"]
SOURCES = ["crm_subscribers", "cdr"]
BACKFILL_TIMEOUT_S = 60 * 60
SITE_ENV = "standalone"
SMALL_CLUSTER_CONF = {"spark.sql.shuffle.partitions": 4, "spark.databricks.delta.snapshotPartitions": 2}
FAILED_STATES = ("failed", "up_for_retry", "upstream_failed")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The operator's landing zone (two generated days), an empty lakehouse and exports, and the
    configuration: this repository's, with a site overlay for this small cluster (below)."""
    root = tmp_path_factory.mktemp("cluster-site")
    generate(root / "raw", subscribers=SUBSCRIBERS, days=len(DAYS), start=DAYS[0], seed=7)
    shutil.copytree(REPO / "conf", root / "conf")
    shutil.copytree(REPO / "templates", root / "templates")  # missions.yaml: beside the conf folder
    write_site_overlay(root / "conf")
    return root


def write_site_overlay(conf_dir: Path) -> None:
    """`env/standalone.yaml`: the prod overlay (no spark.master of its own: the connection
    decides; paths and key from the environment) sized for a 2-core cluster, as a site sizes it:
    prod's 400 shuffle partitions and Delta's 50 snapshot partitions are thousands of tiny tasks
    per job here. The exports root comes from the environment too."""
    overlay = yaml.safe_load((conf_dir / "env" / "prod.yaml").read_text())
    overlay["env"] = SITE_ENV
    overlay["spark"]["conf"].update(SMALL_CLUSTER_CONF)
    overlay["exports"] = {**overlay.get("exports", {}), "root": "${GAMIFY_EXPORTS_ROOT}"}
    (conf_dir / "env" / f"{SITE_ENV}.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))


@pytest.fixture(scope="module")
def cluster(site) -> Iterator[SparkStandalone]:
    # 2 cores and 2 GB for executors: one application at a time, as a backfill with Max Active Runs 1 runs
    with SparkStandalone(site / "spark", cores=2, memory="2g") as spark_cluster:
        yield spark_cluster


@pytest.fixture(scope="module")
def metadata_db() -> Iterator[PostgresServer]:
    """Airflow's metadata database on PostgreSQL, as in production: on SQLite the scheduler's and
    the API server's concurrent writes refuse a backfill ("Database is locked")."""
    server = PostgresServer(database="airflow").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def airflow(site, cluster, metadata_db) -> Iterator[AirflowServer]:
    """Airflow set up as a cluster user sets it up: the DAGs of dags/, spark_default on the
    standalone master, the jobs' environment (prod overlay, storage paths, key) for the workers."""
    python = Path(sys.executable)
    env = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db.sqlalchemy_url,
        "AIRFLOW_CONN_SPARK_DEFAULT": f"{cluster.master_url}?deploy-mode=client",
        "PYSPARK_PYTHON": str(python),  # a Python with this package, for the driver
        "PYTHONPATH": str(REPO),
        "GAMIFY_CONF_DIR": str(site / "conf"),
        "GAMIFY_ENV": SITE_ENV,
        "GAMIFY_RAW_ROOT": str(site / "raw"),
        "GAMIFY_LAKEHOUSE_ROOT": str(site / "lakehouse"),
        "GAMIFY_EXPORTS_ROOT": str(site / "exports"),
        "GAMIFY_PSEUDONYMISATION_KEY": KEY,
        # the prod DWH source is a JDBC query, due on the 1st only: never connected to here
        "DWH_JDBC_URL": "jdbc:postgresql://127.0.0.1:9/dwh",
        "DWH_USER": "gamify",
        "DWH_PASSWORD": "unused",
    }
    with AirflowServer(site / "airflow_home", REPO / "dags", cwd=site, env=env) as server:
        yield server


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def rows(lakehouse: Path, table: str) -> list[dict]:
    return DeltaTable(str(lakehouse / table)).to_pyarrow_table().to_pylist()


def count_by(records: list[dict], *keys: str) -> dict:
    """Rows per value of `keys` (a tuple of values for several keys)."""
    counts: dict = {}
    for record in records:
        key = tuple(record[k] for k in keys) if len(keys) > 1 else record[keys[0]]
        counts[key] = counts.get(key, 0) + 1
    return counts


def backfill_body(airflow: AirflowServer) -> dict[str, Any]:
    """What the Backfill form posts: the range (the end date's end of day, both ends' runs
    included), All Runs, Max Active Runs 2 (both days active at once: the Spark pool keeps their
    jobs apart), and the DAG's params (their defaults, with the stages and sources chosen) as run
    conf."""
    params = airflow.api("GET", f"/dags/{DAG_ID}/details")["params"]
    conf = {name: spec["value"] for name, spec in params.items()}
    assert set(STAGES) <= set(conf["stages"]) and set(SOURCES) <= set(conf["sources"])
    return {
        "dag_id": DAG_ID,
        "from_date": iso(midnight(DAYS[0])),
        "to_date": iso(midnight(DAYS[-1]) + timedelta(hours=23, minutes=59)),
        "reprocess_behavior": "completed",
        "max_active_runs": 2,
        "run_backwards": False,
        "dag_run_conf": {**conf, "stages": STAGES, "sources": SOURCES},
    }


def assert_spark_tasks_ran_one_at_a_time_in_their_pool(airflow: AirflowServer, site: Path, run_ids: set[str]):
    """Every Spark task instance of the runs took the Spark pool and no other did; those that ran
    (a task skips itself when the params leave its stages out, briefly holding the slot too)
    never overlapped, although both days' runs were active together."""
    pool = AirflowSettings.load(site / "conf").spark_pool
    tis = [
        ti
        for ti in airflow.api("GET", f"/dags/{DAG_ID}/dagRuns/~/taskInstances", params={"limit": 1000})[
            "task_instances"
        ]
        if ti["dag_run_id"] in run_ids
    ]
    spark = {ti["task_id"] for ti in tis if (ti["operator"] or "").endswith("SubmitOperator")}  # spark-submit tasks
    assert len(spark) >= 3  # the groups, recompute_later_days
    assert {(ti["task_id"], ti["pool"] == pool) for ti in tis} == {
        (ti["task_id"], ti["task_id"] in spark) for ti in tis
    }
    spans = sorted(
        (parse(ti["start_date"]), parse(ti["end_date"]), ti["task_id"], ti["dag_run_id"])
        for ti in tis
        if ti["pool"] == pool and ti["start_date"]
    )
    assert len({run for *_, run in spans}) == len(run_ids)
    for before, after in itertools.pairwise(spans):
        assert before[1] <= after[0], f"{before[2:]} and {after[2:]} ran at once"


def failure_report(airflow: AirflowServer, run_ids: set[str]) -> str | None:
    """The first failed (or retrying) task of the backfill's runs with its log, or None."""
    tis = airflow.api(
        "GET", f"/dags/{DAG_ID}/dagRuns/~/taskInstances", params={"state": list(FAILED_STATES), "limit": 100}
    )["task_instances"]
    for ti in tis:
        if ti["dag_run_id"] in run_ids:
            log = airflow.task_log(DAG_ID, ti["dag_run_id"], ti["task_id"], ti["try_number"])
            return f"{ti['task_id']} of {ti['dag_run_id']} is {ti['state']}:\n{log}"
    return None


def test_a_two_day_backfill_through_the_rest_api_runs_on_the_standalone_cluster(airflow, cluster, site):
    started = time.monotonic()
    airflow.wait_for(lambda: airflow.api("GET", f"/dags/{DAG_ID}"), 300, f"{DAG_ID} parsed")
    assert airflow.api("GET", "/importErrors")["total_entries"] == 0
    pools = AirflowSettings.load(site / "conf").airflow_pools()
    for name, pool in pools.items():  # as `make airflow-init` or a deployment creates them
        airflow.api("POST", "/pools", json={"name": name, **pool})

    body = backfill_body(airflow)
    dry_run = airflow.api("POST", "/backfills/dry_run", json=body)
    assert [parse(b["logical_date"]) for b in dry_run["backfills"]] == [midnight(d) for d in DAYS]

    # the form unpauses a paused DAG ("Unpause on trigger"); unpausing also schedules last
    # night's run, whose extracts this landing zone does not have: marked failed, as
    # the README tells a `make airflow` user
    airflow.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    backfill = airflow.api("POST", "/backfills", json=body)
    assert (backfill["max_active_runs"], backfill["reprocess_behavior"]) == (2, "completed")

    def backfill_done() -> list[dict] | None:
        runs = airflow.api("GET", f"/dags/{DAG_ID}/dagRuns", params={"limit": 100})["dag_runs"]
        for run in runs:
            if run["run_type"] == "scheduled" and run["state"] in ("queued", "running"):
                airflow.api("PATCH", f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}", json={"state": "failed"})
        ours = [r for r in runs if r["run_type"] == "backfill"]
        failure = failure_report(airflow, {r["dag_run_id"] for r in ours})
        if failure:
            pytest.fail(f"backfill task failed: {failure}")
        finished = airflow.api("GET", f"/backfills/{backfill['id']}")["completed_at"] is not None
        return ours if finished and all(r["state"] in ("success", "failed") for r in ours) else None

    runs = airflow.wait_for(backfill_done, BACKFILL_TIMEOUT_S, "the backfill's runs finished", interval=5)
    backfill_seconds = time.monotonic() - started
    print(f"backfill of {len(DAYS)} days on the standalone cluster: {backfill_seconds:.0f}s")

    assert sorted((parse(r["logical_date"]), r["state"]) for r in runs) == [(midnight(d), "success") for d in DAYS]
    first, second = sorted(runs, key=lambda r: r["logical_date"])
    assert parse(second["start_date"]) < parse(first["end_date"])  # both runs active together
    assert_spark_tasks_ran_one_at_a_time_in_their_pool(airflow, site, {r["dag_run_id"] for r in runs})

    # the tables hold both days, as the generator wrote them (its manifest: rows and defects per
    # source and day; every CRM subscriber is scored)
    manifest = json.loads((site / "raw" / "_manifest.json").read_text())
    lakehouse = site / "lakehouse"
    runs_table = rows(lakehouse, "pipeline_runs")
    for day in DAYS:
        ds = day.isoformat()
        recorded = {(r["stage"], r["source"]): r for r in runs_table if r["run_ds"] == day}
        assert {stage for stage, _ in recorded} == set(STAGES)
        assert {k: r["status"] for k, r in recorded.items()} == {
            **{("ingest", source): "succeeded" for source in SOURCES},
            **{(stage, None): "succeeded" for stage in STAGES if stage != "ingest"},
        }
        for source in SOURCES:
            defects = manifest["defects"].get(source, {}).get(ds, {})
            run = recorded["ingest", source]
            assert run["rows_read"] == manifest["rows"][source][ds]
            assert run["rows_duplicate"] == defects.get("duplicate", 0)
            assert run["rows_rejected"] == sum(defects.values()) - defects.get("duplicate", 0)
    events = count_by(rows(lakehouse, "events"), "ingest_date", "source")
    cdr_defects = manifest["defects"]["cdr"]
    assert {d: events.get((d, "cdr")) for d in DAYS} == {
        d: manifest["rows"]["cdr"][d.isoformat()] - sum(cdr_defects[d.isoformat()].values()) for d in DAYS
    }
    scores = count_by(rows(lakehouse, "behavior_scores"), "score_date")
    assert scores == {d: manifest["rows"]["crm_subscribers"][d.isoformat()] for d in DAYS}
    # missions: the first day assigns; the second assigns only where a first-day mission ended
    # (none may have), and its missions stage succeeded (above)
    assignments = rows(lakehouse, "mission_assignments")
    assert {r["assigned_ds"] for r in assignments} <= set(DAYS)
    assert count_by(assignments, "assigned_ds").get(DAYS[0], 0) > 0
    scored = {(r["subscriber_id"], r["score_date"]) for r in rows(lakehouse, "behavior_scores")}
    assert {(r["subscriber_id"], r["assigned_ds"]) for r in assignments} <= scored

    # every application ran on the cluster: finished on the master, with executors on the worker
    master = cluster.master_status()
    apps = master["completedapps"]
    assert len(apps) >= len(DAYS)
    assert {a["state"] for a in apps} == {"FINISHED"}
    assert master["activeapps"] == []
    executors = cluster.worker_status()["finishedexecutors"]
    assert {a["id"] for a in apps} <= {e["appid"] for e in executors}
    print(f"{len(apps)} Spark applications on {cluster.master_url}; test wall time {time.monotonic() - started:.0f}s")
