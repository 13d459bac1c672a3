"""subscriber_state: what an app or an agent desktop shows for a subscriber.

Grain: one row per subscriber scored on the day (`state_ds`); a subscriber no longer scored has
no row from that day on.

A row holds the day's five scores and segment, the live missions with progress, target, period
end and their rendered text, missions completed in the last `RECENT_DAYS` days, the badges held
(highest level per badge type), the points balance, the points that expire within
`EXPIRING_DAYS` days, the tier and how many points the next tier needs. Holdout subscribers are
present with `holdout = true` and no rewards (no missions, badges, points or tier).

`state_hash` is a hash of everything shown; `changed` says whether it differs from the
subscriber's previous state row, so consumers can take only the rows that moved.

Incremental rule. The table is folded from the previous state day P (the newest `state_ds`
before the run date ds). Only the subscribers `changed_subscribers` finds are recomputed; every
other scored subscriber carries P's row with `state_ds` moved to ds and `changed = false`. A
subscriber is recomputed on ds when (the reasons of `REASONS`):

* `new`: scored on ds without a row on P;
* `profile`: segment, a rounded score, the holdout flag, the points balance, tier, next tier or
  points to it differ from P's row (these are cheap: computed for everyone and compared);
* `missions`: an assignment made on ds, or a live mission_progress row of ds that differs from
  the assignment's live row of P, or a mission live on P and not on ds (completed, expired,
  period over);
* `completions`: a completion recorded in (P, ds], or one leaving the `RECENT_DAYS` window
  (recorded in (P - RECENT_DAYS, ds - RECENT_DAYS]);
* `badges`: a badge award in (P, ds];
* `points`: a loyalty ledger entry in (P, ds], or earned points whose expiry enters the
  `EXPIRING_DAYS` window (expiring in (P + EXPIRING_DAYS, ds + EXPIRING_DAYS]) or leaves it
  (expiring in (P, ds]).

Everything the row shows is a function of those inputs, so the incremental table equals a full
recomputation row for row. Everyone is computed on the first day, when there is no previous
state, on a full refresh (`subscriber_state.full_refresh: true`, for a change of what the row
shows or of how it is computed), and when more than `subscriber_state.max_changed_share` of the
previous state day's rows changed (`changed_share`): where scores move for most subscribers
every day, finding the changed ones costs more than recomputing everyone. The choice depends
on the previous state day only, so a rerun of a date chooses as its first run did. Earlier days
are assumed settled: a rerun of an earlier day of an upstream stage reruns this stage for every
later day, in order (it is stateful).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.tables import SCORES

RECENT_DAYS = 7  # the app shows the missions completed in the last week
EXPIRING_DAYS = 30  # ... and warns of the points expiring within a month
LIVE = ("assigned", "active")
REASONS = ("new", "profile", "missions", "completions", "badges", "points")
PROFILE = ("segment", *SCORES, "holdout", "points_balance", "tier", "next_tier", "points_to_next_tier")
MISSION_FIELDS = (  # what a live mission shows that mission_progress can change from day to day
    "period_end",
    "mission_id",
    "template_id",
    "category",
    "progress_value",
    "target_value",
    "progress_pct",
    "status",
    "reward_points",
)
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
    """loyalty_tiers rows -> subscriber_id, points_balance, tier, next_tier, points_to_next_tier.
    `tier_rank` counts from 1 (the base tier), so the tier above the one held has ladder rank
    `tier_rank`."""
    next_name = F.lit(None).cast("string")
    next_points = F.lit(None).cast("long")
    for rank, name, threshold in ladder[1:]:
        is_next = F.col("tier_rank") == F.lit(rank)
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


def shown_profile(subjects: DataFrame, tiers: DataFrame) -> DataFrame:
    """Scored subjects + `with_next_tier` rows -> the row's scalar part as shown: segment, rounded
    scores, holdout, points balance and tier fields (null for the holdout)."""
    joined = subjects.join(tiers, "subscriber_id", "left")
    rewarded = ~F.col("holdout")
    return joined.select(
        "subscriber_id",
        "segment",
        *[F.round(F.col(s), 2).alias(s) for s in SCORES],
        "holdout",
        F.when(rewarded, F.coalesce(F.col("points_balance"), F.lit(0).cast("long"))).alias("points_balance"),
        *[F.when(rewarded, F.col(c)).alias(c) for c in ("tier", "next_tier", "points_to_next_tier")],
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
    """Per-subscriber parts -> subscriber_state rows for `ds` (one per row of `subjects`).

    `subjects`: subscriber_id, segment, the five scores, holdout (one row per scored subscriber);
    the other frames come from the functions above; `previous`: subscriber_id, state_hash of the
    previous state day (None on the first day).
    """
    joined = (
        shown_profile(subjects, tiers)
        .join(missions, "subscriber_id", "left")
        .join(completions, "subscriber_id", "left")
        .join(badges, "subscriber_id", "left")
        .join(expiring, "subscriber_id", "left")
    )
    rewarded = ~F.col("holdout")
    shown = joined.select(
        "subscriber_id",
        "segment",
        *SCORES,
        "holdout",
        *[_array_or_empty(joined, c).alias(c) for c in ("active_missions", "recent_completions", "badges")],
        "points_balance",
        F.when(rewarded, F.coalesce(F.col("points_expiring_30d"), F.lit(0).cast("long"))).alias("points_expiring_30d"),
        "tier",
        "next_tier",
        "points_to_next_tier",
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


def _live(progress: DataFrame, side: str) -> DataFrame:
    return progress.filter(F.col("status").isin(*LIVE)).select(
        "assignment_id",
        F.col("subscriber_id").alias(f"_{side}_subscriber"),
        F.struct(*MISSION_FIELDS).alias(f"_{side}_shown"),
    )


def changed_subscribers(
    profile: DataFrame,
    previous: DataFrame,
    progress_today: DataFrame,
    progress_before: DataFrame,
    assigned_today: DataFrame,
    progress_window: DataFrame,
    awards: DataFrame,
    ledger: DataFrame,
    ds: date,
    previous_day: date,
) -> DataFrame:
    """Who must be recomputed on `ds` when folding from the state of `previous_day` (see the
    module docstring): subscriber_id, reason; one row per subscriber scored on `ds` and reason.

    `profile`: `shown_profile` of every subscriber scored on ds; `previous`: the state rows of
    previous_day; `progress_today` / `progress_before`: mission_progress rows of ds / previous_day;
    `assigned_today`: mission_assignments of ds; `progress_window`: mission_progress rows of
    (previous_day - RECENT_DAYS, ds]; `awards`: badge_awards; `ledger`: loyalty_ledger entries."""
    p, recent, soon = previous_day, timedelta(days=RECENT_DAYS), timedelta(days=EXPIRING_DAYS)

    def within(column: str, low: date, high: date) -> Column:  # (low, high]
        return (F.col(column) > F.lit(low)) & (F.col(column) <= F.lit(high))

    before = previous.select("subscriber_id", F.lit(True).alias("_seen"), *[F.col(c).alias(f"_p_{c}") for c in PROFILE])
    same = F.lit(True)
    for c in PROFILE:
        same = same & F.col(c).eqNullSafe(F.col(f"_p_{c}"))
    moved_profile = (
        profile.join(before, "subscriber_id", "left")
        .select("subscriber_id", F.when(F.col("_seen").isNull(), "new").when(~same, "profile").alias("reason"))
        .filter(F.col("reason").isNotNull())
    )
    live = _live(progress_today, "now").join(_live(progress_before, "was"), "assignment_id", "full")
    moved_missions = live.filter(~F.col("_now_shown").eqNullSafe(F.col("_was_shown"))).select(
        F.coalesce("_now_subscriber", "_was_subscriber").alias("subscriber_id"), F.lit("missions").alias("reason")
    )
    assigned = assigned_today.select("subscriber_id", F.lit("missions").alias("reason"))
    completed = progress_window.filter(
        F.col("newly_completed") & (within("progress_ds", p, ds) | within("progress_ds", p - recent, ds - recent))
    ).select("subscriber_id", F.lit("completions").alias("reason"))
    awarded = awards.filter(within("awarded_ds", p, ds)).select("subscriber_id", F.lit("badges").alias("reason"))
    earned = (F.col("points") > 0) & (F.col("entry_ds") <= F.lit(ds))
    expiring = earned & (within("expires_ds", p, ds) | within("expires_ds", p + soon, ds + soon))
    points = ledger.filter(within("entry_ds", p, ds) | expiring).select(
        "subscriber_id", F.lit("points").alias("reason")
    )
    reasons = moved_profile
    for part in (moved_missions, assigned, completed, awarded, points):
        reasons = reasons.unionByName(part)
    return reasons.join(profile.select("subscriber_id"), "subscriber_id", "left_semi").dropDuplicates()


def carried_forward(previous: DataFrame, profile: DataFrame, recomputed: DataFrame, ds: date) -> DataFrame:
    """The previous state rows of subscribers scored on `ds` and not recomputed, dated `ds`,
    unchanged."""
    return (
        previous.join(profile.select("subscriber_id"), "subscriber_id", "left_semi")
        .join(recomputed.select("subscriber_id"), "subscriber_id", "left_anti")
        .withColumns({"changed": F.lit(False), "state_ds": F.lit(ds)})
    )


def _array_or_empty(df: DataFrame, column: str) -> Column:
    """The array column for rewarded subscribers; an empty array of its type for the holdout or none."""
    empty = F.from_json(F.lit("[]"), df.schema[column].dataType)
    return F.when(~F.col("holdout") & F.col(column).isNotNull(), F.col(column)).otherwise(empty)


def changed_share(previous: DataFrame) -> float:
    """The share of a state day's rows that changed (0 for an empty day): one aggregate row."""
    counts = previous.agg(F.count(F.lit(1)).alias("rows"), F.count_if(F.col("changed")).alias("changed")).first()
    return counts["changed"] / counts["rows"] if counts["rows"] else 0.0
