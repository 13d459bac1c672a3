"""The loyalty stage: the run date's completions, badge awards and expiries -> loyalty_ledger
(each entry once, under the budgets); balances moved since the previous tier day and the
scores -> loyalty_tiers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pyspark.sql import functions as F

from jobs.context import RunContext
from jobs.loyalty import CAPPED, balances, earnings, expiries, ledger_entries, tiers, with_budgets
from jobs.missions import with_holdout
from jobs.stages.readers import latest_before, read_day
from jobs.tables import (
    BADGE_AWARDS,
    BEHAVIOR_SCORES,
    LOYALTY_LEDGER,
    LOYALTY_TIERS,
    MISSION_PROGRESS,
    SUBSCRIBER_SEGMENTS,
    schema_of,
)

__all__ = ["LEDGER_GUARD_DAYS", "run"]

# An entry id is a hash of what earned it (a completion, an award, an expired entry) and is
# credited on one day only. A rerun or backfill of another day can already have recorded the
# same earning within a mission's period (a month at most) of this one: the ledger days this
# far either side of the run date (two months) are read for entry ids recorded elsewhere.
LEDGER_GUARD_DAYS = 62


def run(ctx: RunContext) -> dict[str, Any]:
    """Completions and badge awards -> loyalty_ledger; balances and scores -> loyalty_tiers."""
    settings = ctx.settings.loyalty
    lakehouse, ds = ctx.lakehouse, ctx.ds
    earned = earnings(
        read_day(ctx, MISSION_PROGRESS, "progress_ds"), read_day(ctx, BADGE_AWARDS, "awarded_ds"), settings, ds
    )
    # entries whose stamped expiry is the run date, wherever they were recorded: an entry keeps the
    # expiry it was earned with when points_expiry_days changes, and late credits expire on time
    # (expiries filters on expires_ds; its statistics, lakehouse.stats_columns, let Delta skip the
    # other files)
    earlier = lakehouse.read_or_empty(LOYALTY_LEDGER, schema_of(LOYALTY_LEDGER), partitions=[("entry_ds", "<", ds)])
    earned = earned.unionByName(expiries(earlier, ds))
    guard = timedelta(days=LEDGER_GUARD_DAYS)
    nearby = [("entry_ds", ">=", ds - guard), ("entry_ds", "<=", ds + guard)]
    recorded = lakehouse.read_or_empty(LOYALTY_LEDGER, schema_of(LOYALTY_LEDGER), partitions=nearby)
    entries = with_budgets(
        ledger_entries(earned, recorded.select("entry_id", "entry_ds").localCheckpoint(), ds),
        read_day(ctx, SUBSCRIBER_SEGMENTS, "segment_date"),
        settings.budgets,
    )
    written = lakehouse.write(entries, LOYALTY_LEDGER, partition_by=["entry_ds"], replace_where={"entry_ds": ds})
    capped = read_day(ctx, LOYALTY_LEDGER, "entry_ds").filter(F.col("status") == CAPPED).count()

    previous = latest_before(ctx, LOYALTY_TIERS, "tier_ds")
    if previous is None:
        moved = lakehouse.read(LOYALTY_LEDGER, partitions=[("entry_ds", "<=", ds)])
        before = None
    else:
        moved = lakehouse.read(LOYALTY_LEDGER, partitions=[("entry_ds", ">", previous), ("entry_ds", "<=", ds)])
        before = read_day(ctx, LOYALTY_TIERS, "tier_ds", previous)
    scores_today = lakehouse.read(BEHAVIOR_SCORES, partitions=[("score_date", "=", ds)]).select(
        "subscriber_id", *ctx.settings.scoring.scores
    )
    subjects = with_holdout(scores_today, ctx.settings.missions)
    tier_rows = tiers(subjects, balances(before, moved), before, settings, ds)
    result = lakehouse.write(tier_rows, LOYALTY_TIERS, partition_by=["tier_ds"], replace_where={"tier_ds": ds})
    return {"ledger_entries": written.rows_added, "capped_entries": capped, "subscribers_tiered": result.rows_added}
