"""Loyalty points and tiers.

`loyalty_ledger` has one entry per points movement: points earned for a completed mission or an
awarded badge, and (optionally) their expiry. Entry ids are hashes of what earned them, so a
rerun rewrites the same entries and never credits twice; a balance is the sum of a subscriber's
entries. `loyalty_tiers` gives each scored subscriber a tier per day from configured rules over
the balance and scores: an upgrade applies at once, a downgrade only after the subscriber has
stayed below their tier for the grace period.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs import expressions
from jobs.config import ConfigError, load_yaml

ENTRY_COLUMNS = ("entry_id", "subscriber_id", "entry_type", "source_id", "points", "description", "expires_ds")
BALANCE_NAMES = ("points_balance", "lifetime_points")


@dataclass(frozen=True)
class LoyaltySettings:
    tiers: tuple[tuple[str, str], ...]  # (name, rule), lowest first
    downgrade_grace_days: int
    points_expiry_days: int | None
    version: str = "1"
    file: str = "conf/loyalty.yaml"

    @classmethod
    def load(cls, path: str | Path, names: Sequence[str]) -> LoyaltySettings:
        path = Path(path)
        data = load_yaml(path) or {}
        tiers = []
        for i, spec in enumerate(data.get("tiers") or []):
            if not isinstance(spec, dict) or "name" not in spec or "rule" not in spec:
                raise ConfigError(path, f"tiers[{i}]", "needs a name and a rule")
            try:
                allowed = [*names, *BALANCE_NAMES]
                expressions.validate(
                    str(spec["rule"]),
                    allowed,
                    source=f"{path}#tiers[{i}].rule",
                    types=expressions.subject_types(allowed),
                    expect=expressions.BOOLEAN,
                )
            except expressions.ExpressionError as exc:
                raise ConfigError(path, f"tiers[{i}].rule", str(exc)) from exc
            tiers.append((str(spec["name"]), str(spec["rule"])))
        if not tiers:
            raise ConfigError(path, "tiers", "needs at least one tier")
        grace = data.get("downgrade_grace_days", 30)
        expiry = data.get("points_expiry_days")
        if not isinstance(grace, int) or grace < 0:
            raise ConfigError(path, "downgrade_grace_days", "must be a non-negative integer")
        if expiry is not None and (not isinstance(expiry, int) or expiry < 1):
            raise ConfigError(path, "points_expiry_days", "must be a positive integer or null")
        return cls(tuple(tiers), grace, expiry, str(data.get("version", 1)), str(path))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.tiers]


def _entry_id(entry_type: str, source_id: Column) -> Column:
    return F.sha2(F.concat_ws("|", F.lit(entry_type), source_id), 256)


def earnings(completions: DataFrame, awards: DataFrame, settings: LoyaltySettings, ds: date) -> DataFrame:
    """Points earned on `ds`: completed missions (mission_progress rows newly completed on `ds`)
    and badge awards of `ds`. Holdout subscribers earn nothing."""
    expires = F.lit(ds + timedelta(days=settings.points_expiry_days) if settings.points_expiry_days else None)
    missions = completions.filter(F.col("newly_completed") & ~F.col("holdout") & (F.col("reward_points") > 0))
    badges = awards.filter(~F.col("holdout") & (F.col("points") > 0))
    return missions.select(
        _entry_id("mission_completion", F.col("assignment_id")).alias("entry_id"),
        "subscriber_id",
        F.lit("mission_completion").alias("entry_type"),
        F.col("assignment_id").alias("source_id"),
        F.col("reward_points").alias("points"),
        F.concat(F.lit("mission completed: "), F.col("mission_id")).alias("description"),
        expires.cast("date").alias("expires_ds"),
    ).unionByName(
        badges.select(
            _entry_id("badge_award", F.col("award_id")).alias("entry_id"),
            "subscriber_id",
            F.lit("badge_award").alias("entry_type"),
            F.col("award_id").alias("source_id"),
            F.col("points"),
            F.concat(F.lit("badge awarded: "), F.col("badge_id")).alias("description"),
            expires.cast("date").alias("expires_ds"),
        )
    )


def expiries(earned: DataFrame, ds: date) -> DataFrame:
    """Entries taking back points whose expiry date is `ds`."""
    due = earned.filter((F.col("expires_ds") == F.lit(ds)) & (F.col("points") > 0))
    return due.select(
        _entry_id("expiry", F.col("entry_id")).alias("entry_id"),
        "subscriber_id",
        F.lit("expiry").alias("entry_type"),
        F.col("entry_id").alias("source_id"),
        (-F.col("points")).alias("points"),
        F.concat(F.lit("points expired: "), F.col("description")).alias("description"),
        F.lit(None).cast("date").alias("expires_ds"),
    )


def ledger_entries(new: DataFrame, recorded_elsewhere: DataFrame, ds: date) -> DataFrame:
    """New entries for `ds`, minus any entry id already recorded on another day."""
    other_days = recorded_elsewhere.filter(F.col("entry_ds") != F.lit(ds)).select("entry_id")
    return (
        new.join(other_days, "entry_id", "left_anti")
        .dropDuplicates(["entry_id"])
        .select(*ENTRY_COLUMNS, F.lit(ds).alias("entry_ds"))
    )


def balances(previous: DataFrame | None, entries: DataFrame) -> DataFrame:
    """Balances carried from an earlier tier snapshot plus the entries made since."""
    moved = entries.groupBy("subscriber_id").agg(
        F.sum("points").cast("long").alias("_moved"),
        F.sum(F.when(F.col("points") > 0, F.col("points"))).cast("long").alias("_earned"),
    )
    if previous is None:
        return moved.select(
            "subscriber_id",
            F.col("_moved").alias("points_balance"),
            F.coalesce(F.col("_earned"), F.lit(0)).cast("long").alias("lifetime_points"),
        )
    carried = previous.select("subscriber_id", "points_balance", "lifetime_points")
    return carried.join(moved, "subscriber_id", "full").select(
        "subscriber_id",
        (F.coalesce("points_balance", F.lit(0)) + F.coalesce("_moved", F.lit(0))).cast("long").alias("points_balance"),
        (F.coalesce("lifetime_points", F.lit(0)) + F.coalesce("_earned", F.lit(0)))
        .cast("long")
        .alias("lifetime_points"),
    )


def tiers(
    subjects: DataFrame, balance: DataFrame, previous: DataFrame | None, settings: LoyaltySettings, ds: date
) -> DataFrame:
    """Scored subjects (subscriber_id, scores, holdout) + balances + yesterday's tiers -> tiers on `ds`."""
    rows = subjects.join(balance, "subscriber_id", "left").withColumns(
        {
            "points_balance": F.coalesce(F.col("points_balance"), F.lit(0)).cast("long"),
            "lifetime_points": F.coalesce(F.col("lifetime_points"), F.lit(0)).cast("long"),
        }
    )
    names = {c: F.col(c) for c in rows.columns}
    qualified = F.lit(1)
    for rank, (_, rule) in enumerate(settings.tiers, 1):
        holds = F.coalesce(expressions.compile_expression(rule, names), F.lit(False))
        qualified = F.when(holds, F.lit(rank)).otherwise(qualified) if rank > 1 else qualified
    if previous is None:
        previous = subjects.sparkSession.createDataFrame(
            [], "subscriber_id string, tier_rank int, tier string, tier_since date, below_since date"
        )
    prev = previous.select(
        "subscriber_id",
        F.col("tier_rank").alias("_prev_rank"),
        F.col("tier").alias("previous_tier"),
        F.col("tier_since").alias("_prev_since"),
        F.col("below_since").alias("_prev_below"),
    )
    joined = rows.withColumn("_qualified", qualified).join(prev, "subscriber_id", "left")
    today = F.lit(ds)
    q, p = F.col("_qualified"), F.col("_prev_rank")
    below_since = F.when(q < p, F.coalesce(F.col("_prev_below"), today))
    grace_over = F.datediff(today, below_since) >= F.lit(settings.downgrade_grace_days)
    rank = F.when(p.isNull() | (q > p) | ((q < p) & grace_over), q).otherwise(p)
    change = F.when(p.isNotNull() & (q > p), "up").when(p.isNotNull() & (q < p) & grace_over, "down")
    return joined.select(
        "subscriber_id",
        "points_balance",
        "lifetime_points",
        _tier_name(rank, settings).alias("tier"),
        rank.cast("int").alias("tier_rank"),
        _tier_name(q, settings).alias("qualified_tier"),
        "previous_tier",
        change.alias("tier_change"),
        F.when(p.isNull() | change.isNotNull(), today).otherwise(F.col("_prev_since")).alias("tier_since"),
        F.when(change.isNull(), below_since).cast("date").alias("below_since"),
        "holdout",
        today.alias("tier_ds"),
    )


def _tier_name(rank: Column, settings: LoyaltySettings) -> Column:
    name = F.lit(settings.tiers[0][0])
    for i, (tier, _) in enumerate(settings.tiers[1:], 2):
        name = F.when(rank == i, F.lit(tier)).otherwise(name)
    return name
