"""Lakehouse reads that several stages share: one day's partition of a table, the newest
earlier day a run folds from, the scoring base (profile with its earlier plan), the subscribers
scored on the run date with everything rules may use, and the missions completed by a day."""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.context import PipelineError, RunContext
from jobs.missions import with_holdout
from jobs.profiles import profile_as_of
from jobs.scoring import PLAN_CHANGE_DAYS
from jobs.tables import (
    BEHAVIOR_FEATURES,
    BEHAVIOR_SCORES,
    MISSION_PROGRESS,
    PROFILE_NAMES,
    SUBSCRIBER_SEGMENTS,
    schema_of,
)

__all__ = ["completed_by", "latest_before", "read_day", "scored_subjects", "scoring_base"]


def read_day(ctx: RunContext, table: str, column: str, day: date | None = None) -> DataFrame:
    """One day's partition of a table, or an empty frame of its schema when the table is new."""
    return ctx.lakehouse.read_or_empty(table, schema_of(table), partitions=[(column, "=", day or ctx.ds)])


def latest_before(ctx: RunContext, table: str, column: str) -> date | None:
    """The newest partition date of `table` before the run date (the state a run folds from)."""
    earlier = [d for d in ctx.lakehouse.partition_values(table, column) if d < ctx.ds.isoformat()]
    return date.fromisoformat(max(earlier)) if earlier else None


def completed_by(ctx: RunContext, day: date) -> DataFrame:
    """Assignments whose mission was completed by `day` (from that day's mission_progress)."""
    progress = ctx.lakehouse.read_or_empty(
        MISSION_PROGRESS, schema_of(MISSION_PROGRESS), partitions=[("progress_ds", "=", day)]
    )
    return progress.filter(F.col("status") == "completed").select("assignment_id", F.lit(True).alias("completed"))


def scoring_base(ctx: RunContext) -> DataFrame:
    """Known subscribers with their profile and the plan they had PLAN_CHANGE_DAYS earlier."""
    lookback = ctx.settings.ingest.subscriber_lookback_days
    profile = profile_as_of(ctx.lakehouse, ctx.ds, lookback)
    if profile is None:
        raise PipelineError(f"no subscriber_profile snapshot within {lookback} days before {ctx.ds}: run ingest first")
    base = profile.drop("snapshot_date")
    earlier = profile_as_of(ctx.lakehouse, ctx.ds - timedelta(days=PLAN_CHANGE_DAYS), lookback)
    if earlier is None:
        return base.withColumn("plan_code_90d_ago", F.lit(None).cast("string"))
    return base.join(
        earlier.select("subscriber_id", F.col("plan_code").alias("plan_code_90d_ago")), "subscriber_id", "left"
    )


def scored_subjects(ctx: RunContext) -> DataFrame:
    """One row per subscriber scored on the run date: scores, ML columns, segment, features,
    profile and the holdout flag."""
    cfg = ctx.settings.scoring
    lakehouse, ds = ctx.lakehouse, ctx.ds
    day = [("score_date", "=", ds)]
    scored = lakehouse.read(BEHAVIOR_SCORES, partitions=day).select(
        "subscriber_id", *cfg.scores, "churn_probability", "nbo_offer_id", "nbo_score"
    )
    segment = lakehouse.read(SUBSCRIBER_SEGMENTS, partitions=[("segment_date", "=", ds)]).select(
        "subscriber_id", "segment"
    )
    features = lakehouse.read(BEHAVIOR_FEATURES, partitions=day).select(
        "subscriber_id", *[F.col("features").getItem(n).alias(n) for n in cfg.feature_names if n not in scored.columns]
    )
    profile = scoring_base(ctx).select("subscriber_id", *PROFILE_NAMES)
    subjects = (
        scored.join(segment, "subscriber_id", "left")
        .join(features, "subscriber_id", "left")
        .join(profile, "subscriber_id", "left")
    )
    return with_holdout(subjects, ctx.settings.missions)
