"""The activity stage: events -> daily_activity for the run date and every earlier day that
received late events in this run (or, on a rerun, in the run it replaces)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from pyspark.sql import functions as F

from jobs.context import RunContext
from jobs.metrics import activity_dates_to_refresh, daily_activity
from jobs.run_log import previous_summary
from jobs.tables import DAILY_ACTIVITY, EVENTS

__all__ = ["run"]


def run(ctx: RunContext) -> dict[str, Any]:
    """events -> daily_activity for the run date and any earlier day that got late events.

    A rerun also rewrites the days the date's last run wrote, from its pipeline_runs summary: a
    corrected extract may no longer hold a late event that run put into an earlier day. When that
    run failed, or the day is written without a recorded run (a killed attempt, a missed night
    filled by later days' late events), what was written is unknown, and the whole lateness
    window is rewritten, each day from the events ingested by the run date."""
    lakehouse, ds = ctx.lakehouse, ctx.ds
    earliest = ds - timedelta(days=ctx.settings.ingest.max_lateness_days)
    window = [("event_date", ">=", earliest), ("event_date", "<=", ds)]
    events = lakehouse.read(EVENTS, partitions=window).filter(F.col("ingest_date") <= F.lit(ds))
    summary = previous_summary(lakehouse, "activity", ds)
    if summary == {} and ds.isoformat() in lakehouse.partition_values(DAILY_ACTIVITY, "activity_date"):
        summary = None  # written by no recorded run of the date: a killed attempt, later days' late events
    if summary is None:
        late = [earliest + timedelta(days=i) for i in range((ds - earliest).days)]
    else:
        late = [
            r[0]
            for r in events.filter((F.col("ingest_date") == F.lit(ds)) & (F.col("event_date") < F.lit(ds)))
            .select("event_date")
            .distinct()
            .collect()  # at most max_lateness_days dates
        ]
        late += [d for d in map(date.fromisoformat, summary.get("dates", [])) if earliest <= d < ds]
    dates = activity_dates_to_refresh(ds, late)
    daily = daily_activity(events.filter(F.col("event_date").isin(dates)), ctx.settings.metrics)
    result = lakehouse.write(
        daily, DAILY_ACTIVITY, partition_by=["activity_date"], replace_where={"activity_date": dates}
    )
    return {"dates": [d.isoformat() for d in dates], "rows": result.rows_added}
