"""conf/airflow.yaml and the shape of the pipeline the DAG is built from.

The scheduler parses the DAG file often and without the jobs' secrets, so the pipeline
configuration is read here with every unset `${VAR}` replaced by a `<VAR>` placeholder: the DAG
needs the sources and stages, not the key or the storage paths. Tasks read the configuration
again when they run, in their own environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from jobs.config import DEFAULT_CONF_DIR, Config, ConfigError, load_config, load_yaml

AIRFLOW_FILE = "airflow.yaml"
FREQUENCIES = ("hourly", "daily", "weekly", "monthly")


class Placeholders(Mapping[str, str]):
    """The process environment (plus `extra`, which wins), where every unset variable reads as `<NAME>`."""

    def __init__(self, extra: Mapping[str, str] | None = None) -> None:
        self.values = {**os.environ, **(extra or {})}

    def __getitem__(self, name: str) -> str:
        return self.values.get(name) or f"<{name}>"

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def pipeline_config(conf_dir: str | Path | None = None, env_vars: Mapping[str, str] | None = None) -> Config:
    """The jobs' configuration ($GAMIFY_ENV overlay) with unset variables as placeholders;
    `env_vars` (the jobs' `spark.env_vars`) over the process environment, GAMIFY_ENV included."""
    env_vars = env_vars or {}
    return load_config(conf_dir, env=env_vars.get("GAMIFY_ENV"), environ=Placeholders(env_vars))


def unresolved(value: str) -> bool:
    return "<" in value and ">" in value


@dataclass(frozen=True)
class SensorPolicy:
    poke_interval: timedelta
    timeout: timedelta


@dataclass(frozen=True)
class SourceShape:
    """What the DAG needs to know about a source when it is parsed."""

    name: str
    mandatory: bool
    sync_frequency: str
    has_extract: bool  # a file extract a sensor can wait for (jdbc sources have none)
    feeds_profile: bool  # ingested first: it defines the known subscribers of the day


@dataclass(frozen=True)
class StageGroup:
    """Stages run as one task and one Spark application."""

    name: str
    stages: tuple[str, ...]


@dataclass(frozen=True)
class AirflowSettings:
    file: Path
    dag_id: str
    description: str
    owner: str
    tags: tuple[str, ...]
    cron: str
    timezone: str
    start_date: date
    catchup: bool
    max_active_runs: int
    dagrun_timeout: timedelta | None  # None: no run timeout (see check_run_timeout)
    retries: int
    retry_delay: timedelta
    retry_exponential_backoff: float
    execution_timeout: timedelta
    pool: str | None  # the tasks that start no Spark application
    spark_pool: str | None  # every Spark task: a one-slot pool (see airflow_pools)
    stateful_stages: tuple[str, ...]
    conn_id: str
    application: str
    py_files: str | None
    spark_conf: Mapping[str, Any]
    stage_conf: Mapping[str, Mapping[str, Any]]
    env_vars: Mapping[str, str]
    submit_options: Mapping[str, Any]
    sensor_mode: str
    sensors: Mapping[str, SensorPolicy]
    asset_prefix: str
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def load(cls, conf_dir: str | Path | None = None) -> AirflowSettings:
        conf_dir = Path(conf_dir or os.environ.get("GAMIFY_CONF_DIR") or DEFAULT_CONF_DIR)
        path = conf_dir / AIRFLOW_FILE
        data = load_yaml(path) or {}
        try:
            return cls._from_mapping(path, data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(path, "-", f"invalid orchestration settings: {exc!r}") from exc

    @classmethod
    def _from_mapping(cls, path: Path, data: Mapping[str, Any]) -> AirflowSettings:
        tasks, spark, sensors, assets = data["tasks"], data["spark"], data["sensors"], data.get("assets") or {}
        missing = [f for f in FREQUENCIES if f not in sensors]
        hours = data.get("dagrun_timeout_hours")
        timezone = str(data["schedule"].get("timezone", "UTC"))
        if timezone not in ("UTC", "Etc/UTC"):
            raise ConfigError(
                path,
                "schedule.timezone",
                f"{timezone}: only UTC is supported. Airflow's run date ({{{{ ds }}}}) is the day of the logical "
                "date in UTC, so a schedule at another zone's midnight would process the day before; write the "
                "cron in UTC (the jobs read event times in the sources' own zones whatever the schedule)",
            )
        if missing:
            raise ConfigError(path, "sensors", f"needs a policy for every sync_frequency; missing {missing}")
        return cls(
            file=path,
            dag_id=data["dag_id"],
            description=data.get("description", ""),
            owner=data["owner"],
            tags=tuple(data.get("tags") or ()),
            cron=data["schedule"]["cron"],
            timezone=timezone,
            start_date=_as_date(data["start_date"]),
            catchup=bool(data.get("catchup", False)),
            max_active_runs=int(data.get("max_active_runs", 1)),
            dagrun_timeout=None if hours is None else timedelta(hours=float(hours)),
            retries=int(tasks["retries"]),
            retry_delay=timedelta(minutes=tasks.get("retry_delay_minutes", 5)),
            retry_exponential_backoff=float(tasks.get("retry_exponential_backoff", 0)),
            execution_timeout=timedelta(minutes=tasks["execution_timeout_minutes"]),
            pool=_pool_name(path, "tasks.pool", tasks.get("pool")),
            spark_pool=_pool_name(path, "spark.pool", spark.get("pool")),
            stateful_stages=tuple(data.get("stateful_stages") or ()),
            conn_id=spark.get("conn_id", "spark_default"),
            application=spark.get("application") or str(Path(__file__).parents[1] / "__main__.py"),
            py_files=spark.get("py_files"),
            spark_conf=dict(spark.get("conf") or {}),
            stage_conf={k: dict(v) for k, v in (spark.get("stage_conf") or {}).items()},
            env_vars={k: str(v) for k, v in (spark.get("env_vars") or {}).items()},
            submit_options=dict(spark.get("submit_options") or {}),
            sensor_mode=sensors.get("mode", "reschedule"),
            sensors={
                f: SensorPolicy(
                    poke_interval=timedelta(minutes=sensors[f]["poke_interval_minutes"]),
                    timeout=timedelta(hours=sensors[f]["timeout_hours"]),
                )
                for f in FREQUENCIES
            },
            asset_prefix=assets.get("uri_prefix", "lakehouse://gamification/"),
            groups={str(k): tuple(v or ()) for k, v in (data.get("groups") or {}).items()},
        )

    def airflow_pools(self) -> dict[str, dict[str, Any]]:
        """The pools the DAGs need, as `airflow pools import` reads them (the REST API's pool body
        less the name). The Spark tasks' pool has one slot: Airflow limits a backfill's runs apart
        from the DAG's own, so without it a backfill's Spark jobs could run beside the nightly
        run's, one rewriting the history the other reads."""
        if not self.spark_pool:
            return {}
        description = f"{self.dag_id}: one Spark application at a time reads and writes the lakehouse"
        return {self.spark_pool: {"slots": 1, "description": description, "include_deferred": False}}

    def check_run_timeout(self, groups: int) -> None:
        """A run timeout must leave room for the longest night: Airflow marks a timed-out run
        failed and its unfinished tasks skipped, and depends_on_past counts a skipped task as
        done, so the next day would run over a day never computed. The longest night: the
        longest sensor wait, then every group's attempts (retries + 1) at their execution timeout."""
        if self.dagrun_timeout is None:
            return
        wait = max(policy.timeout for policy in self.sensors.values())
        work = groups * (self.retries + 1) * self.execution_timeout
        if self.dagrun_timeout < wait + work:
            need = (wait + work).total_seconds() / 3600
            raise ConfigError(
                self.file,
                "dagrun_timeout_hours",
                f"{self.dagrun_timeout.total_seconds() / 3600:g} h is shorter than a night may take "
                f"({need:g} h: the longest sensor wait, then {groups} groups x {self.retries + 1} attempts x "
                f"{self.execution_timeout.total_seconds() / 60:g} min); a timed-out run skips its unfinished "
                "tasks and the next day runs without it: raise it, or null for no run timeout",
            )

    def stage_groups(self, stages: Sequence[str]) -> list[StageGroup]:
        """The configured groups over `stages` (pipeline order): a stage no group names joins the
        group of the stage before it, so a stage added to the pipeline needs no change here. Groups
        must be contiguous runs of the pipeline, in its order; no groups: one group per stage."""
        if not self.groups:
            return [StageGroup(stage, (stage,)) for stage in stages]
        listed = [stage for members in self.groups.values() for stage in members]
        unknown = sorted(set(listed) - set(stages))
        twice = sorted({s for s in listed if listed.count(s) > 1})
        if unknown or twice or not all(self.groups.values()):
            raise ConfigError(
                self.file, "groups", f"unknown stages {unknown}, stages in two groups {twice}, or an empty group"
            )
        owner = {stage: name for name, members in self.groups.items() for stage in members}
        if stages and stages[0] not in owner:
            raise ConfigError(self.file, "groups", f"the first stage, {stages[0]}, must be in a group")
        members: dict[str, list[str]] = {name: [] for name in self.groups}
        order: list[str] = []
        for stage in stages:
            if stage not in owner:
                owner[stage] = order[-1]
            if not order or order[-1] != owner[stage]:
                if owner[stage] in order:
                    raise ConfigError(
                        self.file, "groups", f"{owner[stage]} is not a contiguous run of the stages {list(stages)}"
                    )
                order.append(owner[stage])
            members[owner[stage]].append(stage)
        return [StageGroup(name, tuple(members[name])) for name in order]


def _pool_name(path: Path, key: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip()):
        return value
    raise ConfigError(path, key, f"{value!r}: an Airflow pool's name, or null")


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def source_shapes(config: Config) -> list[SourceShape]:
    """Active sources in ingest order: profile (CRM snapshot) sources first, then by name, as
    `jobs.stages.ingest.run_ingest` orders them."""
    shapes = [
        SourceShape(
            name=name,
            mandatory=bool(spec.get("mandatory", False)),
            sync_frequency=spec["sync_frequency"],
            has_extract=spec["format"] != "jdbc",
            feeds_profile=spec.get("profile") is not None,
        )
        for name, spec in config.sources.items()
        if spec.get("active", True)
    ]
    return sorted(shapes, key=lambda s: (not s.feeds_profile, s.name))
