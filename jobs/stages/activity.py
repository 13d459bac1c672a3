"""The activity stage: events -> daily_activity for the run date and every earlier day that
received late events in this run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pyspark.sql import functions as F

from jobs.context import RunContext
from jobs.metrics import activity_dates_to_refresh, daily_activity
from jobs.tables import DAILY_ACTIVITY, EVENTS

__all__ = ["run"]


def run(ctx: RunContext) -> dict[str, Any]:
    """events -> daily_activity for the run date and any earlier day that got late events."""
    lakehouse, ds = ctx.lakehouse, ctx.ds
    window = [
        ("event_date", ">=", ds - timedelta(days=ctx.settings.ingest.max_lateness_days)),
        ("event_date", "<=", ds),
    ]
    events = lakehouse.read(EVENTS, partitions=window).filter(F.col("ingest_date") <= F.lit(ds))
    late = [
        r[0]
        for r in events.filter((F.col("ingest_date") == F.lit(ds)) & (F.col("event_date") < F.lit(ds)))
        .select("event_date")
        .distinct()
        .collect()  # at most max_lateness_days dates
    ]
    dates = activity_dates_to_refresh(ds, late)
    daily = daily_activity(events.filter(F.col("event_date").isin(dates)), ctx.settings.metrics)
    result = lakehouse.write(
        daily, DAILY_ACTIVITY, partition_by=["activity_date"], replace_where={"activity_date": dates}
    )
    return {"dates": [d.isoformat() for d in dates], "rows": result.rows_added}
