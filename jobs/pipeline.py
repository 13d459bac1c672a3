"""The nightly pipeline: stages run in order for one run date, each reading and writing the
lakehouse. `run_range` runs several dates in date order (a local backfill)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from pyspark.sql import SparkSession

from jobs.config import Config
from jobs.ingest import IngestContext, SourceResult, run_ingest
from jobs.lakehouse import Lakehouse
from jobs.sources import Source

log = logging.getLogger(__name__)


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


def ingest_stage(ctx: RunContext) -> list[SourceResult]:
    ingest_ctx = IngestContext(
        ds=ctx.ds,
        timezone=ctx.config.require("operator.timezone"),
        country_code=str(ctx.config.require("operator.country_code")),
        key=ctx.config.require("privacy.pseudonymisation_key"),
        max_lateness_days=ctx.config.get("ingest.max_lateness_days", 7),
    )
    results = run_ingest(
        ctx.lakehouse, ctx.sources(), ingest_ctx, ctx.raw_root, ctx.config.get("ingest.subscriber_lookback_days", 7)
    )
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise PipelineError("; ".join(f"{r.source}: {r.message}" for r in failed))
    return results


STAGES: dict[str, Callable[[RunContext], Any]] = {
    "ingest": ingest_stage,
}


def run_stages(ctx: RunContext, stages: Sequence[str] | None = None) -> dict[str, Any]:
    selected = list(stages or STAGES)
    unknown = [s for s in selected if s not in STAGES]
    if unknown:
        raise PipelineError(f"unknown stage(s) {unknown}; known: {list(STAGES)}")
    for name in STAGES:  # always in pipeline order, whatever order was asked
        if name in selected:
            started = time.monotonic()
            ctx.results[name] = STAGES[name](ctx)
            log.info("stage %s for %s done in %.1fs", name, ctx.ds, time.monotonic() - started)
    return ctx.results


def date_range(start: date, end: date) -> list[date]:
    if end < start:
        raise PipelineError(f"--to {end} is before --from {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def build_lakehouse(spark: SparkSession, config: Config) -> Lakehouse:
    return Lakehouse(
        spark,
        root=_absolute(str(config.require("lakehouse.root"))),
        engine=config.get("lakehouse.engine", "auto"),
        storage_options=config.get("lakehouse.storage_options") or {},
    )


def _absolute(path: str) -> str:
    if "://" in path:
        return path
    from pathlib import Path

    return str(Path(path).resolve())
