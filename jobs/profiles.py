"""The CRM subscriber profile as of a run date."""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.lakehouse import Lakehouse
from jobs.tables import SUBSCRIBER_PROFILE


def profile_as_of(lakehouse: Lakehouse, ds: date, lookback_days: int) -> DataFrame | None:
    """Profile rows of the newest CRM snapshot in [ds - lookback, ds], or None if there is none."""
    start = ds - timedelta(days=lookback_days)
    snapshots = [
        d
        for d in lakehouse.partition_values(SUBSCRIBER_PROFILE, "snapshot_date")
        if start.isoformat() <= d <= ds.isoformat()
    ]
    if not snapshots:
        return None
    newest = date.fromisoformat(max(snapshots))
    return lakehouse.read(SUBSCRIBER_PROFILE, partitions=[("snapshot_date", "=", newest)]).filter(
        F.col("snapshot_date") == F.lit(newest)
    )
