"""The operators decide at run time: skipped when unselected or not due, a sensor that names the
missing extract, the later-days job built from the params, and the Spark connection's master."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

from jobs.orchestration.operators import ExtractSensor, LaterDaysSubmitOperator, StageSubmitOperator

pytestmark = pytest.mark.unit

DS = "2025-03-02"  # not the 1st: the monthly DWH extract is not due
ALL = {"stages": ["ingest", "activity", "scores"], "sources": ["cdr", "app", "dwh_monthly_kpis"]}


@pytest.fixture
def raw(tmp_path, monkeypatch):
    """A working directory whose ./data/raw (the local raw.root) holds only the day's CDR extract."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GAMIFY_ENV", raising=False)
    day = tmp_path / "data" / "raw" / "cdr" / DS
    day.mkdir(parents=True)
    (day / "cdr_00.csv").write_text("record_id|msisdn\n")
    return tmp_path / "data" / "raw"


def sensor(source: str, mandatory: bool) -> ExtractSensor:
    return ExtractSensor(
        task_id=f"wait_{source}", source=source, mandatory=mandatory, mode="poke", poke_interval=0, timeout=0
    )


def test_sensor_finds_the_extract(raw):
    assert sensor("cdr", True).poke({"ds": DS, "params": ALL}) is True


def test_sensor_fails_a_missing_mandatory_source_naming_source_and_path(raw):
    with pytest.raises(
        AirflowSensorTimeout, match=r"mandatory source cdr: no extract for 2025-03-03 at .*cdr/2025-03-03/\*\.csv"
    ):
        sensor("cdr", True).execute({"ds": "2025-03-03", "params": ALL})


def test_sensor_skips_a_missing_optional_source(raw):
    with pytest.raises(AirflowSkipException):
        sensor("app", False).execute({"ds": DS, "params": ALL})


@pytest.mark.parametrize(
    ("source", "params", "reason"),
    [
        ("dwh_monthly_kpis", ALL, "monthly source dwh_monthly_kpis is not due on 2025-03-02"),
        ("cdr", {**ALL, "sources": ["app"]}, "source cdr is not selected"),
        ("cdr", {**ALL, "stages": ["scores"]}, "stage ingest is not selected"),
    ],
)
def test_sensor_and_ingest_skip_what_the_run_does_not_ingest(raw, source, params, reason):
    with pytest.raises(AirflowSkipException, match=reason):
        sensor(source, False).execute({"ds": DS, "params": params})
    ingest = StageSubmitOperator(task_id=source, stage="ingest", source=source, application="app.py")
    with pytest.raises(AirflowSkipException, match=reason):
        ingest.execute({"ds": DS, "params": params})


def test_unselected_stage_is_skipped_not_failed():
    task = StageSubmitOperator(task_id="activity", stage="activity", application="app.py")
    with pytest.raises(AirflowSkipException, match="stage activity is not selected"):
        task.execute({"ds": DS, "params": {"stages": ["scores"]}})


class Recorder:
    def __init__(self, pending: int) -> None:
        self.pending, self.asked = pending, None

    def get_dr_count(self, **kwargs):
        self.asked = kwargs
        return self.pending


def later_days_context(params, pending: int = 0):
    start = datetime(2025, 3, 2, tzinfo=UTC)
    run = SimpleNamespace(logical_date=start, data_interval_start=start, data_interval_end=start + timedelta(days=1))
    return {"ds": DS, "params": params, "dag_run": run, "ti": Recorder(pending), "dag": SimpleNamespace(dag_id="d")}


@pytest.fixture
def submitted(monkeypatch):
    """The application args SparkSubmitOperator would submit (instead of submitting)."""
    calls = []
    monkeypatch.setattr(SparkSubmitOperator, "execute", lambda self, context: calls.append(self.application_args))
    return calls


def later_days() -> LaterDaysSubmitOperator:
    return LaterDaysSubmitOperator(
        task_id="recompute_later_days",
        stages=["ingest", "activity", "scores", "segments"],
        stateful=["ingest", "activity", "scores"],
        application="app.py",
        application_args=["run", "--from", "2025-03-03", "--to", "latest"],
    )


def test_later_days_recompute_what_later_days_build_on(submitted):
    context = later_days_context({"stages": ["ingest", "activity", "scores", "segments"], "full_refresh": False})
    later_days().execute(context)
    assert submitted == [["run", "--from", "2025-03-03", "--to", "latest", "--stages", "activity,scores,segments"]]
    assert context["ti"].asked["logical_dates"] == [datetime(2025, 3, 3, tzinfo=UTC)]


def test_full_refresh_ingests_later_days_again_for_the_selected_sources(submitted):
    later_days().execute(later_days_context({"stages": ["segments"], "sources": ["cdr"], "full_refresh": True}))
    assert submitted[0][-2:] == ["--stages", "segments"]  # no ingest, no sources
    later_days().execute(later_days_context({"stages": ["ingest"], "sources": ["cdr"], "full_refresh": True}))
    assert submitted[1][-4:] == ["--stages", "ingest,activity,scores,segments", "--sources", "cdr"]


def test_later_days_are_left_to_the_next_run_when_it_is_pending(submitted):
    with pytest.raises(AirflowSkipException, match="2025-03-03 is queued or running"):
        later_days().execute(later_days_context({"stages": ["activity"]}, pending=1))
    with pytest.raises(AirflowSkipException, match="nothing later days build on"):
        later_days().execute(later_days_context({"stages": ["segments"]}))
    assert submitted == []


# The connections documented in dags/README.md, and the --master/--deploy-mode they give.
CONNECTIONS = {
    "spark://local%5B2%5D": ("local[2]", None),
    json.dumps({"conn_type": "spark", "host": "local[2]"}): ("local[2]", None),
    "spark://yarn?deploy-mode=cluster&queue=gamification": ("yarn", "cluster"),
    "spark://spark-master.example.com:7077?deploy-mode=client": ("spark://spark-master.example.com:7077", "client"),
}


@pytest.mark.parametrize(("uri", "expected"), CONNECTIONS.items())
def test_spark_connection_sets_master_and_deploy_mode(monkeypatch, uri, expected):
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_TEST", uri)
    connection = SparkSubmitHook(conn_id="spark_test")._connection
    assert (connection["master"], connection["deploy_mode"]) == expected
