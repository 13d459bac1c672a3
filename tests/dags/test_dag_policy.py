"""DAG policy as tests: the DAG parses, and every task is owned, retried, dated and ordered."""

from __future__ import annotations

import copy
import itertools
from datetime import timedelta

import pytest

from jobs.orchestration.settings import AirflowSettings, pipeline_config, source_shapes
from jobs.pipeline import STAGES
from tests.dags.conftest import DAGS

pytestmark = pytest.mark.unit

DS = "{{ ds }}"


@pytest.fixture(scope="module")
def settings() -> AirflowSettings:
    return AirflowSettings.load()


def spark_tasks(dag):
    return [t for t in dag.tasks if hasattr(t, "application_args")]


def test_dags_folder_parses_without_errors_quickly(dagbag, dag):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dags) == ["gamification_maintenance", dag.dag_id]
    assert dagbag.parse_seconds < 15, f"parsing took {dagbag.parse_seconds:.1f}s"


def test_parsing_creates_no_spark_session():
    from airflow.dag_processing.dagbag import DagBag
    from pyspark import SparkContext

    before = SparkContext._active_spark_context
    DagBag(dag_folder=str(DAGS))
    assert SparkContext._active_spark_context is before


def test_dag_schedule_tags_docs_and_runs_come_from_config(dag, settings):
    assert dag.tags and set(dag.tags) == set(settings.tags)
    assert dag.doc_md and "gamification_nightly" in dag.doc_md
    assert dag.catchup is settings.catchup
    assert dag.max_active_runs == settings.max_active_runs
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"  # {{ ds }} is the day that ended


def test_dag_serializes_as_the_scheduler_stores_it_with_a_backfillable_schedule(dag):
    from airflow.serialization.serialized_objects import DagSerialization

    stored = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    assert stored.timetable.periodic  # the Airflow 3 backfill refuses non-periodic schedules
    assert set(stored.task_ids) == set(dag.task_ids)


def test_every_task_has_an_owner_retries_and_a_timeout(dag, settings):
    for task in dag.tasks:
        assert task.owner == settings.owner, task.task_id
        assert task.retries >= 1, task.task_id
        assert task.execution_timeout and task.execution_timeout > timedelta(0), task.task_id


def test_every_spark_task_runs_for_the_run_date(dag):
    for task in spark_tasks(dag):
        args = " ".join(task.application_args)
        assert DS in args or "ds_add(ds, 1)" in args, f"{task.task_id}: {args}"
        assert task._conn_id == "spark_default"


def test_one_task_per_stage_and_per_source_in_pipeline_order(dag):
    sources = source_shapes(pipeline_config())
    ingest_ids = [f"ingest.{s.name}" for s in sources]
    stage_ids = [s for s in STAGES if s != "ingest"]
    expected = [*ingest_ids, *stage_ids, "recompute_later_days", "report"]
    assert set(expected) <= set(dag.task_ids)
    for upstream, downstream in itertools.pairwise(expected):
        assert downstream in dag.get_task(upstream).downstream_task_ids, (upstream, downstream)
    assert sources[0].feeds_profile  # the CRM snapshot first: it defines the day's known subscribers
    for stage in stage_ids:
        assert dag.get_task(stage).application_args[-2:] == ["--stages", stage]


def test_stateful_stages_depend_on_past_and_the_day_gate_waits_for_the_previous_report(dag, settings):
    stateful = set(settings.stateful_stages)
    for task in spark_tasks(dag):
        stage = getattr(task, "stage", None)
        if stage in STAGES:
            assert task.depends_on_past is (stage in stateful), task.task_id
            assert task.ignore_first_depends_on_past is (stage in stateful), task.task_id
    first = dag.get_task(next(s for s in STAGES if s != "ingest"))
    assert first.depends_on_past and first.wait_for_downstream
    assert "report" in first.downstream_task_ids


def test_sensors_have_timeouts_by_frequency_and_fail_only_for_mandatory_sources(dag, settings):
    shapes = {s.name: s for s in source_shapes(pipeline_config())}
    sensors = [t for t in dag.tasks if t.task_id.startswith("ingest.wait_")]
    assert {t.source for t in sensors} == {n for n, s in shapes.items() if s.has_extract}
    for sensor in sensors:
        shape = shapes[sensor.source]
        policy = settings.sensors[shape.sync_frequency]
        assert sensor.timeout == policy.timeout.total_seconds() > 0
        assert sensor.poke_interval == policy.poke_interval.total_seconds()
        assert sensor.mode == "reschedule"
        assert sensor.soft_fail is not shape.mandatory
        assert f"ingest.{sensor.source}" in sensor.downstream_task_ids


def test_stage_tasks_declare_their_tables_as_assets(dag, settings):
    for stage in STAGES:
        tasks = [t for t in spark_tasks(dag) if getattr(t, "stage", None) == stage]
        assert tasks, stage
        for task in tasks:
            uris = {a.uri for a in task.outlets}
            assert uris == {f"{settings.asset_prefix}{t}" for t in settings.stage_tables.get(stage, ())}


def test_params_select_stages_and_sources_and_reject_unknown_names(dag):
    assert dag.params["stages"] == list(STAGES)
    assert dag.params["sources"] == [s.name for s in source_shapes(pipeline_config())]
    assert dag.params["full_refresh"] is False
    chosen = copy.deepcopy(dag.params)
    chosen.update({"stages": ["scores"], "sources": ["cdr"], "full_refresh": True})
    assert chosen.validate()["stages"] == ["scores"]
    unknown = copy.deepcopy(dag.params)
    with pytest.raises(ValueError, match="no_such_stage"):
        unknown.update({"stages": ["no_such_stage"]})
        unknown.validate()


def test_report_writes_the_html_page_after_the_quality_gate(dag):
    report = dag.get_task("report")
    assert report.application_args == ["report", "--ds", DS, "--html"]
    assert "quality" in report.get_flat_relative_ids(upstream=True)
