"""The subscriber_state stage: scores, segments, live missions, completions, badges, ledger
and tiers -> subscriber_state, recomputing only the subscribers whose state can have changed
since the previous state day (jobs.subscriber_state: the incremental rule), or everyone when
most rows changed on the previous state day."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.context import RunContext
from jobs.frames import with_nullable_nesting
from jobs.missions import with_holdout
from jobs.stages.readers import latest_before, read_day
from jobs.subscriber_state import (
    RECENT_DAYS,
    active_missions,
    badges_held,
    carried_forward,
    changed_share,
    changed_subscribers,
    expiring_points,
    recent_completions,
    shown_profile,
    subscriber_state,
    tier_ladder,
    with_next_tier,
)
from jobs.tables import (
    BADGE_AWARDS,
    BEHAVIOR_SCORES,
    LOYALTY_LEDGER,
    LOYALTY_TIERS,
    MISSION_ASSIGNMENTS,
    MISSION_PROGRESS,
    SUBSCRIBER_SEGMENTS,
    SUBSCRIBER_STATE,
    schema_of,
)

__all__ = ["NEVER_EXPIRING_DAYS", "run"]

log = logging.getLogger(__name__)

# Without points_expiry_days points never expire: every ledger day (a century back) is read.
NEVER_EXPIRING_DAYS = 36500


def run(ctx: RunContext) -> dict[str, Any]:
    """Scores, segments, live missions, completions, badges, ledger and tiers -> subscriber_state,
    recomputing only the subscribers whose state can have changed since the previous state day
    (jobs.subscriber_state: the incremental rule); the others carry their previous row. Everyone
    is recomputed when more than `subscriber_state.max_changed_share` of the previous state day's
    rows changed: finding the changed subscribers would then cost more than it spares."""
    lakehouse, ds = ctx.lakehouse, ctx.ds
    settings = ctx.settings.missions
    loyalty_conf = ctx.settings.loyalty
    cfg = ctx.settings.scoring
    subjects = with_holdout(
        lakehouse.read(BEHAVIOR_SCORES, partitions=[("score_date", "=", ds)])
        .select("subscriber_id", *cfg.scores)
        .join(
            read_day(ctx, SUBSCRIBER_SEGMENTS, "segment_date").select("subscriber_id", "segment"),
            "subscriber_id",
            "left",
        ),
        settings,
    )
    tier_rows = with_next_tier(read_day(ctx, LOYALTY_TIERS, "tier_ds"), tier_ladder(loyalty_conf.tiers))
    previous_day = latest_before(ctx, SUBSCRIBER_STATE, "state_ds")
    previous = None if previous_day is None else read_day(ctx, SUBSCRIBER_STATE, "state_ds", previous_day)
    share = None if previous is None or ctx.settings.state_full_refresh else changed_share(previous)
    full = share is None or share > ctx.settings.state_max_changed_share
    since = ds if full else previous_day  # progress rows read from (since - RECENT_DAYS, ds]
    longest = settings.progress_days + RECENT_DAYS
    assignments = lakehouse.read_or_empty(
        MISSION_ASSIGNMENTS,
        schema_of(MISSION_ASSIGNMENTS),
        partitions=[("assigned_ds", ">=", ds - timedelta(days=longest)), ("assigned_ds", "<=", ds)],
    )
    progress_rows = lakehouse.read_or_empty(
        MISSION_PROGRESS,
        schema_of(MISSION_PROGRESS),
        partitions=[("progress_ds", ">", since - timedelta(days=RECENT_DAYS)), ("progress_ds", "<=", ds)],
    )
    awards = lakehouse.read_or_empty(BADGE_AWARDS, schema_of(BADGE_AWARDS), partitions=[("awarded_ds", "<=", ds)])
    earliest = ds - timedelta(days=loyalty_conf.points_expiry_days or NEVER_EXPIRING_DAYS)
    ledger = lakehouse.read_or_empty(
        LOYALTY_LEDGER, schema_of(LOYALTY_LEDGER), partitions=[("entry_ds", ">=", earliest), ("entry_ds", "<=", ds)]
    )
    keys, carried, reasons = None, None, {}
    if not full:
        profile = shown_profile(subjects, tier_rows)
        why = changed_subscribers(
            profile,
            previous,
            progress_rows.filter(F.col("progress_ds") == F.lit(ds)),
            progress_rows.filter(F.col("progress_ds") == F.lit(previous_day)),
            read_day(ctx, MISSION_ASSIGNMENTS, "assigned_ds"),
            progress_rows,
            awards,
            ledger,
            ds,
            previous_day,
        ).localCheckpoint()  # used to restrict every input, and counted
        reasons = {r.reason: r.n for r in why.groupBy("reason").agg(F.count("*").alias("n")).collect()}  # <= 6 rows
        keys = why.select("subscriber_id").distinct()
        carried = carried_forward(previous, profile, keys, ds)

    def only_changed(df: DataFrame) -> DataFrame:
        return df if keys is None else df.join(keys, "subscriber_id", "left_semi")

    recent = progress_rows.filter(F.col("progress_ds") > F.lit(ds - timedelta(days=RECENT_DAYS)))
    rows = subscriber_state(
        only_changed(subjects),
        active_missions(only_changed(recent.filter(F.col("progress_ds") == F.lit(ds))), assignments),
        recent_completions(only_changed(recent), assignments),
        badges_held(only_changed(awards)),
        expiring_points(only_changed(ledger), ds),
        only_changed(tier_rows),
        previous,
        ds,
    )
    if carried is not None:
        rows = rows.unionByName(carried)
    if previous is not None:
        rows = rows.localCheckpoint()  # the previous day's rows are read before any write
    result = lakehouse.write(
        with_nullable_nesting(rows), SUBSCRIBER_STATE, partition_by=["state_ds"], replace_where={"state_ds": ds}
    )
    written = read_day(ctx, SUBSCRIBER_STATE, "state_ds")
    changed = written.filter(F.col("changed")).count()
    recomputed = result.rows_added if keys is None else keys.count()
    summary = {
        "mode": "full" if full else "incremental",
        "previous_state_ds": previous_day.isoformat() if previous_day else None,
        "previous_changed_share": None if share is None else round(share, 4),
        "subscribers": result.rows_added,
        "recomputed": recomputed,
        "carried": result.rows_added - recomputed,
        "changed": changed,
        "reasons": dict(sorted(reasons.items())),
    }
    log.info("subscriber_state %s: %s", ds, summary)
    return summary
