"""Mission assignment: templates x eligible subscribers -> mission_assignments.

For each run date every subscriber's missions are chosen in one pass over one row per
subscriber: each value a template's candidate uses several times (period, usual level, level,
target, points) is computed once in a projection; the templates the subscriber is offered and
that are not active or cooling down are numbered in priority order, the first ones up to the
per-subscriber cap are kept, and only those missions are built, one row each. Catalog missions
take absolute targets; personalised ones (`is_dynamic`) take a target from the subscriber's own
baseline. A deterministic hash puts a configured share of subscribers in a universal holdout:
their missions are recorded with `holdout = true` and never delivered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs import expressions
from jobs.config import ConfigError, load_yaml
from jobs.frames import ColumnMemo, local_frame
from jobs.metrics import DAY_BITS, day_mask, with_longest_runs
from jobs.tables import MISSION_ASSIGNMENTS, MISSION_CATALOG, PROFILE_NAMES, schema_of
from jobs.templates import DEFAULT_PERIOD_DAYS, LEVELS, MissionMetric, MissionTemplate

BASELINE_PREFIX = "_baseline_"
# late events of a period's last days still count this many days after it ends (CDRs of the
# evening commonly reach the next day's extract)
DEFAULT_SETTLE_DAYS = 2


@dataclass(frozen=True)
class MissionSettings:
    templates_dir: str
    badges_dir: str
    max_active: int
    baseline_days: int
    period_days: Mapping[str, int]
    holdout_share: float
    holdout_salt: str
    dynamic_levels: tuple[tuple[str, str], ...]  # (level, rule)
    settle_days: int = DEFAULT_SETTLE_DAYS  # days after a period's end its late events still count
    file: str = "conf/missions.yaml"

    @classmethod
    def load(cls, path: str | Path) -> MissionSettings:
        path = Path(path)
        data = load_yaml(path) or {}
        holdout = data.get("holdout") or {}
        share = holdout.get("share", 0.0)
        if not isinstance(share, int | float) or not 0 <= share < 1:
            raise ConfigError(path, "holdout.share", "must be a fraction in [0, 1)")
        levels = tuple((r["level"], str(r["rule"])) for r in data.get("dynamic_levels") or [])
        for i, (level, _) in enumerate(levels):
            if level not in LEVELS:
                raise ConfigError(path, f"dynamic_levels[{i}].level", f"must be one of {', '.join(LEVELS)}")
        max_active = data.get("max_active_per_subscriber", 3)
        if not isinstance(max_active, int) or max_active < 1:
            raise ConfigError(path, "max_active_per_subscriber", "must be a positive integer")
        baseline_days = data.get("baseline_days", 28)
        if not isinstance(baseline_days, int) or not 1 <= baseline_days <= DAY_BITS:
            raise ConfigError(path, "baseline_days", f"must be a whole number of days from 1 to {DAY_BITS}")
        period_days = data.get("period_days") or {}
        if not isinstance(period_days, Mapping) or not all(
            p in DEFAULT_PERIOD_DAYS and isinstance(n, int) and n >= 1 for p, n in period_days.items()
        ):
            raise ConfigError(
                path, "period_days", f"must map periods ({', '.join(DEFAULT_PERIOD_DAYS)}) to whole days >= 1"
            )
        settle_days = data.get("settle_days", DEFAULT_SETTLE_DAYS)
        if not isinstance(settle_days, int) or isinstance(settle_days, bool) or settle_days < 0:
            raise ConfigError(path, "settle_days", "must be a whole number of days >= 0")
        return cls(
            templates_dir=str(data.get("templates_dir", "templates/missions")),
            badges_dir=str(data.get("badges_dir", "templates/badges")),
            max_active=max_active,
            baseline_days=baseline_days,
            period_days={**DEFAULT_PERIOD_DAYS, **period_days},
            settle_days=settle_days,
            holdout_share=float(share),
            holdout_salt=str(holdout.get("salt", "")),
            dynamic_levels=levels,
            file=str(path),
        )

    @property
    def progress_days(self) -> int:
        """How long after its assignment a mission can still have a progress row: its longest
        period (which may start the day after) and the settling days after it."""
        return max(self.period_days.values()) + 1 + self.settle_days

    def lookback_days(self, templates: Sequence[MissionTemplate]) -> int:
        """How far back an assignment can still matter: it is active until its period ends, then
        its template cools down for `cooldown_days` (see `assign`)."""
        return max(self.period_days.values()) + max((t.cooldown_days for t in templates), default=0)


def with_holdout(df: DataFrame, settings: MissionSettings) -> DataFrame:
    """Deterministic universal control group: hash(subscriber, salt) below the configured share."""
    bucket = F.conv(
        F.substring(F.sha2(F.concat_ws("|", F.col("subscriber_id"), F.lit(settings.holdout_salt)), 256), 1, 8), 16, 10
    )
    return df.withColumn("holdout", bucket.cast("long") < F.lit(int(settings.holdout_share * 16**8)))


def baselines(activity: DataFrame, metrics: Sequence[MissionMetric], ds: date, days: int) -> DataFrame:
    """Each subscriber's usual level of every mission metric over the last `days` days: a daily
    rate for sum/days metrics, the longest streak for streak metrics, the best day for max."""
    if not 1 <= days <= DAY_BITS:
        raise ValueError(f"a baseline covers 1 to {DAY_BITS} days, not {days}")
    offset = F.datediff(F.lit(ds), F.col("activity_date"))
    inside = (offset >= 0) & (offset < days)
    aggregates, streaks = [], {}
    for m in metrics:
        daily, name = F.col(m.daily), f"{BASELINE_PREFIX}{m.name}"
        if m.aggregation == "sum":
            value = F.coalesce(F.sum(F.when(inside, daily)), F.lit(0.0)) / days
        elif m.aggregation == "days":
            value = F.coalesce(F.sum(F.when(inside & (daily > 0), 1.0)), F.lit(0.0)) / days
        elif m.aggregation == "streak":
            streaks[name] = f"_days{name}"
            value = day_mask(inside & (daily > 0), offset)
        else:
            value = F.max(F.when(inside, daily))
        aggregates.append(value.alias(streaks.get(name, name)))
    usual = with_longest_runs(activity.groupBy("subscriber_id").agg(*aggregates), streaks)
    return usual.select(
        "subscriber_id",
        *[
            F.col(n).cast("double").alias(n) if n in streaks else n
            for n in (f"{BASELINE_PREFIX}{m.name}" for m in metrics)
        ],
    )


def expected_level(metric: MissionMetric, period_days: int, memo: ColumnMemo | None = None) -> Column:
    """What the subscriber would reach in a period at their usual pace."""
    memo = memo or ColumnMemo()
    usual = f"{BASELINE_PREFIX}{metric.name}"
    base = memo.get(("usual", usual), lambda: F.coalesce(F.col(usual), F.lit(0.0)))
    if metric.aggregation in ("sum", "days"):
        base = base * period_days
    if metric.aggregation in ("days", "streak"):
        base = F.least(base, memo.lit(float(period_days)))
    return base


def friendly(value: Column) -> Column:
    """Round a target up to a number people like: 1..10, then 5s, 10s, 50s, 100s. The value is
    first rounded to 6 decimals, so a product landing on a step (100 x 1.1 is 110.00000000000001
    as a double) stays on it instead of going up a step."""
    value = F.round(value, 6)
    return (
        F.when(value <= 10, F.ceil(value))
        .when(value <= 50, F.ceil(value / 5) * 5)
        .when(value <= 200, F.ceil(value / 10) * 10)
        .when(value <= 1000, F.ceil(value / 50) * 50)
        .otherwise(F.ceil(value / 100) * 100)
        .cast("double")
    )


def _render(
    template: MissionTemplate, target: Column, unit: Column, period_word: Column, points: Column, memo: ColumnMemo
) -> Column:
    text = memo.lit(template.description)
    shown = F.regexp_replace(F.format_string("%.1f", target), r"\.0$", "")
    for placeholder, value in (
        ("{target}", shown),
        ("{unit}", unit),
        ("{period}", period_word),
        ("{points}", points.cast("string")),
    ):
        text = F.replace(text, memo.lit(placeholder), value)
    return text


def _period_word(period: Column) -> Column:
    return F.when(period == "daily", "day").when(period == "weekly", "week").otherwise("month")


def _pick(options: Sequence[tuple[Column, Column]], default: Column) -> Column:
    """The value of the first true condition (one flat CASE), else the default."""
    if not options:
        return default
    (condition, value), *rest = options
    picked = F.when(condition, value)
    for condition, value in rest:
        picked = picked.when(condition, value)
    return picked.otherwise(default)


@dataclass(frozen=True)
class _Candidate:
    """One template's candidate mission, built over staged columns (`_m<i>_period`, ...): each
    value is computed once in its own projection and referenced by name afterwards, so no
    expression tree is copied into the ones that use it (the plans stay small to analyse).
    Columns that recur within a plan come from `memo`, shared by every template's candidate."""

    index: int
    template: MissionTemplate
    metric: MissionMetric
    settings: MissionSettings
    names: Mapping[str, Column]
    ds: date
    numeric: frozenset[str]
    memo: ColumnMemo

    def col(self, name: str) -> Column:
        return self.memo.col(f"_m{self.index}_{name}")

    def named(self, name: str, value: Column) -> Column:
        return value.alias(f"_m{self.index}_{name}")

    def is_(self, name: str, value: str) -> Column:
        """This candidate's staged column `name` (period, level) equals `value`."""
        return self.memo.get(("is", self.index, name, value), lambda: self.col(name) == value)

    @property
    def node(self) -> Any:
        line, column = self.template.eligibility_position
        where = f"{self.template.file}#eligibility"
        return expressions.parse(self.template.eligibility, source=where, line=line, column=column)

    @property
    def periods(self) -> list[str]:
        return list(self.template.periods)

    @property
    def period_word(self) -> Column:
        return self.memo.get(("period_word", self.index), lambda: _period_word(self.col("period")))

    def stage(self, step: int) -> list[Column]:
        """The columns of projection `step` (1 to 4), each using only the earlier steps' columns."""
        t, periods, days, memo = self.template, self.periods, self.settings.period_days, self.memo
        if step == 1:
            eligible = F.coalesce(expressions.compile_node(self.node, self.names.__getitem__), memo.lit(False))
            hashed = F.xxhash64(memo.col("subscriber_id"), memo.lit(t.id), memo.lit(self.ds))
            index = F.pmod(hashed, memo.lit(len(periods)))
            return [
                self.named("eligible", eligible & memo.col("segment").isin(list(t.segments))),
                self.named(
                    "period", _pick([(index == i, memo.lit(p)) for i, p in enumerate(periods)], memo.lit(periods[0]))
                ),
            ]
        if step == 2:
            expected = _pick(
                [(self.is_("period", p), expected_level(self.metric, days[p], memo)) for p in periods], memo.lit(0.0)
            )
            return [self.named("expected", expected)]
        if step == 3:
            level = _pick([(self.is_("period", p), self._level(p)) for p in periods], memo.lit("medium"))
            return [self.named("level", level)]
        no_target = memo.get(("no_target",), lambda: F.lit(None).cast("double"))
        target = _pick([(self.is_("period", p), self._target(p)) for p in periods], no_target)
        points = _pick([(self.is_("level", lvl), memo.lit(pts)) for lvl, pts in t.points.items()], memo.lit(0))
        return [self.named("target", target), self.named("points", points)]

    def _level(self, period: str) -> Column:
        levels, memo = self.template.thresholds[period], self.memo
        if levels[0].is_relative:
            return memo.get(("dynamic_level",), self._dynamic_level)
        # the easiest level that is still a stretch over the usual pace
        expected = self.col("expected")
        return _pick([(memo.lit(t.target) > expected, memo.lit(t.level)) for t in levels], memo.lit(levels[-1].level))

    def _dynamic_level(self) -> Column:
        """The level of a personalised mission: the first of the configured rules that holds."""
        memo = self.memo
        rules = [
            (F.coalesce(expressions.compile_expression(rule, self.names), memo.lit(False)), memo.lit(lvl))
            for lvl, rule in self.settings.dynamic_levels
        ]
        return _pick(rules, memo.lit("medium"))

    def _target(self, period: str) -> Column:
        levels, expected, memo = self.template.thresholds[period], self.col("expected"), self.memo
        if not levels[0].is_relative:
            return _pick(
                [(self.is_("level", t.level), memo.lit(t.target)) for t in levels], memo.lit(levels[-1].target)
            )
        raw = _pick(
            [(self.is_("level", t.level), F.greatest(expected * t.relative, memo.lit(t.minimum))) for t in levels],
            expected,
        )
        target = friendly(raw)
        if self.metric.aggregation in ("days", "streak"):
            target = F.least(target, memo.lit(float(self.settings.period_days[period])))
        return target

    def offered(self) -> Column:
        """Eligible, with a positive target."""
        target = self.col("target")
        return self.col("eligible") & target.isNotNull() & (target > 0)

    def fields(self) -> dict[str, Column]:
        """The mission's fields by name: a candidate's columns after subscriber, segment, holdout."""
        t, metric, node, memo = self.template, self.metric, self.node, self.memo
        level, target, period, points = self.col("level"), self.col("target"), self.col("period"), self.col("points")
        period_days = _pick(
            [(self.is_("period", p), memo.lit(self.settings.period_days[p])) for p in self.periods], memo.lit(1)
        )
        offer = memo.col("nbo_offer_id") if t.offer_id == "nbo" else memo.lit(t.offer_id).cast("string")
        shown = expressions.shown_values(node, self.names, self.numeric, memo)
        eligibility = memo.lit(f"eligibility: {expressions.to_text(node)}")
        reason = F.concat_ws(
            "; ",
            F.concat(eligibility, memo.lit(" ["), F.concat_ws(", ", *shown), memo.lit("]")) if shown else eligibility,
            memo.get(("segment_text",), lambda: F.concat(F.lit("segment="), F.col("segment"))),
            F.format_string(
                "level %s: usual %.1f %s a %s", level, self.col("expected"), memo.lit(metric.unit), self.period_word
            ),
        )
        version = memo.lit(f"v{t.version}")
        # a period with relative thresholds gives a personal mission; one with absolute targets a
        # catalog mission (a template may have both kinds of period)
        relative = [p for p in self.periods if t.thresholds[p][0].is_relative]
        is_dynamic = memo.lit(bool(relative))
        mission_id = F.concat_ws(".", memo.lit(t.id), version, memo.col("segment"), level, period)
        if relative:
            subscriber = memo.get(("subscriber_prefix",), lambda: F.substring("subscriber_id", 1, 16))
            personal = F.concat_ws(
                ".", memo.lit(t.id), version, memo.lit("dyn"), level, period, subscriber, memo.lit(self.ds.isoformat())
            )
            if len(relative) < len(self.periods):
                is_dynamic = period.isin(relative)
                personal = F.when(is_dynamic, personal).otherwise(mission_id)
            mission_id = personal
        return {
            "mission_id": mission_id,
            "template_id": memo.lit(t.id),
            "template_version": memo.lit(t.version),
            "category": memo.lit(t.category),
            "metric": memo.lit(t.metric),
            "aggregation": memo.lit(t.aggregation),
            "level": level,
            "target_value": target,
            "period": period,
            "period_days": period_days,
            "reward_points": points,
            "offer_id": offer,
            "badge": memo.lit(t.badge),
            "priority": memo.lit(t.priority),
            "cooldown_days": memo.lit(t.cooldown_days),
            "is_dynamic": is_dynamic,
            "reason": reason,
            "description": _render(t, target, memo.lit(metric.unit), self.period_word, points, memo),
        }


def candidates(
    subjects: DataFrame,
    templates: Sequence[MissionTemplate],
    metrics: Mapping[str, MissionMetric],
    settings: MissionSettings,
    ds: date,
) -> DataFrame:
    """Subjects (one row per subscriber) -> one row per (subscriber, eligible template) with a
    positive target, before active missions, cooldowns and the cap: what a preview counts."""
    staged, plans = _staged(subjects, templates, metrics, settings, ds)
    offered = F.array_compact(F.array(*[F.when(plan.offered(), F.lit(i)) for i, plan in enumerate(plans)]))
    return _missions(staged, plans, offered)


def assign(
    subjects: DataFrame,
    previous: DataFrame,
    templates: Sequence[MissionTemplate],
    metrics: Mapping[str, MissionMetric],
    settings: MissionSettings,
    ds: date,
) -> DataFrame:
    """Subjects (one row per subscriber) -> the run date's new mission_assignments rows.

    A template is open to a subscriber when it is offered (see `candidates`) and not active or
    cooling down from an earlier assignment. `previous` holds the earlier assignments that may
    still matter (subscriber_id, template_id, period_end, cooldown_days, and optionally
    `completed`): a mission is active until its period ends unless completed, and its template
    cools down for `cooldown_days` after that. The open templates are taken in priority order
    (then template id) up to the cap less the subscriber's active missions. The choice is made
    in each subscriber's row, on template numbers, so only the chosen missions are built.
    """
    staged, plans = _staged(
        subjects.join(_slots(previous, ds), "subscriber_id", "left"), templates, metrics, settings, ds
    )
    blocked = F.coalesce(F.col("_blocked"), F.array().cast("array<string>"))
    by_priority = sorted(range(len(plans)), key=lambda i: (-plans[i].template.priority, plans[i].template.id))
    open_ = [
        F.when(plans[i].offered() & ~F.array_contains(blocked, plans[i].template.id), F.lit(i)) for i in by_priority
    ]
    free = F.greatest(F.lit(settings.max_active) - F.coalesce(F.col("_active"), F.lit(0)), F.lit(0))
    chosen = _missions(staged, plans, F.slice(F.array_compact(F.array(*open_)), 1, free))
    start = F.lit(ds + timedelta(days=1))
    return chosen.select(
        F.sha2(F.concat_ws("|", "subscriber_id", "mission_id", F.lit(ds.isoformat())), 256).alias("assignment_id"),
        "subscriber_id",
        "mission_id",
        "template_id",
        "template_version",
        "segment",
        "category",
        "metric",
        "aggregation",
        "level",
        "target_value",
        "period",
        start.alias("period_start"),
        F.date_add(start, F.col("period_days") - 1).alias("period_end"),
        "reward_points",
        "offer_id",
        "badge",
        "priority",
        "cooldown_days",
        "is_dynamic",
        F.when(F.col("is_dynamic"), F.col("subscriber_id")).alias("generated_for"),
        "holdout",
        "reason",
        "description",
        F.lit(ds).alias("assigned_ds"),
    )


def _slots(previous: DataFrame, ds: date) -> DataFrame:
    """Per subscriber with an earlier assignment still active or cooling down on `ds`: those
    templates (`_blocked`) and the number of active, not completed missions (`_active`)."""
    done = F.coalesce(F.col("completed"), F.lit(False)) if "completed" in previous.columns else F.lit(False)
    cooling = F.date_add(F.col("period_end"), F.col("cooldown_days")) > F.lit(ds)
    active = F.col("period_end") > F.lit(ds)
    return (
        previous.filter(cooling | active)
        .groupBy("subscriber_id")
        .agg(
            F.collect_set("template_id").alias("_blocked"),
            F.count(F.when(active & ~done, F.lit(1))).alias("_active"),
        )
    )


def _staged(
    subjects: DataFrame,
    templates: Sequence[MissionTemplate],
    metrics: Mapping[str, MissionMetric],
    settings: MissionSettings,
    ds: date,
) -> tuple[DataFrame, list[_Candidate]]:
    """The subjects with every template's staged values (period, usual level, level, target,
    points), computed in four projections, one value per column."""
    memo = ColumnMemo()
    names = {c: memo.col(c) for c in subjects.columns if not c.startswith("_")}  # not baselines, not slots
    numeric = frozenset(c for c, kind in subjects.dtypes if kind == "double")
    plans = [_Candidate(i, t, metrics[t.metric], settings, names, ds, numeric, memo) for i, t in enumerate(templates)]
    staged = subjects
    for step in (1, 2, 3, 4):
        staged = staged.select("*", *[c for plan in plans for c in plan.stage(step)])
    return staged, plans


def _missions(staged: DataFrame, plans: Sequence[_Candidate], numbers: Column) -> DataFrame:
    """One row per template number in the array `numbers` of each staged row: the subscriber,
    segment and holdout flag, and that template's mission fields (each one CASE over the number)."""
    rows = staged.select("*", F.explode(numbers).alias("_template"))
    fields = [plan.fields() for plan in plans]
    types = {"period_days": "int", **{f.name: f.dataType for f in schema_of(MISSION_ASSIGNMENTS).fields}}
    number = F.col("_template")
    is_number = [number == i for i in range(len(plans))]  # the same conditions in every field's CASE
    nothing = F.lit(None)
    return rows.select(
        "subscriber_id",
        "segment",
        "holdout",
        *[
            _pick(list(zip(is_number, [f[name] for f in fields], strict=True)), nothing).cast(types[name]).alias(name)
            for name in fields[0]
        ],
    )


def eligibility_names(score_names: Sequence[str], feature_names: Sequence[str]) -> list[str]:
    """Names a template's eligibility expression may use."""
    return sorted(
        {*score_names, *feature_names, *PROFILE_NAMES, "segment", "churn_probability", "nbo_offer_id", "nbo_score"}
    )


def catalog_frame(spark: Any, rows: list[dict[str, Any]], ds: date) -> DataFrame:
    schema = schema_of(MISSION_CATALOG)
    ordered = [(*(r.get(f.name) for f in schema.fields if f.name != "catalog_date"), ds) for r in rows]
    return local_frame(spark, ordered, schema)
