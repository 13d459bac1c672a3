"""Table maintenance in Airflow, Delta jars shipped with every Spark job, and the readiness sensor
of JDBC sources."""

from __future__ import annotations

import pytest

from jobs.orchestration.dag_factory import build_maintenance_dag, build_nightly_dag
from jobs.orchestration.operators import ExtractSensor, JdbcReadySensor
from jobs.orchestration.settings import AirflowSettings
from jobs.spark import delta_package
from tests.dags.conftest import edited_conf

pytestmark = pytest.mark.unit


def conf_with(tmp_path, **maintenance):
    return str(edited_conf(tmp_path, "base.yaml", lambda base: base["lakehouse"]["maintenance"].update(maintenance)))


def test_the_maintenance_dag_runs_gamify_maintain_weekly(dagbag):
    dag = dagbag.dags["gamification_maintenance"]
    assert dagbag.import_errors == {}
    assert dag.timetable.expression == "0 6 * * 0"
    assert dag.catchup is False and "maintenance" in dag.tags
    (task,) = dag.tasks
    assert (task.task_id, task.application_args) == ("maintain", ["maintain"])


def test_no_maintenance_dag_without_a_schedule_and_a_nightly_task_when_asked(tmp_path):
    conf = conf_with(tmp_path, schedule=None, after_nightly=True)
    assert build_maintenance_dag(conf_dir=conf) is None
    nightly = build_nightly_dag(conf_dir=conf)
    maintain = nightly.get_task("maintain")
    assert [t.task_id for t in maintain.upstream_list] == ["report"]
    assert "maintain" not in build_nightly_dag(conf_dir=conf_with(tmp_path / "b")).task_ids


def test_every_spark_job_ships_the_delta_jars(dag):
    spark_jobs = [t for t in dag.tasks if hasattr(t, "application_args")]
    assert {t.task_id for t in spark_jobs} >= {*AirflowSettings.load().groups, "recompute_later_days"}
    artifact = delta_package().split(":")[1]  # e.g. delta-spark_4.2_2.13
    for task in spark_jobs:
        conf = task.conf or {}
        shipped = conf.get("spark.jars", "") + conf.get("spark.jars.packages", "")
        assert artifact.replace(":", "_") in shipped.replace(":", "_"), task.task_id
        assert "postgresql" in shipped, task.task_id


def test_jdbc_sources_wait_for_their_database_and_file_sources_for_their_extract(monkeypatch):
    monkeypatch.setenv("GAMIFY_ENV", "prod")
    dag = build_nightly_dag()
    assert isinstance(dag.get_task("extracts.dwh_monthly_kpis"), JdbcReadySensor)
    assert isinstance(dag.get_task("extracts.cdr"), ExtractSensor)
    assert dag.get_task("extracts.dwh_monthly_kpis").mandatory is False
