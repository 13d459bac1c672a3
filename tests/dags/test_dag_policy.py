"""DAG policy as tests: the DAG parses, and every task is owned, retried, dated and ordered."""

from __future__ import annotations

import copy
import itertools
from datetime import timedelta

import pytest

from jobs.config import ConfigError
from jobs.orchestration.dag_factory import build_nightly_dag
from jobs.orchestration.settings import AirflowSettings, pipeline_config, source_shapes
from jobs.pipeline import STAGES
from jobs.tables import TABLES, tables_written_by
from tests.dags.conftest import DAGS, edited_conf

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


def group_tasks(dag):
    return [t for t in spark_tasks(dag) if hasattr(t, "group")]


def test_groups_run_every_stage_once_in_pipeline_order(dag, settings):
    groups = group_tasks(dag)
    assert [t.task_id for t in groups] == list(settings.groups)  # a handful of Spark applications a day
    assert [s for t in groups for s in t.stages] == list(STAGES)
    for task in groups:
        assert task.application_args == ["run", "--ds", DS, "--stages", ",".join(task.stages)]
    sources = source_shapes(pipeline_config())
    assert sources[0].feeds_profile  # the CRM snapshot first: it defines the day's known subscribers
    expected = ["check_config", f"extracts.{sources[0].name}", *settings.groups, "recompute_later_days", "report"]
    for upstream, downstream in itertools.pairwise(expected):
        assert downstream in dag.get_task(upstream).downstream_task_ids, (upstream, downstream)


def test_check_config_and_report_start_no_spark_application(dag):
    from jobs.orchestration.operators import ConfigCheckOperator, RunReportOperator

    assert isinstance(dag.get_task("check_config"), ConfigCheckOperator)
    assert isinstance(dag.get_task("report"), RunReportOperator)
    assert {t.task_id for t in dag.tasks if not hasattr(t, "application_args")} == {
        "check_config",
        "report",
        *(t.task_id for t in dag.tasks if t.task_id.startswith("extracts.")),
    }
    assert set(dag.get_task("check_config").downstream_task_ids) == {
        t.task_id for t in dag.tasks if t.task_id.startswith("extracts.")
    }


def test_stateful_groups_depend_on_past_and_the_day_gate_waits_for_the_previous_report(dag, settings):
    stateful = set(settings.stateful_stages)
    for task in group_tasks(dag):
        holds_stateful = bool(stateful & set(task.stages))
        assert task.depends_on_past is holds_stateful, task.task_id
        assert task.ignore_first_depends_on_past is holds_stateful, task.task_id
    first = next(t for t in group_tasks(dag) if set(t.stages) - {"ingest"})
    assert first.depends_on_past and first.wait_for_downstream
    assert "report" in first.downstream_task_ids
    assert [t.task_id for t in group_tasks(dag) if t.wait_for_downstream] == [first.task_id]
    assert dag.get_task("recompute_later_days").gate == first.task_id  # has the next day's stages run


def test_sensors_have_timeouts_by_frequency_and_fail_only_for_mandatory_sources(dag, settings):
    shapes = {s.name: s for s in source_shapes(pipeline_config())}
    sensors = [t for t in dag.tasks if t.task_id.startswith("extracts.")]
    assert {t.source for t in sensors} == set(shapes)
    ingest = next(t for t in group_tasks(dag) if "ingest" in t.stages)
    for sensor in sensors:
        shape = shapes[sensor.source]
        policy = settings.sensors[shape.sync_frequency]
        assert sensor.timeout == policy.timeout.total_seconds() > 0
        assert sensor.poke_interval == policy.poke_interval.total_seconds()
        assert sensor.mode == "reschedule"
        assert sensor.soft_fail is not shape.mandatory
        assert sensor.downstream_task_ids == {ingest.task_id}


def test_asset_events_wait_for_the_quality_gate(dag, settings):
    def uris(stages):
        return {f"{settings.asset_prefix}{t}" for s in stages for t in tables_written_by(s)}

    groups = group_tasks(dag)
    gate = next(i for i, t in enumerate(groups) if "quality" in t.stages)
    up_to_gate = [s for t in groups[: gate + 1] for s in t.stages]
    assert {a.uri for a in groups[gate].outlets} == uris(up_to_gate)
    for task in groups[:gate]:
        assert task.outlets == [], task.task_id
    for task in groups[gate + 1 :]:
        assert {a.uri for a in task.outlets} == uris(task.stages), task.task_id
    announced = {a.uri.removeprefix(settings.asset_prefix) for t in groups[gate:] for a in t.outlets}
    assert announced == set(TABLES)  # every table of the data dictionary, once the gate has passed


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


def test_report_comes_after_the_quality_gate_and_the_later_days(dag):
    upstream = dag.get_task("report").get_flat_relative_ids(upstream=True)
    gate = next(t.task_id for t in group_tasks(dag) if "quality" in t.stages)
    assert {gate, "recompute_later_days"} <= upstream


def test_every_spark_task_of_both_dags_takes_the_one_slot_spark_pool(dagbag, dag, settings):
    """Airflow limits a backfill's runs apart from the DAG's max_active_runs; the one-slot pool
    keeps a backfill's Spark jobs from running beside the nightly run's."""
    assert settings.spark_pool and settings.spark_pool != settings.pool
    assert {name: pool["slots"] for name, pool in settings.airflow_pools().items()} == {settings.spark_pool: 1}
    spark = [*spark_tasks(dag), *spark_tasks(dagbag.dags["gamification_maintenance"])]
    assert {t.task_id for t in spark} >= {*settings.groups, "recompute_later_days", "maintain"}
    assert {t.pool for t in spark} == {settings.spark_pool}
    others = [t for t in dag.tasks if not hasattr(t, "application_args")]
    assert {"check_config", "report"} <= {t.task_id for t in others}
    assert {t.pool for t in others} == {settings.pool or "default_pool"}


def conf_with_pools(tmp_path, **pools):
    """`pools`: the pool of an airflow.yaml block (`tasks`, `spark`)."""

    def edit(data):
        for block, pool in pools.items():
            data[block]["pool"] = pool

    return edited_conf(tmp_path, "airflow.yaml", edit)


def test_without_a_spark_pool_spark_tasks_take_the_tasks_pool(tmp_path):
    conf = conf_with_pools(tmp_path, spark=None, tasks="shared")
    assert AirflowSettings.load(conf).airflow_pools() == {}
    assert {t.pool for t in build_nightly_dag(conf_dir=str(conf)).tasks} == {"shared"}


@pytest.mark.parametrize("name", ["", "  ", 1, ["a"]])
def test_a_pool_name_that_is_not_a_name_is_refused(tmp_path, name):
    with pytest.raises(ConfigError, match=r"airflow.yaml: spark.pool: .*an Airflow pool's name, or null"):
        AirflowSettings.load(conf_with_pools(tmp_path, spark=name))
