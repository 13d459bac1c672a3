"""Mission assignment: templates x eligible subscribers -> mission_assignments.

For each run date every subscriber's candidate missions are built in one pass (an array of
candidate structs, one per template, exploded; each value a candidate uses several times is
computed once in a projection before it), then filtered by active missions, cooldowns and
the per-subscriber cap in priority order. Catalog missions take absolute targets; personalised
ones (`is_dynamic`) take a target from the subscriber's own baseline. A deterministic hash puts
a configured share of subscribers in a universal holdout: their missions are recorded with
`holdout = true` and never delivered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from jobs import expressions
from jobs.config import ConfigError, load_yaml
from jobs.metrics import longest_streak
from jobs.tables import PROFILE_NAMES
from jobs.templates import DEFAULT_PERIOD_DAYS, LEVELS, MissionMetric, MissionTemplate

BASELINE_PREFIX = "_baseline_"


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
        return cls(
            templates_dir=str(data.get("templates_dir", "templates/missions")),
            badges_dir=str(data.get("badges_dir", "templates/badges")),
            max_active=max_active,
            baseline_days=int(data.get("baseline_days", 28)),
            period_days=dict(data.get("period_days") or DEFAULT_PERIOD_DAYS),
            holdout_share=float(share),
            holdout_salt=str(holdout.get("salt", "")),
            dynamic_levels=levels,
            file=str(path),
        )

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
    offset = F.datediff(F.lit(ds), F.col("activity_date"))
    inside = (offset >= 0) & (offset < days)
    aggregates = []
    for m in metrics:
        daily = F.col(m.daily)
        if m.aggregation == "sum":
            value = F.coalesce(F.sum(F.when(inside, daily)), F.lit(0.0)) / days
        elif m.aggregation == "days":
            value = F.coalesce(F.sum(F.when(inside & (daily > 0), 1.0)), F.lit(0.0)) / days
        elif m.aggregation == "streak":
            value = longest_streak(F.collect_list(F.when(inside & (daily > 0), -offset))).cast("double")
        else:
            value = F.max(F.when(inside, daily))
        aggregates.append(value.alias(f"{BASELINE_PREFIX}{m.name}"))
    return activity.groupBy("subscriber_id").agg(*aggregates)


def expected_level(metric: MissionMetric, period_days: int) -> Column:
    """What the subscriber would reach in a period at their usual pace."""
    base = F.coalesce(F.col(f"{BASELINE_PREFIX}{metric.name}"), F.lit(0.0))
    if metric.aggregation in ("sum", "days"):
        base = base * period_days
    if metric.aggregation in ("days", "streak"):
        base = F.least(base, F.lit(float(period_days)))
    return base


def friendly(value: Column) -> Column:
    """Round a target up to a number people like: 1..10, then 5s, 10s, 50s, 100s."""
    return (
        F.when(value <= 10, F.ceil(value))
        .when(value <= 50, F.ceil(value / 5) * 5)
        .when(value <= 200, F.ceil(value / 10) * 10)
        .when(value <= 1000, F.ceil(value / 50) * 50)
        .otherwise(F.ceil(value / 100) * 100)
        .cast("double")
    )


def _render(template: MissionTemplate, target: Column, unit: str, period: Column, points: Column) -> Column:
    text = F.lit(template.description)
    shown = F.regexp_replace(F.format_string("%.1f", target), r"\.0$", "")
    for placeholder, value in (
        ("{target}", shown),
        ("{unit}", F.lit(unit)),
        ("{period}", _period_word(period)),
        ("{points}", points.cast("string")),
    ):
        text = F.replace(text, F.lit(placeholder), value)
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
    expression tree is copied into the ones that use it (the plans stay small to analyse)."""

    index: int
    template: MissionTemplate
    metric: MissionMetric
    settings: MissionSettings
    names: Mapping[str, Column]
    ds: date
    numeric: frozenset[str]

    def col(self, name: str) -> Column:
        return F.col(f"_m{self.index}_{name}")

    def named(self, name: str, value: Column) -> Column:
        return value.alias(f"_m{self.index}_{name}")

    @property
    def node(self) -> Any:
        line, column = self.template.eligibility_position
        where = f"{self.template.file}#eligibility"
        return expressions.parse(self.template.eligibility, source=where, line=line, column=column)

    @property
    def periods(self) -> list[str]:
        return list(self.template.periods)

    def stage(self, step: int) -> list[Column]:
        """The columns of projection `step` (1 to 4), each using only the earlier steps' columns."""
        t, periods, days = self.template, self.periods, self.settings.period_days
        period = self.col("period")
        if step == 1:
            eligible = F.coalesce(expressions.compile_node(self.node, self.names.__getitem__), F.lit(False))
            index = F.pmod(F.xxhash64(F.col("subscriber_id"), F.lit(t.id), F.lit(self.ds)), F.lit(len(periods)))
            return [
                self.named("eligible", eligible & F.col("segment").isin(list(t.segments))),
                self.named("period", _pick([(index == i, F.lit(p)) for i, p in enumerate(periods)], F.lit(periods[0]))),
            ]
        if step == 2:
            expected = _pick([(period == p, expected_level(self.metric, days[p])) for p in periods], F.lit(0.0))
            return [self.named("expected", expected)]
        if step == 3:
            return [self.named("level", _pick([(period == p, self._level(p)) for p in periods], F.lit("medium")))]
        target = _pick([(period == p, self._target(p)) for p in periods], F.lit(None).cast("double"))
        points = _pick([(self.col("level") == lvl, F.lit(pts)) for lvl, pts in t.points.items()], F.lit(0))
        return [self.named("target", target), self.named("points", points)]

    def _level(self, period: str) -> Column:
        levels = self.template.thresholds[period]
        if levels[0].is_relative:
            rules = self.settings.dynamic_levels
            return _pick(
                [
                    (F.coalesce(expressions.compile_expression(rule, self.names), F.lit(False)), F.lit(lvl))
                    for lvl, rule in rules
                ],
                F.lit("medium"),
            )
        # the easiest level that is still a stretch over the usual pace
        expected = self.col("expected")
        return _pick([(F.lit(t.target) > expected, F.lit(t.level)) for t in levels], F.lit(levels[-1].level))

    def _target(self, period: str) -> Column:
        levels, level, expected = self.template.thresholds[period], self.col("level"), self.col("expected")
        if not levels[0].is_relative:
            return _pick([(level == t.level, F.lit(t.target)) for t in levels], F.lit(levels[-1].target))
        raw = _pick([(level == t.level, F.greatest(expected * t.relative, F.lit(t.minimum))) for t in levels], expected)
        target = friendly(raw)
        if self.metric.aggregation in ("days", "streak"):
            target = F.least(target, F.lit(float(self.settings.period_days[period])))
        return target

    def mission(self) -> Column:
        """The candidate struct, or null when not eligible (or without a positive target)."""
        t, metric, node = self.template, self.metric, self.node
        level, target, period, points = self.col("level"), self.col("target"), self.col("period"), self.col("points")
        period_days = _pick([(period == p, F.lit(self.settings.period_days[p])) for p in self.periods], F.lit(1))
        offer = F.col("nbo_offer_id") if t.offer_id == "nbo" else F.lit(t.offer_id).cast("string")
        shown = expressions.shown_values(node, self.names, self.numeric)
        text = expressions.to_text(node)
        reason = F.concat_ws(
            "; ",
            F.concat(F.lit(f"eligibility: {text}"), F.lit(" ["), F.concat_ws(", ", *shown), F.lit("]"))
            if shown
            else F.lit(f"eligibility: {text}"),
            F.concat(F.lit("segment="), F.col("segment")),
            F.format_string(
                "level %s: usual %.1f %s a %s", level, self.col("expected"), F.lit(metric.unit), _period_word(period)
            ),
        )
        version = F.lit(f"v{t.version}")
        if t.is_personalised:
            subscriber = F.substring("subscriber_id", 1, 16)
            mission_id = F.concat_ws(
                ".", F.lit(t.id), version, F.lit("dyn"), level, period, subscriber, F.lit(self.ds.isoformat())
            )
        else:
            mission_id = F.concat_ws(".", F.lit(t.id), version, F.col("segment"), level, period)
        mission = F.struct(
            mission_id.alias("mission_id"),
            F.lit(t.id).alias("template_id"),
            F.lit(t.version).alias("template_version"),
            F.lit(t.category).alias("category"),
            F.lit(t.metric).alias("metric"),
            F.lit(t.aggregation).alias("aggregation"),
            level.alias("level"),
            target.alias("target_value"),
            period.alias("period"),
            period_days.alias("period_days"),
            points.alias("reward_points"),
            offer.alias("offer_id"),
            F.lit(t.badge).alias("badge"),
            F.lit(t.priority).alias("priority"),
            F.lit(t.cooldown_days).alias("cooldown_days"),
            F.lit(t.is_personalised).alias("is_dynamic"),
            reason.alias("reason"),
            _render(t, target, metric.unit, period, points).alias("description"),
        )
        return F.when(self.col("eligible") & target.isNotNull() & (target > 0), mission)


def candidates(
    subjects: DataFrame,
    templates: Sequence[MissionTemplate],
    metrics: Mapping[str, MissionMetric],
    settings: MissionSettings,
    ds: date,
) -> DataFrame:
    """Subjects (one row per subscriber) -> one row per (subscriber, eligible template), in one
    pass: an array of every template's candidate (null when not eligible), exploded. The values a
    candidate uses several times (period, usual level, level, target, points) are computed in
    four projections before it, one value per column."""
    names = {c: F.col(c) for c in subjects.columns if not c.startswith(BASELINE_PREFIX)}
    numeric = frozenset(c for c, kind in subjects.dtypes if kind == "double")
    plans = [_Candidate(i, t, metrics[t.metric], settings, names, ds, numeric) for i, t in enumerate(templates)]
    staged = subjects
    for step in (1, 2, 3, 4):
        staged = staged.select("*", *[c for plan in plans for c in plan.stage(step)])
    exploded = staged.select(
        "subscriber_id",
        "segment",
        "holdout",
        F.explode(F.array(*[plan.mission() for plan in plans])).alias("m"),
    )
    return exploded.filter(F.col("m").isNotNull()).select("subscriber_id", "segment", "holdout", "m.*")


def assign(candidates_df: DataFrame, previous: DataFrame, settings: MissionSettings, ds: date) -> DataFrame:
    """Apply active-duplicate, cooldown and cap rules; return the new mission_assignments rows.

    `previous`: earlier assignments (subscriber_id, template_id, period_end, cooldown_days, and
    optionally `completed`) that may still be active or cooling down. A completed mission no
    longer takes a slot; its template still cools down from the end of its period.
    """
    done = F.coalesce(F.col("completed"), F.lit(False)) if "completed" in previous.columns else F.lit(False)
    active = previous.filter((F.col("period_end") > F.lit(ds)) & ~done)
    active_count = active.groupBy("subscriber_id").agg(F.count(F.lit(1)).alias("_active"))
    blocked = (
        previous.select(
            "subscriber_id", "template_id", F.date_add(F.col("period_end"), F.col("cooldown_days")).alias("_free_from")
        )
        .groupBy("subscriber_id", "template_id")
        .agg(F.max("_free_from").alias("_free_from"))
    )
    open_ = (
        candidates_df.join(blocked, ["subscriber_id", "template_id"], "left")
        .filter(F.col("_free_from").isNull() | (F.col("_free_from") <= F.lit(ds)))
        .join(active_count, "subscriber_id", "left")
    )
    rank = F.row_number().over(Window.partitionBy("subscriber_id").orderBy(F.desc("priority"), "template_id"))
    chosen = open_.withColumn("_rank", rank).filter(
        F.col("_rank") <= F.lit(settings.max_active) - F.coalesce(F.col("_active"), F.lit(0))
    )
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


def eligibility_names(score_names: Sequence[str], feature_names: Sequence[str]) -> list[str]:
    """Names a template's eligibility expression may use."""
    return sorted(
        {*score_names, *feature_names, *PROFILE_NAMES, "segment", "churn_probability", "nbo_offer_id", "nbo_score"}
    )


def catalog_frame(spark: Any, rows: list[dict[str, Any]], ds: date) -> DataFrame:
    from jobs.tables import MISSION_CATALOG, schema_of

    schema = schema_of(MISSION_CATALOG)
    ordered = [(*(r.get(f.name) for f in schema.fields if f.name != "catalog_date"), ds) for r in rows]
    return spark.createDataFrame(ordered, schema)
