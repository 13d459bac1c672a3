"""Builds the nightly DAG from conf/airflow.yaml, the configured sources and `STAGES`.

    ingest.wait_<source> >> ingest.<source>       one sensor (extract files, or database readiness
                                                  for JDBC sources) and one Spark job per active source,
    ingest.<a> >> ingest.<b> >> ...               ingested one after the other, CRM snapshot first
    >> <stage> >> <stage> >> ...                  one Spark job per stage after ingest, STAGES order
    >> recompute_later_days >> report [>> maintain]   (maintain: lakehouse.maintenance.after_nightly)

`build_maintenance_dag` is the weekly table maintenance (`gamify maintain`) on its own schedule.

Stages added to `jobs.pipeline.STAGES` appear without a change here. Stateful stages run with
`depends_on_past`; the first stage after ingest also waits for the previous run's `report`
(`wait_for_downstream`), so a day's stages never read history that a later day is rewriting.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

import pendulum
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, TaskGroup, TriggerRule, chain

from jobs.config import Config
from jobs.maintenance import MaintenanceSettings
from jobs.orchestration.operators import (
    ExtractSensor,
    JdbcReadySensor,
    LaterDaysSubmitOperator,
    StageSubmitOperator,
)
from jobs.orchestration.params import run_params
from jobs.orchestration.settings import AirflowSettings, SourceShape, pipeline_config, source_shapes
from jobs.spark import submit_conf

DS = "{{ ds }}"
DAY_AFTER = "{{ macros.ds_add(ds, 1) }}"
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
        with TaskGroup("ingest", tooltip="One sensor and one Spark job per source, CRM snapshot first"):
            ingests = [_ingest_source(jobs, settings, source) for source in sources]
        chain(*ingests)
        after_ingest = [
            jobs.stage(stage, task_id=stage, doc_md=STAGES[stage].__doc__) for stage in stages if stage != "ingest"
        ]
        recompute = LaterDaysSubmitOperator(
            task_id=RECOMPUTE,
            stages=stages,
            stateful=stateful,
            doc_md=LaterDaysSubmitOperator.__doc__,
            **jobs.common(RECOMPUTE, ["run", "--from", DAY_AFTER, "--to", "latest"]),
        )
        report = SparkSubmitOperator(
            task_id=REPORT,
            doc_md="What the pipeline recorded for the run date (`gamify report --ds --html`): rows per stage and "
            "source in the log, then the nightly HTML report with charts, written after the quality gate; "
            "the log's last line is the page's path (`<lakehouse root>/_reports/<ds>.html`).",
            **jobs.common(REPORT, ["report", "--ds", DS, "--html"]),
        )
        chain(*ingests[-1:], *after_ingest, recompute, report)
        if MaintenanceSettings.from_config(config).after_nightly:
            report >> SparkSubmitOperator(task_id=MAINTAIN, doc_md=MAINTAIN_DOC, **jobs.common(MAINTAIN, [MAINTAIN]))
        if after_ingest:  # the day gate: see the module docstring
            first = after_ingest[0]
            first.depends_on_past = first.ignore_first_depends_on_past = first.wait_for_downstream = True
            first >> report
    return dag


def _ingest_source(jobs: _SparkJobs, settings: AirflowSettings, source: SourceShape) -> StageSubmitOperator:
    ingest = jobs.stage(
        "ingest",
        task_id=source.name,
        source=source.name,
        doc_md=f"Ingest `{source.name}` ({source.sync_frequency}, {'mandatory' if source.mandatory else 'optional'}).",
    )
    sensor_type = ExtractSensor if source.has_extract else JdbcReadySensor
    policy = settings.sensors[source.sync_frequency]
    sensor = sensor_type(
        task_id=f"wait_{source.name}",
        source=source.name,
        mandatory=source.mandatory,
        mode=settings.sensor_mode,
        poke_interval=policy.poke_interval,
        timeout=policy.timeout,
        doc_md=sensor_type.__doc__,
    )
    sensor >> ingest
    return ingest


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
    """Keyword arguments shared by every Spark task: connection, application, conf, policy."""

    def __init__(self, settings: AirflowSettings, stateful: list[str], config: Config) -> None:
        self.settings = settings
        self.stateful = stateful
        # the Delta (and JDBC driver) jars, shipped with every job: cached files, or Maven coordinates
        self.jar_conf = submit_conf(config.get("spark", {}))

    def common(self, name: str, args: list[str], stage: str | None = None) -> dict[str, Any]:
        s = self.settings
        return {
            "conn_id": s.conn_id,
            "application": s.application,
            "py_files": s.py_files,
            "application_args": args,
            "conf": {**self.jar_conf, **s.spark_conf, **s.stage_conf.get(stage or name, {})},
            "env_vars": dict(s.env_vars) or None,
            "name": f"gamify-{name}-{DS}",
            "trigger_rule": TriggerRule.NONE_FAILED,
            **s.submit_options,
        }

    def stage(self, stage: str, *, task_id: str, source: str | None = None, doc_md: str | None = None):
        args = ["run", "--ds", DS, "--stages", stage, *(["--sources", source] if source else [])]
        tables = self.settings.stage_tables.get(stage, ())
        stateful = stage in self.stateful
        return StageSubmitOperator(
            task_id=task_id,
            stage=stage,
            source=source,
            doc_md=doc_md,
            outlets=[Asset(f"{self.settings.asset_prefix}{table}") for table in tables],
            depends_on_past=stateful,
            ignore_first_depends_on_past=stateful,
            **self.common(f"{stage}-{source}" if source else stage, args, stage),
        )
