"""The nightly pipeline: stages run in pipeline order for one run date; `date_range` gives the
dates of a local backfill, run one after the other."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

from jobs import quality, stages
from jobs.context import PipelineError, RunContext, build_lakehouse
from jobs.ingest import describe_failure
from jobs.tables import PIPELINE_RUNS, schema_of

__all__ = ["STAGES", "PipelineError", "RunContext", "build_lakehouse", "date_range", "run_stages"]

log = logging.getLogger(__name__)

STAGES: dict[str, Callable[[RunContext], Any]] = {
    "ingest": stages.ingest,
    "predictions": stages.predictions,
    "activity": stages.activity,
    "scores": stages.scores,
    "segments": stages.segments,
    "missions": stages.missions,
    "progress": stages.progress,
    "badges": stages.badges,
    "loyalty": stages.loyalty,
    "campaigns": stages.campaigns,
    "subscriber_state": stages.state,
    "quality": quality.run_quality,
    "exports": stages.exports,
}


def run_stages(ctx: RunContext, selected: Sequence[str] | None = None) -> dict[str, Any]:
    selected = list(selected or STAGES)
    unknown = [s for s in selected if s not in STAGES]
    if unknown:
        raise PipelineError(f"unknown stage(s) {unknown}; known: {list(STAGES)}")
    for name in STAGES:  # always in pipeline order, whatever order was asked
        if name in selected:
            started = time.monotonic()
            try:
                with ctx.lakehouse.committing(ds=ctx.ds.isoformat(), stage=name):
                    ctx.results[name] = STAGES[name](ctx)
            except Exception as exc:
                if name != "ingest":
                    record_stage(ctx, name, "failed", time.monotonic() - started, describe_failure(exc))
                raise
            took = time.monotonic() - started
            if name != "ingest":  # ingest records one row per source itself
                record_stage(ctx, name, "succeeded", took, json.dumps(ctx.results[name], default=str))
            log.info("stage %s for %s done in %.1fs", name, ctx.ds, took)
    return ctx.results


def record_stage(ctx: RunContext, stage: str, status: str, duration_s: float, message: str) -> None:
    """Replace this stage's row for the run date in pipeline_runs."""
    row = (ctx.ds, stage, None, status, None, None, None, None, None, round(duration_s, 3), message[:2000])
    with ctx.lakehouse.committing(ds=ctx.ds.isoformat(), stage=stage):
        ctx.lakehouse.write(
            ctx.spark.createDataFrame([row], schema_of(PIPELINE_RUNS)),
            PIPELINE_RUNS,
            partition_by=["run_ds"],
            replace_where={"run_ds": ctx.ds, "stage": stage},
        )


def date_range(start: date, end: date) -> list[date]:
    if end < start:
        raise PipelineError(f"--to {end} is before --from {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
