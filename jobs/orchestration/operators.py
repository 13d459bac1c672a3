"""The DAG's operators: a Spark job per stage (and per source for ingest), the later-days
recomputation, and a sensor per source extract. Each decides at run time, from the run's params
and the run date, whether it has anything to do, and is skipped (never failed) when not."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

from jobs.config import ConfigError
from jobs.orchestration.selection import later_days_stages, source_skip_reason, stage_skip_reason
from jobs.orchestration.settings import pipeline_config, unresolved

PENDING_RUN_STATES = ["queued", "running"]


def run_date(context: Any) -> date:
    return date.fromisoformat(context["ds"])


def next_logical_date(dag_run: Any) -> datetime:
    """The logical date of the next day's run: one data interval (a day) after this run's."""
    interval = dag_run.data_interval_end - dag_run.data_interval_start
    return dag_run.logical_date + (interval or timedelta(days=1))


def due_source(name: str, ds: date):
    """The source as configured where the task runs, or a skip when it is not due on `ds`."""
    from jobs.sources import Source  # pyspark import: at run time only

    config = pipeline_config()
    source = Source.from_config(config.sources[name], config.file_of(f"sources.{name}"))
    if not source.is_due(ds):
        raise AirflowSkipException(f"{source.sync_frequency} source {name} is not due on {ds}")
    return config, source


class StageSubmitOperator(SparkSubmitOperator):
    """`gamify run --ds {{ ds }} --stages <stage> [--sources <source>]` as a Spark job."""

    def __init__(self, *, stage: str, source: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage = stage
        self.source = source

    def execute(self, context: Any) -> None:
        params = context["params"]
        reason = source_skip_reason(params, self.source) if self.source else stage_skip_reason(params, self.stage)
        if reason:
            raise AirflowSkipException(reason)
        if self.source:
            due_source(self.source, run_date(context))
        return super().execute(context)


class LaterDaysSubmitOperator(SparkSubmitOperator):
    """`gamify run --from <ds + 1> --to latest --stages ...`: after a rerun of a past day, bring the
    days after it up to date. A no-op (the job finds nothing to run) when ds is the latest
    processed date; skipped when the run changed nothing later days build on, or when the next
    day's run is itself queued or running (a backfill, a clear with future runs): that run
    recomputes its own day and, if it is the last one, the days after it."""

    def __init__(self, *, stages: list[str], stateful: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stages = stages
        self.stateful = stateful

    def execute(self, context: Any) -> None:
        params = context["params"]
        selected = params.get("stages", self.stages)
        recompute = later_days_stages(self.stages, selected, self.stateful, bool(params.get("full_refresh")))
        if not recompute:
            raise AirflowSkipException(f"nothing later days build on was rerun (stages {list(selected)})")
        next_run = next_logical_date(context["dag_run"])
        pending = context["ti"].get_dr_count(
            dag_id=context["dag"].dag_id, logical_dates=[next_run], states=PENDING_RUN_STATES
        )
        if pending:
            raise AirflowSkipException(f"the run of {next_run:%Y-%m-%d} is queued or running: it brings later days")
        args = [*self.application_args, "--stages", ",".join(recompute)]
        if "ingest" in recompute and params.get("sources") is not None:
            args += ["--sources", ",".join(params["sources"])]
        self.application_args = args
        self.log.info("recomputing %s from the day after %s to the latest processed date", recompute, context["ds"])
        return super().execute(context)


class ExtractSensor(BaseSensorOperator):
    """Waits for a due source's extract (`Source.path_for(ds, raw_root)`, a glob) to exist.

    Not selected or not due on ds: skipped. Timed out: a mandatory source fails naming the
    source and the expected path; an optional one is skipped (soft_fail) and its ingest task
    still runs and records it as missing, so the day's scores know it is degraded.
    """

    ui_color = "#e8f4fd"

    def __init__(self, *, source: str, mandatory: bool, **kwargs: Any) -> None:
        super().__init__(soft_fail=not mandatory, **kwargs)
        self.source = source
        self.mandatory = mandatory
        self.expected: str | None = None

    def poke(self, context: Any) -> bool:
        from jobs.sources import list_extract_files

        reason = source_skip_reason(context["params"], self.source)
        if reason:
            raise AirflowSkipException(reason)
        ds = run_date(context)
        config, source = due_source(self.source, ds)
        raw_root = str(config.require("raw.root"))
        if unresolved(raw_root):
            raise ConfigError(config.file_of("raw.root"), "raw.root", f"is {raw_root}: set it for the Airflow workers")
        if "://" not in raw_root:
            raw_root = str(Path(raw_root).resolve())
        self.expected = source.path_for(ds, raw_root)
        files = list_extract_files(self.expected)
        self.log.info("source %s, %s: %d file(s) at %s", self.source, ds, len(files), self.expected)
        return bool(files)

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            raise AirflowSensorTimeout(
                f"mandatory source {self.source}: no extract for {context['ds']} at {self.expected} "
                f"after waiting {timedelta(seconds=self.timeout)}"
            ) from exc
        except AirflowSkipException:
            if self.expected:
                self.log.warning(
                    "optional source %s: no extract for %s at %s; its ingest records it as missing",
                    self.source,
                    context["ds"],
                    self.expected,
                )
            raise


class JdbcReadySensor(BaseSensorOperator):
    """Waits until a due JDBC source's database answers its readiness query
    (`connection.readiness_query`, default `select 1`), in a small JVM with the cached driver jar:
    no Spark application. Timed out: a mandatory source fails, an optional one is skipped."""

    ui_color = "#e8f4fd"

    def __init__(self, *, source: str, mandatory: bool, **kwargs: Any) -> None:
        super().__init__(soft_fail=not mandatory, **kwargs)
        self.source = source
        self.mandatory = mandatory

    def poke(self, context: Any) -> bool:
        from jobs.jdbc import JdbcError, probe
        from jobs.spark import cached_jars, required_packages

        reason = source_skip_reason(context["params"], self.source)
        if reason:
            raise AirflowSkipException(reason)
        config, source = due_source(self.source, run_date(context))
        connection = source.connection
        if any(unresolved(str(connection.get(k) or "")) for k in ("url", "user", "password")):
            raise ConfigError(config.file_of(f"sources.{self.source}"), "connection", "set its ${VARS} for the workers")
        jars = cached_jars(required_packages(config.get("spark", {})))
        if not jars:
            raise ConfigError("jars", "-", "the JDBC driver is not cached on this worker: run `python -m jobs.spark`")
        try:
            probe(jars, connection, str(connection.get("readiness_query") or "select 1"))
        except JdbcError as exc:
            self.log.info("source %s: %s", self.source, exc)
            return False
        self.log.info("source %s: the database answers", self.source)
        return True
