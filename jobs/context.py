"""What a stage gets for one run date: session, configuration, lakehouse and the date."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from jobs.config import Config
from jobs.lakehouse import DEFAULT_PROPERTIES, Lakehouse
from jobs.sources import Source


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
    def raw_root(self) -> str:
        return str(self.config.require("raw.root"))

    def sources(self) -> list[Source]:
        selected = []
        for name, spec in self.config.sources.items():
            if self.only_sources and name not in self.only_sources:
                continue
            selected.append(Source.from_config(spec, self.config.file_of(f"sources.{name}")))
        unknown = set(self.only_sources or ()) - set(self.config.sources)
        if unknown:
            raise PipelineError(f"unknown source(s) {sorted(unknown)}; configured: {sorted(self.config.sources)}")
        return selected

    def conf_path(self, name: str) -> Path:
        return Path(self.config.conf_dir) / name


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
        properties={**DEFAULT_PROPERTIES, **(settings.get("table_properties") or {})},
        docs=specs.get,
    )


def lakehouse_root(config: Config) -> str:
    """`lakehouse.root` as the jobs use it: a URI as it is, a local path made absolute."""
    root = str(config.require("lakehouse.root"))
    return root if "://" in root else str(Path(root).resolve())
