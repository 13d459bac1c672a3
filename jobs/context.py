"""What a stage gets for one run date: session, configuration (raw and as typed settings),
lakehouse and the date."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import SparkSession

from jobs.config import Config, ConfigError
from jobs.lakehouse import DEFAULT_PROPERTIES, Lakehouse
from jobs.sources import Source

if TYPE_CHECKING:
    from jobs.settings import Settings
    from jobs.tables import TableSpec


class PipelineError(RuntimeError):
    pass


@dataclass
class RunContext:
    """Everything a stage needs for one run date; built once per process."""

    spark: SparkSession
    config: Config
    lakehouse: Lakehouse
    ds: date
    only_sources: Sequence[str] | None = None
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        """Every stage's settings (jobs.settings), loaded and validated on first use and shared by
        every context of the same Config: no stage parses a configuration file."""
        from jobs.settings import load_settings  # the settings' modules import this one

        return load_settings(self.config)

    @property
    def raw_root(self) -> str:
        return str(self.config.require("raw.root"))

    def sources(self) -> list[Source]:
        """The configured sources this run ingests (all, or those `only_sources` names)."""
        configured = self.settings.sources
        unknown = set(self.only_sources or ()) - set(configured)
        if unknown:
            raise PipelineError(f"unknown source(s) {sorted(unknown)}; configured: {sorted(configured)}")
        return [s for name, s in configured.items() if not self.only_sources or name in self.only_sources]


def build_lakehouse(spark: SparkSession, config: Config) -> Lakehouse:
    from jobs.docs import configured_specs  # the table docs, with the configured metric columns

    settings = config.get("lakehouse", {})
    specs = {spec.name: spec for spec in configured_specs(config.conf_dir)}
    return Lakehouse(
        spark,
        root=lakehouse_root(config),
        storage_options=settings.get("storage_options") or {},
        target_file_size_mb=int(settings.get("target_file_size_mb", 256)),
        single_file_tables=tuple(settings.get("single_file_tables") or ()),
        unshuffled_tables=tuple(settings.get("unshuffled_tables") or ()),
        stats_columns=stats_columns(config, specs),
        properties={**DEFAULT_PROPERTIES, **(settings.get("table_properties") or {})},
        docs=specs.get,
    )


def stats_columns(config: Config, specs: Mapping[str, TableSpec]) -> dict[str, tuple[str, ...]]:
    """`lakehouse.stats_columns`, checked against the table `specs`: known tables, their own scalar
    non-partition columns, and every column maintenance Z-orders the table by (Z-ordering reads
    the statistics)."""
    key = "lakehouse.stats_columns"
    raw = config.get(key) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(config.file_of(key), key, "must map a table to the list of its columns with statistics")
    zorder = config.get("lakehouse.maintenance.zorder_by") or {}
    checked = {}
    for table, columns in raw.items():
        where = f"{key}.{table}"
        spec = specs.get(table)
        if spec is None:
            raise ConfigError(config.file_of(key), where, f"no such table; tables: {', '.join(sorted(specs))}")
        if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
            raise ConfigError(config.file_of(key), where, "must be a non-empty list of column names")
        types = {c.name: c.type for c in spec.columns if c.name not in spec.partition_by}
        for column in columns:
            if column not in types:
                raise ConfigError(config.file_of(key), where, f"{column!r} is not a non-partition column of {table}")
            if types[column].startswith(("map", "array", "struct")):
                raise ConfigError(config.file_of(key), where, f"{column!r} is {types[column]}: no statistics")
        missing = [c for c in zorder.get(table) or () if c not in columns]
        if missing:
            raise ConfigError(config.file_of(key), where, f"must include {missing}: maintenance Z-orders by them")
        checked[table] = tuple(columns)
    return checked


def lakehouse_root(config: Config) -> str:
    """`lakehouse.root` as the jobs use it: a URI as it is, a local path made absolute."""
    root = str(config.require("lakehouse.root"))
    return root if "://" in root else str(Path(root).resolve())
