"""The nightly pipeline: stages run in pipeline order for one run date; `date_range` gives the
dates of a local backfill, run one after the other."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

from jobs.context import PipelineError, RunContext, build_lakehouse
from jobs.run_log import StageResult, describe_failure, record_stages
from jobs.spark import conf_value, scoped_sql_conf
from jobs.stages import (
    activity,
    badges,
    campaigns,
    exports,
    ingest,
    loyalty,
    missions,
    predictions,
    progress,
    quality,
    scores,
    segments,
    subscriber_state,
)
from jobs.tables import SUBSCRIBER_PROFILE

__all__ = ["STAGES", "PipelineError", "RunContext", "build_lakehouse", "date_range", "run_stages", "small_data_conf"]

log = logging.getLogger(__name__)

STAGES: dict[str, Callable[[RunContext], Any]] = {
    "ingest": ingest.run,
    "predictions": predictions.run,
    "activity": activity.run,
    "scores": scores.run,
    "segments": segments.run,
    "missions": missions.run,
    "progress": progress.run,
    "badges": badges.run,
    "loyalty": loyalty.run,
    "campaigns": campaigns.run,
    "subscriber_state": subscriber_state.run,
    "quality": quality.run,
    "exports": exports.run,
}


# Stages that record their own pipeline_runs rows (one per source) instead of one for the stage.
RECORDS_PER_SOURCE = frozenset({"ingest"})
# The stage that writes the run date's subscriber_profile snapshot (the CRM sources').
WRITES_PROFILE = frozenset({"ingest"})


def run_stages(ctx: RunContext, selected: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the selected stages in pipeline order. Each stage's pipeline_runs row is committed
    together with the others' when the run ends (or fails), and before the quality gate, which
    reads them: one commit instead of one per stage."""
    selected = list(selected or STAGES)
    unknown = [s for s in selected if s not in STAGES]
    if unknown:
        raise PipelineError(f"unknown stage(s) {unknown}; known: {list(STAGES)}")
    recorded: list[StageResult] = []

    def flush() -> None:
        record_stages(ctx.lakehouse, ctx.ds, recorded)
        recorded.clear()

    failed = True
    small_data: dict[bool, dict[str, str]] = {}  # by through_run_date: for ingest, then for the stages after it
    try:
        for name in STAGES:  # always in pipeline order, whatever order was asked
            if name not in selected:
                continue
            if name == "quality":
                flush()
            through_run_date = name not in WRITES_PROFILE
            if through_run_date not in small_data:
                small_data[through_run_date] = small_data_conf(ctx, through_run_date=through_run_date)
            started = time.monotonic()
            try:
                with (
                    scoped_sql_conf(ctx.spark, small_data[through_run_date]),
                    ctx.lakehouse.committing(ds=ctx.ds.isoformat(), stage=name),
                ):
                    ctx.results[name] = STAGES[name](ctx)
            except Exception as exc:
                if name not in RECORDS_PER_SOURCE:
                    recorded.append(StageResult(name, "failed", time.monotonic() - started, describe_failure(exc)))
                raise
            took = time.monotonic() - started
            if name not in RECORDS_PER_SOURCE:
                recorded.append(StageResult(name, "succeeded", took, json.dumps(ctx.results[name], default=str)))
            log.info("stage %s for %s done in %.1fs", name, ctx.ds, took)
        failed = False
    finally:
        try:
            flush()
        except Exception:
            if not failed:
                raise
            log.exception("could not record the stages of the failed run in pipeline_runs")
    return ctx.results


def small_data_conf(ctx: RunContext, *, through_run_date: bool = False) -> dict[str, str]:
    """`spark.small_data.conf` when the operator is small: the newest subscriber_profile snapshot
    before the run date (or on it, `through_run_date`: for the stages after ingest, which writes
    it) holds at most `spark.small_data.max_subscribers` rows (the Delta log's row counts; no
    data read). A date's reruns decide as its first run did, and an operator's first night
    switches after ingest. Without a snapshot, or without row counts, the session's settings stay."""
    small = ctx.config.get("spark.small_data") or {}
    if not small.get("conf"):
        return {}
    rows = ctx.lakehouse.partition_rows(SUBSCRIBER_PROFILE, "snapshot_date")
    last = ctx.ds.isoformat()
    dates = [d for d in rows if d < last or (through_run_date and d == last)]
    newest = max(dates, default=None)
    subscribers = None if newest is None else rows[newest]
    if subscribers is None or subscribers > int(small["max_subscribers"]):
        return {}
    log.info("%d subscribers on %s: small-data settings %s", subscribers, newest, small["conf"])
    return {key: conf_value(value) for key, value in small["conf"].items()}


def date_range(start: date, end: date) -> list[date]:
    if end < start:
        raise PipelineError(f"--to {end} is before --from {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
