"""subscriber_state: what an app or an agent desktop shows for a subscriber, one row per
subscriber per day (every subscriber scored on the day).

A row holds the day's five scores and segment, the live missions with progress, target, period
end and their rendered text, missions completed in the last `RECENT_DAYS` days, the badges held
(highest level per badge type), the points balance, the points that expire within
`EXPIRING_DAYS` days, the tier and how many points the next tier needs. Holdout subscribers are
present with `holdout = true` and no rewards (no missions, badges, points or tier).

`state_hash` is a hash of everything shown; `changed` says whether it differs from the
subscriber's previous state row, so consumers can take only the rows that moved.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

RECENT_DAYS = 7
EXPIRING_DAYS = 30
SCORES = ("engagement", "revenue", "loyalty", "risk", "digital")
LIVE = ("assigned", "active")
STATE_FIELDS = (
    "segment",
    *SCORES,
    "holdout",
    "active_missions",
    "recent_completions",
    "badges",
    "points_balance",
    "points_expiring_30d",
    "tier",
    "next_tier",
    "points_to_next_tier",
)


def tier_ladder(tiers: Sequence[tuple[str, str]]) -> list[tuple[int, str, int | None]]:
    """(rank, name, points threshold) per tier, lowest first; the threshold is the
    `points_balance >= N` condition of the tier's rule, or None when the rule has none."""
    ladder = []
    for rank, (name, rule) in enumerate(tiers):
        match = re.search(r"\bpoints_balance\s*>=\s*(\d+)", rule)
        ladder.append((rank, name, int(match.group(1)) if match else None))
    return ladder


def active_missions(progress: DataFrame, assignments: DataFrame) -> DataFrame:
    """The day's mission_progress rows still live + their assignment -> one array per subscriber,
    ordered by period end then assignment id."""
    live = progress.filter(F.col("status").isin(*LIVE)).join(
        assignments.select("assignment_id", "description", "level", "offer_id"), "assignment_id", "left"
    )
    mission = F.struct(
        F.col("period_end"),
        F.col("assignment_id"),
        F.col("mission_id"),
        F.col("template_id"),
        F.col("category"),
        F.col("level"),
        F.col("description").alias("text"),
        F.col("progress_value"),
        F.col("target_value"),
        F.col("progress_pct"),
        F.col("status"),
        F.col("reward_points"),
        F.col("offer_id"),
    )
    return live.groupBy("subscriber_id").agg(F.array_sort(F.collect_list(mission)).alias("active_missions"))


def recent_completions(progress_window: DataFrame, assignments: DataFrame) -> DataFrame:
    """mission_progress rows newly completed in the window -> one array per subscriber, newest first."""
    done = progress_window.filter(F.col("newly_completed")).join(
        assignments.select("assignment_id", "description", "offer_id"), "assignment_id", "left"
    )
    item = F.struct(
        F.col("completed_ds"),
        F.col("assignment_id"),
        F.col("template_id"),
        F.col("category"),
        F.col("description").alias("text"),
        F.col("reward_points"),
        F.col("offer_id"),
    )
    return done.groupBy("subscriber_id").agg(F.reverse(F.array_sort(F.collect_list(item))).alias("recent_completions"))


def badges_held(awards: DataFrame) -> DataFrame:
    """Every badge award so far -> the highest level per badge type, ordered by badge type."""
    best = (
        awards.filter(~F.col("holdout"))
        .groupBy("subscriber_id", "badge_type")
        .agg(F.max_by(F.struct("level", "level_rank", "awarded_ds"), "level_rank").alias("best"))
    )
    badge = F.struct(
        F.col("badge_type"),
        F.col("best.level").alias("level"),
        F.col("best.level_rank").alias("level_rank"),
        F.col("best.awarded_ds").alias("awarded_ds"),
    )
    return best.groupBy("subscriber_id").agg(F.array_sort(F.collect_list(badge)).alias("badges"))


def expiring_points(ledger: DataFrame, ds: date, days: int = EXPIRING_DAYS) -> DataFrame:
    """Ledger entries earned so far whose points expire in (ds, ds + days] -> points per subscriber."""
    window = F.col("expires_ds").between(F.lit(ds + timedelta(days=1)), F.lit(ds + timedelta(days=days)))
    return (
        ledger.filter((F.col("points") > 0) & window & (F.col("entry_ds") <= F.lit(ds)))
        .groupBy("subscriber_id")
        .agg(F.sum("points").cast("long").alias("points_expiring_30d"))
    )


def with_next_tier(tiers_today: DataFrame, ladder: Sequence[tuple[int, str, int | None]]) -> DataFrame:
    """loyalty_tiers rows -> subscriber_id, points_balance, tier, next_tier, points_to_next_tier."""
    next_name = F.lit(None).cast("string")
    next_points = F.lit(None).cast("long")
    for rank, name, threshold in ladder[1:]:
        is_next = F.col("tier_rank") == F.lit(rank - 1)
        next_name = F.when(is_next, F.lit(name)).otherwise(next_name)
        if threshold is not None:
            needed = F.greatest(F.lit(0), F.lit(threshold) - F.col("points_balance")).cast("long")
            next_points = F.when(is_next, needed).otherwise(next_points)
    return tiers_today.select(
        "subscriber_id",
        F.col("points_balance").cast("long").alias("points_balance"),
        "tier",
        next_name.alias("next_tier"),
        next_points.alias("points_to_next_tier"),
    )


def subscriber_state(
    subjects: DataFrame,
    missions: DataFrame,
    completions: DataFrame,
    badges: DataFrame,
    expiring: DataFrame,
    tiers: DataFrame,
    previous: DataFrame | None,
    ds: date,
) -> DataFrame:
    """Per-subscriber parts -> subscriber_state rows for `ds`.

    `subjects`: subscriber_id, segment, the five scores, holdout (one row per scored subscriber);
    the other frames come from the functions above; `previous`: subscriber_id, state_hash of the
    previous state day (None on the first day).
    """
    joined = (
        subjects.join(missions, "subscriber_id", "left")
        .join(completions, "subscriber_id", "left")
        .join(badges, "subscriber_id", "left")
        .join(expiring, "subscriber_id", "left")
        .join(tiers, "subscriber_id", "left")
    )
    rewarded = ~F.col("holdout")
    shown = joined.select(
        "subscriber_id",
        "segment",
        *[F.round(F.col(s), 2).alias(s) for s in SCORES],
        "holdout",
        *[_array_or_empty(joined, c).alias(c) for c in ("active_missions", "recent_completions", "badges")],
        *[
            F.when(rewarded, F.coalesce(F.col(c), F.lit(0).cast("long"))).alias(c)
            for c in ("points_balance", "points_expiring_30d")
        ],
        *[F.when(rewarded, F.col(c)).alias(c) for c in ("tier", "next_tier", "points_to_next_tier")],
    )
    hashed = shown.withColumn("state_hash", F.sha2(F.to_json(F.struct(*STATE_FIELDS)), 256))
    if previous is None:
        changed = hashed.withColumn("changed", F.lit(True))
    else:
        before = previous.select("subscriber_id", F.col("state_hash").alias("_previous_hash"))
        changed = hashed.join(before, "subscriber_id", "left").withColumn(
            "changed", F.coalesce(F.col("_previous_hash") != F.col("state_hash"), F.lit(True))
        )
    return changed.select(*hashed.columns, "changed", F.lit(ds).alias("state_ds"))


def _array_or_empty(df: DataFrame, column: str) -> Column:
    """The array column for rewarded subscribers; an empty array of its type for the holdout or none."""
    empty = F.from_json(F.lit("[]"), df.schema[column].dataType)
    return F.when(~F.col("holdout") & F.col(column).isNotNull(), F.col(column)).otherwise(empty)
