"""Builds the nightly DAG from conf/airflow.yaml, the configured sources and `STAGES`.

    check_config                                   every configuration file compiled (plain Python)
    >> extracts.<source>                           one sensor per active source (extract files, or
                                                   database readiness for JDBC sources)
    >> <group> >> <group> >> ...                   one Spark job per group of stages (`groups`:
                                                   ingest / stages / publish), STAGES order
    >> recompute_later_days >> report [>> maintain]  (maintain: lakehouse.maintenance.after_nightly)

A day thus starts a handful of Spark applications; `recompute_later_days` starts one only after a
rerun of a past day, and the report is read in plain Python. `build_maintenance_dag` is the
weekly table maintenance (`gamify maintain`) on its own schedule.

Stages added to `jobs.pipeline.STAGES` join the group of the stage before them. Groups holding a
stateful stage run with `depends_on_past`; the first group after ingest also waits for the
previous run's `report` (`wait_for_downstream`), so a day's stages never read history that a
later day is rewriting. Every Spark task of both DAGs takes a slot of the one-slot `spark.pool`:
Airflow limits a backfill's runs apart from the DAG's own, and the pool keeps a backfill's jobs
from rewriting history while the nightly run's read it. Asset events are emitted once the quality
gate has passed.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Asset, BaseSensorOperator, CronDataIntervalTimetable, TaskGroup, TriggerRule, chain

from jobs.config import Config
from jobs.maintenance import MaintenanceSettings
from jobs.orchestration.operators import (
    ConfigCheckOperator,
    ExtractSensor,
    JdbcReadySensor,
    LaterDaysSubmitOperator,
    RunReportOperator,
    StageGroupSubmitOperator,
)
from jobs.orchestration.params import run_params
from jobs.orchestration.selection import GATE, INGEST, group_outlets
from jobs.orchestration.settings import (
    AirflowSettings,
    SourceShape,
    StageGroup,
    pipeline_config,
    source_shapes,
)
from jobs.spark import submit_conf
from jobs.tables import tables_written_by

DS = "{{ ds }}"
DAY_AFTER = "{{ macros.ds_add(ds, 1) }}"
CHECK = "check_config"
EXTRACTS = "extracts"
REPORT = "report"
RECOMPUTE = "recompute_later_days"
MAINTAIN = "maintain"
MAINTAIN_DOC = "Compaction (Z-order where configured), VACUUM and log checkpoints of every table (`gamify maintain`)."


def build_nightly_dag(doc_md: str | None = None, conf_dir: str | None = None) -> DAG:
    from jobs.pipeline import STAGES  # the stage functions' modules import pyspark, not a session

    settings = AirflowSettings.load(conf_dir)
    config = pipeline_config(conf_dir)
    sources = source_shapes(config)
    stages = list(STAGES)
    stateful = [s for s in settings.stateful_stages if s in STAGES]
    settings.check_run_timeout(len(settings.stage_groups(stages)))
    tz = pendulum.timezone(settings.timezone)
    dag = DAG(
        dag_id=settings.dag_id,
        description=settings.description,
        doc_md=doc_md,
        schedule=CronDataIntervalTimetable(settings.cron, timezone=tz),
        start_date=datetime.combine(settings.start_date, time(), tzinfo=tz),
        catchup=settings.catchup,
        max_active_runs=settings.max_active_runs,
        dagrun_timeout=settings.dagrun_timeout,
        tags=set(settings.tags),
        params=run_params(stages, [s.name for s in sources]),
        default_args={
            "owner": settings.owner,
            "retries": settings.retries,
            "retry_delay": settings.retry_delay,
            "retry_exponential_backoff": settings.retry_exponential_backoff,
            "execution_timeout": settings.execution_timeout,
            **({"pool": settings.pool} if settings.pool else {}),
        },
    )
    with dag:
        jobs = _SparkJobs(settings, stateful, config)
        check = ConfigCheckOperator(task_id=CHECK, doc_md=ConfigCheckOperator.__doc__)
        with TaskGroup(EXTRACTS, tooltip="One sensor per source: its extract files, or its database"):
            sensors = [_sensor(settings, source) for source in sources]
        check >> sensors
        groups = settings.stage_groups(stages)
        outlets = group_outlets([(g.name, g.stages) for g in groups], GATE)
        group_tasks = [
            jobs.group(group, [s for later in groups[i + 1 :] for s in later.stages], outlets[group.name])
            for i, group in enumerate(groups)
        ]
        gate = next((t for t, g in zip(group_tasks, groups, strict=True) if set(g.stages) - {INGEST}), None)
        recompute = LaterDaysSubmitOperator(
            task_id=RECOMPUTE,
            stages=stages,
            stateful=stateful,
            gate=gate.task_id if gate else None,
            doc_md=LaterDaysSubmitOperator.__doc__,
            **jobs.common(RECOMPUTE, ["run", "--from", DAY_AFTER, "--to", "latest"]),
        )
        report = RunReportOperator(
            task_id=REPORT, trigger_rule=TriggerRule.NONE_FAILED, doc_md=RunReportOperator.__doc__
        )
        (sensors or check) >> group_tasks[0]  # the first group holds ingest: the pipeline's first stage
        chain(*group_tasks, recompute, report)
        if MaintenanceSettings.from_config(config).after_nightly:
            report >> SparkSubmitOperator(task_id=MAINTAIN, doc_md=MAINTAIN_DOC, **jobs.common(MAINTAIN, [MAINTAIN]))
        if gate is not None:  # the day gate: see the module docstring
            gate.depends_on_past = gate.ignore_first_depends_on_past = gate.wait_for_downstream = True
            gate >> report
    return dag


def _sensor(settings: AirflowSettings, source: SourceShape) -> BaseSensorOperator:
    sensor_type = ExtractSensor if source.has_extract else JdbcReadySensor
    policy = settings.sensors[source.sync_frequency]
    return sensor_type(
        task_id=source.name,
        source=source.name,
        mandatory=source.mandatory,
        mode=settings.sensor_mode,
        poke_interval=policy.poke_interval,
        timeout=policy.timeout,
        doc_md=f"{source.name} ({source.sync_frequency}, {'mandatory' if source.mandatory else 'optional'}): "
        + (sensor_type.__doc__ or ""),
    )


def build_maintenance_dag(doc_md: str | None = None, conf_dir: str | None = None) -> DAG | None:
    """The weekly maintenance DAG, or None when lakehouse.maintenance.schedule is null."""
    settings = AirflowSettings.load(conf_dir)
    config = pipeline_config(conf_dir)
    maintenance = MaintenanceSettings.from_config(config)
    if not maintenance.schedule:
        return None
    tz = pendulum.timezone(settings.timezone)
    dag = DAG(
        dag_id=f"{settings.dag_id.removesuffix('_nightly')}_maintenance",
        description="Weekly Delta table maintenance: compaction, VACUUM, checkpoints",
        doc_md=doc_md,
        schedule=CronDataIntervalTimetable(maintenance.schedule, timezone=tz),
        start_date=datetime.combine(settings.start_date, time(), tzinfo=tz),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=settings.dagrun_timeout,
        tags={*settings.tags, "maintenance"},
        default_args={
            "owner": settings.owner,
            "retries": settings.retries,
            "retry_delay": settings.retry_delay,
            "execution_timeout": settings.execution_timeout,
            **({"pool": settings.pool} if settings.pool else {}),
        },
    )
    with dag:
        SparkSubmitOperator(
            task_id=MAINTAIN, doc_md=MAINTAIN_DOC, **_SparkJobs(settings, [], config).common(MAINTAIN, [MAINTAIN])
        )
    return dag


class _SparkJobs:
    """Keyword arguments shared by every Spark task: connection, application, conf, policy, and
    the one-slot pool (`spark.pool`) that keeps a backfill's Spark jobs from running beside the
    nightly run's."""

    def __init__(self, settings: AirflowSettings, stateful: list[str], config: Config) -> None:
        self.settings = settings
        self.stateful = stateful
        # the Delta (and JDBC driver) jars, shipped with every job: cached files, or Maven coordinates
        self.jar_conf = submit_conf(config.get("spark", {}))

    def common(self, name: str, args: list[str], conf_names: tuple[str, ...] = ()) -> dict[str, Any]:
        """`conf_names`: the `stage_conf` entries applied, in order (default: `name`'s)."""
        s = self.settings
        own = {k: v for key in conf_names or (name,) for k, v in s.stage_conf.get(key, {}).items()}
        return {
            "conn_id": s.conn_id,
            "application": s.application,
            "py_files": s.py_files,
            "application_args": args,
            "conf": {**self.jar_conf, **s.spark_conf, **own},
            "env_vars": dict(s.env_vars) or None,
            "name": f"gamify-{name}-{DS}",
            "trigger_rule": TriggerRule.NONE_FAILED,
            **({"pool": s.spark_pool} if s.spark_pool else {}),
            **s.submit_options,
        }

    def group(self, group: StageGroup, later_stages: list[str], announced: list[str]) -> StageGroupSubmitOperator:
        stateful = any(stage in self.stateful for stage in group.stages)
        conf_names = (*group.stages, group.name)
        tables = dict.fromkeys(t for stage in announced for t in tables_written_by(stage))
        return StageGroupSubmitOperator(
            task_id=group.name,
            group=group.name,
            stages=group.stages,
            later_stages=later_stages,
            doc_md=_group_doc(group),
            outlets=[Asset(f"{self.settings.asset_prefix}{table}") for table in tables],
            depends_on_past=stateful,
            ignore_first_depends_on_past=stateful,
            **self.common(group.name, ["run", "--ds", DS, "--stages", ",".join(group.stages)], conf_names),
        )


def _group_doc(group: StageGroup) -> str:
    from jobs.pipeline import STAGES

    lines = [f"Stages {', '.join(group.stages)} in one Spark application, in this order:", ""]
    lines += [f"* **{stage}**: {(STAGES[stage].__doc__ or '').strip().splitlines()[0]}" for stage in group.stages]
    return "\n".join(lines)
