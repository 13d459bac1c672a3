"""Loyalty points and tiers.

`loyalty_ledger` has one entry per points movement: points earned for a completed mission or an
awarded badge, and (optionally) their expiry. Entry ids are hashes of what earned them, so a
rerun rewrites the same entries and never credits twice; a balance is the sum of a subscriber's
entries. `loyalty_tiers` gives each scored subscriber a tier per day from configured rules over
the balance and scores: an upgrade applies at once, a downgrade only after the subscriber has
stayed below their tier for the grace period. A subscriber not scored on a day keeps their
balance and tier there (held, not judged), so no gap in the CRM snapshot loses points.

Budgets (optional, `budgets:` of conf/loyalty.yaml): a daily points budget over everyone and per
segment (the subscriber's segment on the day; the segment budget may also cap offer grants,
see jobs.offers). A day's earnings are granted in a fixed order: the day the reward was earned,
then entry type, then the assignment or award id. An entry that would take a budget past its
limit, and every later one of that budget, is recorded with `status = capped`, its reason and
`requested_points`, and `points = 0`: nothing is dropped, balances stay the sum of `points`.
The segment budget applies first; the daily budget counts only what the segment budgets let
through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from jobs import expressions
from jobs.config import ConfigError, compose_yaml, load_yaml
from jobs.definitions import DefinitionError, Kind, newest_version, node_position, read_definitions, unique, value_node
from jobs.frames import local_frame

ENTRY_COLUMNS = ("entry_id", "subscriber_id", "entry_type", "source_id", "points", "description", "expires_ds")
LEDGER_COLUMNS = (*ENTRY_COLUMNS, "requested_points", "status", "status_reason", "entry_ds")
BALANCE_NAMES = ("points_balance", "lifetime_points")
CREDITED, CAPPED = "credited", "capped"
TIER = Kind(
    "tier",
    "Loyalty tier: listed lowest first; a subscriber qualifies for the highest tier whose rule holds",
    {
        "required": ["rule"],
        "additionalProperties": False,
        "properties": {
            "rule": {
                "type": "string",
                "description": "expression language over points_balance, lifetime_points and the five scores; "
                "the first (base) tier's rule is usually `true`",
            },
            "description": {"type": "string"},
        },
    },
)


@dataclass(frozen=True)
class Budget:
    """Daily limits; None: no limit."""

    daily_points: int | None = None
    daily_offer_grants: int | None = None


@dataclass(frozen=True)
class Budgets:
    daily_points: int | None = None  # points credited per day over every subscriber
    segments: Mapping[str, Budget] = field(default_factory=dict)

    @property
    def segment_points(self) -> dict[str, int]:
        return {n: b.daily_points for n, b in sorted(self.segments.items()) if b.daily_points is not None}

    @property
    def segment_offer_grants(self) -> dict[str, int]:
        return {n: b.daily_offer_grants for n, b in sorted(self.segments.items()) if b.daily_offer_grants is not None}


def _limit(path: Path, key: str, value: object) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ConfigError(path, key, f"must be a non-negative integer or null, got {value!r}")
    return value


def load_budgets(path: Path, spec: object, segment_names: Sequence[str] | None) -> Budgets:
    """The `budgets:` block; segment names are checked against `segment_names` when given."""
    if spec is None:
        return Budgets()
    if not isinstance(spec, Mapping):
        raise ConfigError(path, "budgets", "must be a mapping with daily_points and/or segments")
    unknown = sorted(set(spec) - {"daily_points", "segments"})
    if unknown:
        raise ConfigError(path, f"budgets.{unknown[0]}", "unknown key; known: daily_points, segments")
    segments = {}
    for name, limits in (spec.get("segments") or {}).items():
        key = f"budgets.segments.{name}"
        if segment_names is not None and name not in segment_names:
            raise ConfigError(path, key, f"unknown segment; known: {', '.join(segment_names)}")
        if not isinstance(limits, Mapping) or set(limits) - {"daily_points", "daily_offer_grants"}:
            raise ConfigError(path, key, "must be a mapping with daily_points and/or daily_offer_grants")
        segments[str(name)] = Budget(
            _limit(path, f"{key}.daily_points", limits.get("daily_points")),
            _limit(path, f"{key}.daily_offer_grants", limits.get("daily_offer_grants")),
        )
    return Budgets(_limit(path, "budgets.daily_points", spec.get("daily_points")), segments)


def segment_names(conf_dir: Path) -> list[str] | None:
    """The segments of conf/segments.yaml beside this file (rules and default), or None without it."""
    from jobs.segments import SEGMENT

    path = conf_dir / "segments.yaml"
    if not path.exists():
        return None
    return sorted({d.id for d in read_definitions(path, [SEGMENT], [], key="segments")})  # problems: SegmentRules


@dataclass(frozen=True)
class LoyaltySettings:
    tiers: tuple[tuple[str, str], ...]  # (name, rule), lowest first
    downgrade_grace_days: int
    points_expiry_days: int | None
    version: str = "1"
    file: str = "conf/loyalty.yaml"
    budgets: Budgets = field(default_factory=Budgets)

    @classmethod
    def load(cls, path: str | Path, names: Sequence[str]) -> LoyaltySettings:
        """Tiers and points settings of `path`; raise DefinitionError listing every problem."""
        path = Path(path)
        problems: list[str] = []
        definitions = unique(read_definitions(path, [TIER], problems, key="tiers"), problems)
        allowed = [*names, *BALANCE_NAMES]
        tiers = []
        for definition in definitions:
            rule = str(definition.spec["rule"])
            line, column = definition.position("rule")
            try:
                expressions.validate(
                    rule,
                    allowed,
                    source=definition.file,
                    line=line,
                    column=column,
                    types=expressions.subject_types(allowed),
                    expect=expressions.BOOLEAN,
                )
            except expressions.ExpressionError as exc:
                problems.append(str(exc))
            tiers.append((definition.id, rule))
        if not tiers and not problems:
            problems.append(f"{path}:1:1: tiers: needs at least one tier")
        if not path.exists():
            raise DefinitionError(problems)
        data, root = load_yaml(path) or {}, compose_yaml(path.read_text(encoding="utf-8"))

        def problem(key: str, message: str) -> None:
            keys = key.split(".")
            node = next((n for i in range(len(keys), 0, -1) if (n := value_node(root, keys[:i])) is not None), None)
            line, column = node_position(node) if node is not None else (1, 1)
            problems.append(f"{path}:{line}:{column}: {key}: {message}")

        grace = data.get("downgrade_grace_days", 30)
        expiry = data.get("points_expiry_days")
        if not isinstance(grace, int) or grace < 0:
            problem("downgrade_grace_days", "must be a non-negative integer")
        if expiry is not None and (not isinstance(expiry, int) or expiry < 1):
            problem("points_expiry_days", "must be a positive integer or null")
        budgets = Budgets()
        try:
            budgets = load_budgets(path, data.get("budgets"), segment_names(path.parent))
        except ConfigError as exc:
            problem(exc.key, exc.message)
        if problems:
            raise DefinitionError(problems)
        return cls(tuple(tiers), grace, expiry, str(newest_version(definitions)), str(path), budgets)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.tiers]


def _entry_id(entry_type: str, source_id: Column) -> Column:
    return F.sha2(F.concat_ws("|", F.lit(entry_type), source_id), 256)


def earnings(completions: DataFrame, awards: DataFrame, settings: LoyaltySettings, ds: date) -> DataFrame:
    """Points earned by `ds`: completed missions (the run date's mission_progress rows of completed
    assignments) and badge awards of `ds`. Holdout subscribers earn nothing. A completion appears
    on every day of its period after it: `ledger_entries` drops the entries recorded on another
    day, so each is credited once, on the first run that sees it, even when a rerun of an earlier
    day moved the completion to a day that had already run."""
    days = settings.points_expiry_days

    def expires(earned: Column) -> Column:  # counted from the day the points were earned
        return F.date_add(earned, days) if days else F.lit(None).cast("date")

    completed = F.col("completed_ds").isNotNull() & (F.col("completed_ds") <= F.lit(ds))
    missions = completions.filter(completed & ~F.col("holdout") & (F.col("reward_points") > 0))
    badges = awards.filter(~F.col("holdout") & (F.col("points") > 0))
    return missions.select(
        _entry_id("mission_completion", F.col("assignment_id")).alias("entry_id"),
        "subscriber_id",
        F.lit("mission_completion").alias("entry_type"),
        F.col("assignment_id").alias("source_id"),
        F.col("reward_points").alias("points"),
        F.concat(F.lit("mission completed: "), F.col("mission_id")).alias("description"),
        expires(F.col("completed_ds")).alias("expires_ds"),
        F.col("completed_ds").alias("earned_ds"),
    ).unionByName(
        badges.select(
            _entry_id("badge_award", F.col("award_id")).alias("entry_id"),
            "subscriber_id",
            F.lit("badge_award").alias("entry_type"),
            F.col("award_id").alias("source_id"),
            F.col("points"),
            F.concat(F.lit("badge awarded: "), F.col("badge_id")).alias("description"),
            expires(F.col("awarded_ds")).alias("expires_ds"),
            F.col("awarded_ds").alias("earned_ds"),
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
        F.lit(ds).alias("earned_ds"),
    )


def ledger_entries(new: DataFrame, recorded_elsewhere: DataFrame, ds: date) -> DataFrame:
    """New entries for `ds`, minus any entry id already recorded on another day."""
    other_days = recorded_elsewhere.filter(F.col("entry_ds") != F.lit(ds)).select("entry_id")
    return (
        new.join(other_days, "entry_id", "left_anti")
        .dropDuplicates(["entry_id"])
        .select(*new.columns, F.lit(ds).alias("entry_ds"))
    )


def with_budgets(entries: DataFrame, segments: DataFrame, budgets: Budgets) -> DataFrame:
    """A day's entries (ENTRY_COLUMNS, earned_ds, entry_ds) + the subscribers' segment of the day
    (subscriber_id, segment) -> loyalty_ledger rows (LEDGER_COLUMNS): each earning credited or
    capped under the budgets, in the order earned_ds, entry_type, source_id (module docstring)."""
    earning = F.col("points") > 0
    order = (F.col("earned_ds"), F.col("entry_type"), F.col("source_id"))
    so_far = (Window.unboundedPreceding, Window.currentRow)
    rows = entries.join(segments.select("subscriber_id", "segment"), "subscriber_id", "left")
    per_segment = budgets.segment_points
    segment_limit = (
        F.element_at(F.create_map(*[F.lit(v) for pair in per_segment.items() for v in pair]), F.col("segment"))
        if per_segment
        else F.lit(None).cast("int")
    )
    in_segment = F.sum(F.when(earning, F.col("points")).otherwise(0)).over(
        Window.partitionBy("segment").orderBy(*order).rowsBetween(*so_far)
    )
    rows = rows.withColumns(
        {
            "_segment_limit": segment_limit,
            "_segment_ok": ~earning | segment_limit.isNull() | (in_segment <= segment_limit),
        }
    )
    day_ok = F.lit(True)
    if budgets.daily_points is not None:
        in_day = F.sum(F.when(earning & F.col("_segment_ok"), F.col("points")).otherwise(0)).over(
            Window.orderBy(*order).rowsBetween(*so_far)
        )  # one day's earnings: one window over them all
        day_ok = ~earning | ~F.col("_segment_ok") | (in_day <= F.lit(budgets.daily_points))
    rows = rows.withColumn("_day_ok", day_ok)
    credited = F.col("_segment_ok") & F.col("_day_ok")
    reason = F.when(
        ~F.col("_segment_ok"),
        F.concat(
            F.lit("segment "), F.col("segment"), F.lit(" daily_points budget of "), F.col("_segment_limit").cast("string"),
            F.lit(" reached"),
        ),
    ).when(~F.col("_day_ok"), F.lit(f"daily_points budget of {budgets.daily_points} reached"))  # fmt: skip
    return rows.select(
        *[c for c in ENTRY_COLUMNS if c != "points"],
        F.when(credited, F.col("points")).otherwise(F.lit(0)).cast("int").alias("points"),
        F.col("points").cast("int").alias("requested_points"),
        F.when(credited, F.lit(CREDITED)).otherwise(F.lit(CAPPED)).alias("status"),
        reason.alias("status_reason"),
        "entry_ds",
    ).select(*LEDGER_COLUMNS)


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
    """Scored subjects (subscriber_id, scores, holdout) + balances + the previous tiering day's rows
    -> tiers on `ds`. A subscriber not scored on `ds` (absent from the day's CRM snapshot, say)
    keeps a row while there is something to carry (points ever earned, a tier above the first):
    the balance moves with the ledger, the tier and its grace clock are held as they were, and
    `qualified_tier` is null (no rule judged). So a balance is always the sum of the ledger, and a
    subscriber back after a gap finds their points and tier."""
    scored = subjects.withColumn("_scored", F.lit(True))
    rows = scored.join(balance, "subscriber_id", "full").withColumns(
        {
            "_scored": F.coalesce(F.col("_scored"), F.lit(False)),
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
        previous = local_frame(
            subjects.sparkSession,
            [],
            "subscriber_id string, tier_rank int, tier string, tier_since date, below_since date, holdout boolean",
        )
    prev = previous.select(
        "subscriber_id",
        F.col("tier_rank").alias("_prev_rank"),
        F.col("tier").alias("previous_tier"),
        F.col("tier_since").alias("_prev_since"),
        F.col("below_since").alias("_prev_below"),
        (F.col("holdout") if "holdout" in previous.columns else F.lit(None).cast("boolean")).alias("_prev_holdout"),
    )
    joined = rows.withColumn("_qualified", qualified).join(prev, "subscriber_id", "left")
    today = F.lit(ds)
    judged = F.col("_scored")
    q, p = F.col("_qualified"), F.col("_prev_rank")
    below_since = F.when(q < p, F.coalesce(F.col("_prev_below"), today))
    grace_over = F.datediff(today, below_since) >= F.lit(settings.downgrade_grace_days)
    rank = F.when(~judged, F.coalesce(p, F.lit(1))).when(p.isNull() | (q > p) | ((q < p) & grace_over), q).otherwise(p)
    change = F.when(judged & p.isNotNull() & (q > p), "up").when(judged & p.isNotNull() & (q < p) & grace_over, "down")
    carried = (F.col("lifetime_points") > 0) | (F.col("points_balance") != 0) | (F.coalesce(p, F.lit(1)) > 1)
    return joined.filter(judged | carried).select(
        "subscriber_id",
        "points_balance",
        "lifetime_points",
        _tier_name(rank, settings).alias("tier"),
        rank.cast("int").alias("tier_rank"),
        F.when(judged, _tier_name(q, settings)).alias("qualified_tier"),
        "previous_tier",
        change.alias("tier_change"),
        F.when(p.isNull() | change.isNotNull(), today).otherwise(F.col("_prev_since")).alias("tier_since"),
        F.when(~judged, F.col("_prev_below")).when(change.isNull(), below_since).cast("date").alias("below_since"),
        F.coalesce(F.col("holdout"), F.col("_prev_holdout"), F.lit(False)).alias("holdout"),
        today.alias("tier_ds"),
    )


def _tier_name(rank: Column, settings: LoyaltySettings) -> Column:
    name = F.lit(settings.tiers[0][0])
    for i, (tier, _) in enumerate(settings.tiers[1:], 2):
        name = F.when(rank == i, F.lit(tier)).otherwise(name)
    return name
