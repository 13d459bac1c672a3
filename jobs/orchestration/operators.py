"""The DAG's operators: the up-front configuration check, a sensor per source extract, a Spark
job per group of stages, the later-days recomputation and the run report (plain Python, no
Spark). Each decides at run time, from the run's params and the run date, whether it has
anything to do, and is skipped (never failed) when not."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import BaseOperator, BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowSkipException

from jobs.config import Config, ConfigError, load_config
from jobs.orchestration.selection import INGEST, group_stages, later_days_stages, source_skip_reason
from jobs.orchestration.settings import AirflowSettings, pipeline_config, unresolved

PENDING_RUN_STATES = ["queued", "running"]
GATE_RAN_STATES = ["success", "skipped"]  # a pending run's gate that will not run again by itself


def run_date(context: Any) -> date:
    return date.fromisoformat(context["ds"])


def next_logical_date(dag_run: Any) -> datetime:
    """The logical date of the next day's run: one data interval (a day) after this run's."""
    interval = dag_run.data_interval_end - dag_run.data_interval_start
    return dag_run.logical_date + (interval or timedelta(days=1))


def worker_config() -> Config:
    """The jobs' configuration as the Spark jobs see it: the worker's environment plus the
    `spark.env_vars` the jobs get (GAMIFY_ENV, roots)."""
    env_vars = AirflowSettings.load().env_vars
    return load_config(environ={**os.environ, **env_vars}, env=env_vars.get("GAMIFY_ENV"))


def due_source(name: str, ds: date):
    """The source as the day's Spark jobs will see it (the worker's environment plus
    `spark.env_vars`), or a skip when it is not due on `ds`."""
    from jobs.sources import Source  # pyspark import: at run time only

    config = pipeline_config(env_vars=AirflowSettings.load().env_vars)
    source = Source.from_config(config.sources[name], config.file_of(f"sources.{name}"))
    if not source.is_due(ds):
        raise AirflowSkipException(f"{source.sync_frequency} source {name} is not due on {ds}")
    return config, source


class ConfigCheckOperator(BaseOperator):
    """Loads and compiles every configuration and template file on the worker (`gamify config
    validate`), before any sensor waits or any Spark job starts. A problem fails the run at once,
    without retries, listing every problem with its file, line and column. So does a run with no
    run date (triggered without a logical date) or one whose day has not ended when the run may
    start (a manual trigger left at its default logical date, now): a night processes a day that
    ended, whose extracts are complete."""

    ui_color = "#f4f4f4"

    def execute(self, context: Any) -> None:
        from jobs.validation import config_problems

        if context.get("ds") is None:
            raise AirflowFailException(
                "this run has no logical date, hence no run date: trigger it with the day to process as its "
                "logical date (Trigger > Logical date in the UI, logical_date in the REST API)"
            )
        started = getattr(context.get("dag_run"), "run_after", None)
        if started is not None and run_date(context) >= started.date():
            raise AirflowFailException(
                f"run date {context['ds']} has not ended when this run may start ({started.isoformat()}): a night "
                "processes a day that ended; trigger it with that day's date as its logical date"
            )

        problems = config_problems(worker_config())
        if problems:
            raise AirflowFailException(
                f"{len(problems)} configuration problem(s), nothing was run:\n" + "\n".join(f"  {p}" for p in problems)
            )
        self.log.info("configuration and templates compiled: no problem")


class StageGroupSubmitOperator(SparkSubmitOperator):
    """`gamify run --ds {{ ds }} --stages <the group's selected stages>`: one Spark application
    for a group of stages (`groups` in conf/airflow.yaml), skipped when the run selects none of
    them. The last group that runs also writes the nightly HTML report (`--html-report`), in the
    same application. On success, each outlet's Asset event carries the run date and the stages."""

    def __init__(self, *, group: str, stages: Sequence[str], later_stages: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.group = group
        self.stages = list(stages)
        self.later_stages = list(later_stages)

    def execute(self, context: Any) -> None:
        params = context["params"]
        chosen = group_stages(params, self.stages)
        if not chosen:
            raise AirflowSkipException(f"no stage of group {self.group} {self.stages} is selected for this run")
        args = ["run", "--ds", context["ds"], "--stages", ",".join(chosen)]
        if INGEST in chosen and params.get("sources") is not None:
            args += ["--sources", ",".join(params["sources"])]
        if not group_stages(params, self.later_stages):
            args.append("--html-report")
        self.application_args = args
        super().execute(context)
        for asset in self.outlets:
            context["outlet_events"][asset].extra = {"ds": context["ds"], "stages": chosen}


class LaterDaysSubmitOperator(SparkSubmitOperator):
    """`gamify run --from <ds + 1> --to latest --stages ...`: after a rerun of a past day, bring the
    days after it up to date. Skipped without a Spark job when the run changed nothing later days
    build on, when ds is the latest processed date (every night: read from the Delta log in plain
    Python), or when the next day's run is itself queued or running (a backfill, a clear with
    future runs) and its `gate` task (the first group after ingest) has yet to run: that run
    recomputes its own day and, if it is the last one, the days after it. A next run whose gate
    has already run (a night that went on while a backfill reran the day before) is recomputed."""

    def __init__(self, *, stages: list[str], stateful: list[str], gate: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stages = stages
        self.stateful = stateful
        self.gate = gate

    def execute(self, context: Any) -> None:
        params = context["params"]
        selected = params.get("stages", self.stages)
        recompute = later_days_stages(self.stages, selected, self.stateful, bool(params.get("full_refresh")))
        if not recompute:
            raise AirflowSkipException(f"nothing later days build on was rerun (stages {list(selected)})")
        from jobs.run_log import latest_processed_date

        latest = latest_processed_date(worker_config())  # the Delta log, read without Spark
        if latest is None or latest <= run_date(context):
            raise AirflowSkipException(f"no processed day after {context['ds']} (latest processed date: {latest})")
        next_run = next_logical_date(context["dag_run"])
        if self._next_run_brings_later_days(next_run, context):
            raise AirflowSkipException(f"the run of {next_run:%Y-%m-%d} is queued or running: it brings later days")
        args = [*self.application_args, "--stages", ",".join(recompute)]
        if "ingest" in recompute and params.get("sources") is not None:
            args += ["--sources", ",".join(params["sources"])]
        self.application_args = args
        self.log.info("recomputing %s from the day after %s to the latest processed date", recompute, context["ds"])
        return super().execute(context)

    def _next_run_brings_later_days(self, next_run: datetime, context: Any) -> bool:
        """Whether the next day's run is queued or running with its gate still to run."""
        ti, dag_id = context["ti"], context["dag"].dag_id
        if not ti.get_dr_count(dag_id=dag_id, logical_dates=[next_run], states=PENDING_RUN_STATES):
            return False
        if self.gate is None:
            return True
        ran = ti.get_ti_count(dag_id=dag_id, task_ids=[self.gate], logical_dates=[next_run], states=GATE_RAN_STATES)
        if ran:
            self.log.info("the run of %s is active but its %s task already ran: recomputing it", next_run, self.gate)
        return not ran


class RunReportOperator(BaseOperator):
    """What `pipeline_runs` recorded for the run date (`gamify report --ds`), read from the Delta
    log in plain Python: rows read, accepted, rejected and duplicate per source, a row per stage,
    the unavailable sources; then the nightly HTML page's path (written by the day's last Spark
    application), which is also the task's return value."""

    ui_color = "#f4f4f4"

    def execute(self, context: Any) -> str | None:
        from jobs.analytics.report import default_path
        from jobs.run_log import format_report, latest_processed_date, run_report

        config = worker_config()
        ds = run_date(context)
        self.log.info("\n%s", format_report(ds, run_report(config, ds), latest_processed_date(config)))
        page = default_path(config, ds)
        if not page.exists():
            self.log.info("no HTML report for %s at %s: no Spark group ran for it", ds, page)
            return None
        self.log.info("nightly report: %s", page.resolve())
        return str(page.resolve())


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
        from jobs.sources import is_hidden, list_extract_files

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
        # a name starting with '_' or '.' is an upload in progress or a marker: ingest would set it aside
        ready = [f for f in files if not is_hidden(f)]
        self.log.info(
            "source %s, %s: %d file(s) at %s (%d hidden)",
            self.source,
            ds,
            len(ready),
            self.expected,
            len(files) - len(ready),
        )
        return bool(ready)

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
