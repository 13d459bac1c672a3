"""The progress stage: live mission_assignments x daily_activity -> mission_progress for the
run date, completions recorded earlier staying final."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pyspark.sql import functions as F

from jobs.context import RunContext
from jobs.progress import prior_completions, track
from jobs.tables import DAILY_ACTIVITY, MISSION_ASSIGNMENTS, MISSION_PROGRESS, schema_of

__all__ = ["run"]


def run(ctx: RunContext) -> dict[str, Any]:
    """Live mission_assignments x daily_activity -> mission_progress for the run date."""
    settings = ctx.settings.missions
    metrics = ctx.settings.mission_metrics
    lakehouse, ds = ctx.lakehouse, ctx.ds
    longest = settings.progress_days
    window = [("assigned_ds", ">=", ds - timedelta(days=longest)), ("assigned_ds", "<=", ds)]
    assignments = lakehouse.read_or_empty(MISSION_ASSIGNMENTS, schema_of(MISSION_ASSIGNMENTS), partitions=window)
    activity_rows = lakehouse.read(
        DAILY_ACTIVITY, partitions=[("activity_date", ">=", ds - timedelta(days=longest)), ("activity_date", "<=", ds)]
    )
    earlier = lakehouse.read_or_empty(
        MISSION_PROGRESS,
        schema_of(MISSION_PROGRESS),
        partitions=[("progress_ds", ">=", ds - timedelta(days=longest)), ("progress_ds", "<=", ds)],
    )
    # completions recorded so far, materialised before this date's rows are replaced
    recorded = prior_completions(earlier, ds).localCheckpoint()
    rows = track(assignments, activity_rows, recorded, metrics, ds, settings.settle_days)
    result = lakehouse.write(rows, MISSION_PROGRESS, partition_by=["progress_ds"], replace_where={"progress_ds": ds})
    # counted per status from the version just written: one column read back, no cache of the rows
    written = lakehouse.read(MISSION_PROGRESS, version=result.version, partitions=[("progress_ds", "=", ds)])
    counts = {r.status: r.n for r in written.groupBy("status").agg(F.count("*").alias("n")).collect()}  # <= 4 rows
    return {"rows": result.rows_added, **dict(sorted(counts.items()))}
