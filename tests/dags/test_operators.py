"""The operators decide at run time: skipped when unselected or not due, a sensor that names the
missing extract, the later-days job built from the params, and the Spark connection's master."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowSkipException

from jobs.config import DEFAULT_CONF_DIR
from jobs.orchestration import operators
from jobs.orchestration.operators import (
    ConfigCheckOperator,
    ExtractSensor,
    LaterDaysSubmitOperator,
    StageGroupSubmitOperator,
)

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


def test_sensor_waits_while_the_extract_holds_only_hidden_files(raw):
    day = raw / "cdr" / DS
    (day / "cdr_00.csv").rename(day / "_cdr_00.csv")  # an upload renamed into place when complete
    probe = sensor("cdr", True)
    assert probe.poke({"ds": DS, "params": ALL}) is False
    (day / "_cdr_00.csv").rename(day / "cdr_00.csv")
    assert probe.poke({"ds": DS, "params": ALL}) is True


def test_sensor_looks_where_the_jobs_read_with_their_env_vars(raw, tmp_path, monkeypatch):
    import dataclasses

    from jobs.orchestration.settings import AirflowSettings

    elsewhere = tmp_path / "landing"
    shutil.copytree(raw, elsewhere)
    shutil.rmtree(raw)  # nothing left where the worker's own environment points
    shipped = AirflowSettings.load()
    jobs_env = {"GAMIFY_ENV": "prod", "GAMIFY_RAW_ROOT": str(elsewhere)}
    monkeypatch.setattr(AirflowSettings, "load", lambda *a, **k: dataclasses.replace(shipped, env_vars=jobs_env))
    probe = sensor("cdr", True)
    assert probe.poke({"ds": DS, "params": ALL}) is True
    assert probe.expected.startswith(str(elsewhere))


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
def test_sensor_skips_what_the_run_does_not_ingest(raw, source, params, reason):
    with pytest.raises(AirflowSkipException, match=reason):
        sensor(source, False).execute({"ds": DS, "params": params})


def group(stages, later=()) -> StageGroupSubmitOperator:
    return StageGroupSubmitOperator(
        task_id="g", group="g", stages=stages, later_stages=list(later), application="app.py", outlets=[ASSET]
    )


ASSET = Asset("lakehouse://gamification/behavior_scores")


class OutletEvents(dict):
    def __missing__(self, asset):
        self[asset] = SimpleNamespace(extra=None)
        return self[asset]


def group_context(params):
    return {"ds": DS, "params": params, "outlet_events": OutletEvents()}


@pytest.mark.parametrize(
    ("stages", "later", "params", "args"),
    [
        (["ingest"], ["activity"], ALL, ["--stages", "ingest", "--sources", "cdr,app,dwh_monthly_kpis"]),
        (["ingest"], ["activity"], {"stages": ["ingest"]}, ["--stages", "ingest", "--html-report"]),
        (["activity", "scores", "segments"], [], ALL, ["--stages", "activity,scores", "--html-report"]),
        (["activity", "scores"], ["quality"], {}, ["--stages", "activity,scores"]),  # no params: everything
    ],
)
def test_a_group_runs_its_selected_stages_in_one_job(submitted, stages, later, params, args):
    context = group_context(params)
    group(stages, later).execute(context)
    assert submitted == [["run", "--ds", DS, *args]]
    assert context["outlet_events"][ASSET].extra == {"ds": DS, "stages": args[1].split(",")}


def test_a_group_with_nothing_selected_is_skipped_and_announces_nothing(submitted):
    context = group_context({"stages": ["scores"]})
    with pytest.raises(AirflowSkipException, match=r"no stage of group g \['activity'\] is selected"):
        group(["activity"]).execute(context)
    with pytest.raises(AirflowSkipException, match=r"no stage of group g \['ingest'\]"):
        group(["ingest"]).execute(group_context({"stages": ["ingest"], "sources": []}))
    assert submitted == [] and context["outlet_events"] == {}


def test_a_broken_configuration_fails_the_run_before_any_sensor_without_retries(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    scoring = conf / "scoring.yaml"
    scoring.write_text(scoring.read_text().replace("feature: active_days_30,", "feature: active_dayz_30,", 1))
    monkeypatch.setenv("GAMIFY_CONF_DIR", str(conf))
    with pytest.raises(AirflowFailException, match=r"configuration problem\(s\), nothing was run:\n  .*scoring.yaml"):
        ConfigCheckOperator(task_id="check_config").execute({"ds": DS})
    monkeypatch.setenv("GAMIFY_CONF_DIR", str(DEFAULT_CONF_DIR))
    ConfigCheckOperator(task_id="check_config").execute({"ds": DS})  # the repository's: no problem


def test_a_run_without_a_run_date_or_before_its_day_ended_fails_before_any_sensor():
    check = ConfigCheckOperator(task_id="check_config")
    with pytest.raises(AirflowFailException, match="this run has no logical date, hence no run date"):
        check.execute({"params": {}})  # Airflow 3 leaves ds out of a run triggered without a logical date
    today = SimpleNamespace(run_after=datetime(2025, 3, 2, 15, 30, tzinfo=UTC))  # a trigger left at "now"
    with pytest.raises(AirflowFailException, match=r"run date 2025-03-02 has not ended when this run may start"):
        check.execute({"ds": DS, "dag_run": today})
    check.execute({"ds": DS, "dag_run": SimpleNamespace(run_after=datetime(2025, 3, 3, tzinfo=UTC))})  # scheduled


class Recorder:
    """The task instance's questions to Airflow: is the next day's run pending, has its gate run."""

    def __init__(self, pending: int, gate_ran: int) -> None:
        self.pending, self.gate_ran, self.asked, self.asked_tis = pending, gate_ran, None, None

    def get_dr_count(self, **kwargs):
        self.asked = kwargs
        return self.pending

    def get_ti_count(self, **kwargs):
        self.asked_tis = kwargs
        return self.gate_ran


def later_days_context(params, pending: int = 0, gate_ran: int = 0):
    start = datetime(2025, 3, 2, tzinfo=UTC)
    run = SimpleNamespace(logical_date=start, data_interval_start=start, data_interval_end=start + timedelta(days=1))
    ti = Recorder(pending, gate_ran)
    return {"ds": DS, "params": params, "dag_run": run, "ti": ti, "dag": SimpleNamespace(dag_id="d")}


@pytest.fixture
def submitted(monkeypatch):
    """The application args SparkSubmitOperator would submit (instead of submitting), with
    2025-03-05 as the latest processed date."""
    calls = []
    monkeypatch.setattr(SparkSubmitOperator, "execute", lambda self, context: calls.append(self.application_args))
    monkeypatch.setattr(operators, "worker_config", lambda: None)
    monkeypatch.setattr("jobs.run_log.latest_processed_date", lambda config: LATEST[0])
    LATEST[:] = [date(2025, 3, 5)]
    return calls


LATEST = [date(2025, 3, 5)]


def later_days() -> LaterDaysSubmitOperator:
    return LaterDaysSubmitOperator(
        task_id="recompute_later_days",
        stages=["ingest", "activity", "scores", "segments"],
        stateful=["ingest", "activity", "scores"],
        gate="stages",
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


def test_later_days_start_no_job_when_the_run_date_is_the_latest(submitted):
    for latest in (date(2025, 3, 2), None):
        LATEST[:] = [latest]
        with pytest.raises(
            AirflowSkipException, match=f"no processed day after 2025-03-02 .latest processed date: {latest}"
        ):
            later_days().execute(later_days_context({"stages": ["activity"]}))
    assert submitted == []


def test_later_days_are_left_to_the_next_run_when_it_is_pending(submitted):
    with pytest.raises(AirflowSkipException, match="2025-03-03 is queued or running"):
        later_days().execute(later_days_context({"stages": ["activity"]}, pending=1))
    with pytest.raises(AirflowSkipException, match="nothing later days build on"):
        later_days().execute(later_days_context({"stages": ["segments"]}))
    assert submitted == []


def test_later_days_include_a_pending_run_whose_stages_already_ran(submitted):
    """A night still running (its publish group, its report) when a backfill reruns the day before
    it: its stages read the old day, and it will not run them again."""
    context = later_days_context({"stages": ["activity"]}, pending=1, gate_ran=1)
    later_days().execute(context)
    assert submitted == [["run", "--from", "2025-03-03", "--to", "latest", "--stages", "activity,scores,segments"]]
    assert context["ti"].asked_tis == {
        "dag_id": "d",
        "task_ids": ["stages"],
        "logical_dates": [datetime(2025, 3, 3, tzinfo=UTC)],
        "states": ["success", "skipped"],
    }


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
