"""The campaigns stage: the run date's assignments, completions, awards, tier changes, score
crossings and segment grants -> campaign_triggers; the configured audiences ->
campaign_audiences."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pyspark.sql import functions as F

from jobs.campaigns import audiences, triggers
from jobs.context import RunContext
from jobs.frames import with_nullable_nesting
from jobs.stages.readers import latest_before, read_day, scored_subjects
from jobs.tables import (
    BADGE_AWARDS,
    BEHAVIOR_SCORES,
    CAMPAIGN_AUDIENCES,
    CAMPAIGN_TRIGGERS,
    LOYALTY_TIERS,
    MISSION_ASSIGNMENTS,
    MISSION_PROGRESS,
    SUBSCRIBER_SEGMENTS,
    schema_of,
)

__all__ = ["run"]


def run(ctx: RunContext) -> dict[str, Any]:
    """The run date's assignments, completions, awards, tier changes and score moves ->
    campaign_triggers; configured audiences -> campaign_audiences."""
    cfg = ctx.settings.scoring
    lakehouse, ds = ctx.lakehouse, ctx.ds
    settings = ctx.settings.campaigns
    tier_rows = read_day(ctx, LOYALTY_TIERS, "tier_ds")
    subjects = scored_subjects(ctx).join(
        tier_rows.select("subscriber_id", "tier", "points_balance"), "subscriber_id", "left"
    )
    score_pairs = subjects.select("subscriber_id", "holdout", *cfg.scores)
    previous_day = latest_before(ctx, BEHAVIOR_SCORES, "score_date")
    if previous_day is None:  # first scoring day: nothing to cross from
        score_pairs = score_pairs.limit(0)
    before = lakehouse.read(BEHAVIOR_SCORES, partitions=[("score_date", "=", previous_day or ds)]).select(
        "subscriber_id", *[F.col(s).alias(f"prev_{s}") for s in cfg.scores]
    )
    score_pairs = score_pairs.join(before, "subscriber_id")
    longest = ctx.settings.missions.progress_days  # the assignments the day's progress rows can belong to
    assignment_offers = lakehouse.read_or_empty(
        MISSION_ASSIGNMENTS,
        schema_of(MISSION_ASSIGNMENTS),
        partitions=[("assigned_ds", ">=", ds - timedelta(days=longest)), ("assigned_ds", "<=", ds)],
    ).select("assignment_id", "offer_id")
    rows = triggers(
        read_day(ctx, MISSION_ASSIGNMENTS, "assigned_ds"),
        read_day(ctx, MISSION_PROGRESS, "progress_ds"),
        read_day(ctx, BADGE_AWARDS, "awarded_ds"),
        tier_rows,
        score_pairs,
        settings,
        ds,
        assignment_offers,
        ctx.settings.offers.frame(ctx.spark),
        segments=read_day(ctx, SUBSCRIBER_SEGMENTS, "segment_date"),
        segment_grants=ctx.settings.loyalty.budgets.segment_offer_grants,
    )
    result = lakehouse.write(
        with_nullable_nesting(rows), CAMPAIGN_TRIGGERS, partition_by=["trigger_ds"], replace_where={"trigger_ds": ds}
    )
    members = lakehouse.write(
        audiences(subjects, settings, ds),
        CAMPAIGN_AUDIENCES,
        partition_by=["audience_ds"],
        replace_where={"audience_ds": ds},
    )
    return {"triggers": result.rows_added, "audience_members": members.rows_added}
