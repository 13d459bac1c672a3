"""The nightly pipeline: stages run in pipeline order for one run date; `date_range` gives the
dates of a local backfill, run one after the other."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

from jobs import stages
from jobs.context import PipelineError, RunContext, build_lakehouse

__all__ = ["STAGES", "PipelineError", "RunContext", "build_lakehouse", "date_range", "run_stages"]

log = logging.getLogger(__name__)

STAGES: dict[str, Callable[[RunContext], Any]] = {
    "ingest": stages.ingest,
    "activity": stages.activity,
    "scores": stages.scores,
    "segments": stages.segments,
    "missions": stages.missions,
    "progress": stages.progress,
    "badges": stages.badges,
    "loyalty": stages.loyalty,
    "campaigns": stages.campaigns,
}


def run_stages(ctx: RunContext, selected: Sequence[str] | None = None) -> dict[str, Any]:
    selected = list(selected or STAGES)
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
