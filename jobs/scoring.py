"""Behavior scoring: features from `daily_activity` windows, five explainable 0-100 scores.

Definitions live in conf/scoring.yaml. Every score is a weighted sum of normalized components,
and the per-row breakdown (raw value, normalized value, weight, contribution) adds up to the
score. Everything is built from Spark built-in expressions in a few wide aggregations.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs import expressions
from jobs.config import ConfigError, load_yaml
from jobs.metrics import MetricRegistry

SCORE_NAMES = ("engagement", "revenue", "loyalty", "risk", "digital")
WINDOW_AGGS = ("sum", "max", "days", "days_since", "weeks", "last", "day_rate", "daily_avg")
PROFILE_FEATURES = {
    "tenure_days": "crm_subscribers",
    "is_postpaid": "crm_subscribers",
    "plan_changed_90d": "crm_subscribers",
}
PLAN_CHANGE_DAYS = 90  # plan_changed_90d: today's plan against the plan of the snapshot this many days earlier
ML_FEATURES = ("churn_probability", "risk_score", "nbo_score")
ML_SOURCE = "ml_predictions"  # degrades the ML features when missing, failed or stale
TRANSFORMS = ("identity", "log1p", "sqrt")
MISSING = ("zero", "neutral", "exclude")
PERCENTILES = [i / 100 for i in range(1, 100)]

BREAKDOWN_TYPE = T.MapType(
    T.StringType(),
    T.StructType(
        [
            T.StructField("raw", T.DoubleType()),
            T.StructField("normalized", T.DoubleType()),
            T.StructField("weight", T.DoubleType()),
            T.StructField("contribution", T.DoubleType()),
            T.StructField("missing", T.BooleanType()),
            T.StructField("degraded", T.BooleanType()),
        ]
    ),
)


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # window | expr | profile | ml | count_positive
    spec: Mapping[str, Any]


@dataclass(frozen=True)
class Component:
    name: str
    feature: str
    weight: float
    method: str
    low: float = 0.0
    high: float = 1.0
    by: str = "all"
    transform: str = "identity"
    direction: str = "higher"
    missing: str = "zero"


@dataclass(frozen=True)
class ScoringConfig:
    version: str
    digest: str
    features: tuple[Feature, ...]
    scores: Mapping[str, tuple[Component, ...]]
    ml_table: str = "ml_predictions"
    ml_max_age_days: int = 7
    file: str = "conf/scoring.yaml"
    feature_names: tuple[str, ...] = field(default=())

    @property
    def config_version(self) -> str:
        return f"{self.version}+{self.digest}"

    @property
    def max_window(self) -> int:
        return max([int(f.spec["window"]) for f in self.features if f.kind == "window"] or [1])

    @classmethod
    def load(cls, path: str | Path, registry: MetricRegistry) -> ScoringConfig:
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        data = load_yaml(path) or {}
        features = _parse_features(data.get("features") or {}, registry, path)
        names = [f.name for f in features]
        scores = {}
        for score, spec in (data.get("scores") or {}).items():
            if score not in SCORE_NAMES:
                raise ConfigError(path, f"scores.{score}", f"unknown score; the scores are {', '.join(SCORE_NAMES)}")
            scores[score] = tuple(
                _parse_component(score, i, c, names, path) for i, c in enumerate(spec.get("components") or [])
            )
            if not scores[score]:
                raise ConfigError(path, f"scores.{score}.components", "needs at least one component")
        missing = [s for s in SCORE_NAMES if s not in scores]
        if missing:
            raise ConfigError(path, "scores", f"missing score(s): {', '.join(missing)}")
        ml = data.get("ml") or {}
        return cls(
            version=str(data.get("version", "1")),
            digest=hashlib.sha256(text.encode()).hexdigest()[:8],
            features=tuple(features),
            scores=scores,
            ml_table=ml.get("table", "ml_predictions"),
            ml_max_age_days=int(ml.get("max_age_days", 7)),
            file=str(path),
            feature_names=tuple(names),
        )


def _parse_features(specs: Mapping[str, Any], registry: MetricRegistry, path: Path) -> list[Feature]:
    features: list[Feature] = []
    known: list[str] = []
    for name, spec in specs.items():
        key = f"features.{name}"
        if not isinstance(spec, Mapping):
            raise ConfigError(path, key, "must be a mapping")
        if "metric" in spec:
            if spec["metric"] not in registry.names:
                raise ConfigError(path, f"{key}.metric", f"unknown metric {spec['metric']!r} (see {registry.file})")
            if spec.get("agg") not in WINDOW_AGGS:
                raise ConfigError(path, f"{key}.agg", f"must be one of {', '.join(WINDOW_AGGS)}")
            if not isinstance(spec.get("window"), int) or spec["window"] < 1:
                raise ConfigError(path, f"{key}.window", "must be a positive number of days")
            kind = "window"
        elif "expr" in spec:
            try:
                expressions.validate(
                    str(spec["expr"]),
                    known,
                    source=f"{path}#{key}.expr",
                    types=dict.fromkeys(known, expressions.NUMBER),
                    expect=expressions.NUMBER,
                )
            except expressions.ExpressionError as exc:
                raise ConfigError(path, f"{key}.expr", str(exc)) from exc
            kind = "expr"
        elif "count_positive" in spec:
            unknown = [n for n in spec["count_positive"] if n not in known]
            if unknown:
                raise ConfigError(path, f"{key}.count_positive", f"unknown feature(s) {unknown}")
            kind = "count_positive"
        elif "profile" in spec:
            if spec["profile"] not in PROFILE_FEATURES:
                raise ConfigError(path, f"{key}.profile", f"must be one of {', '.join(PROFILE_FEATURES)}")
            kind = "profile"
        elif "ml" in spec:
            if spec["ml"] not in ML_FEATURES:
                raise ConfigError(path, f"{key}.ml", f"must be one of {', '.join(ML_FEATURES)}")
            kind = "ml"
        else:
            raise ConfigError(path, key, "needs one of metric, expr, count_positive, profile, ml")
        features.append(Feature(name, kind, dict(spec)))
        known.append(name)
    return features


def _parse_component(score: str, index: int, spec: Mapping[str, Any], features: Sequence[str], path: Path) -> Component:
    key = f"scores.{score}.components[{index}]"
    if spec.get("feature") not in features:
        raise ConfigError(path, f"{key}.feature", f"unknown feature {spec.get('feature')!r}")
    normalize = spec.get("normalize") or {}
    method = normalize.get("method")
    if method not in ("minmax", "percentile"):
        raise ConfigError(path, f"{key}.normalize.method", "must be minmax or percentile")
    if method == "minmax" and not float(normalize.get("max", 1)) > float(normalize.get("min", 0)):
        raise ConfigError(path, f"{key}.normalize", "max must be greater than min")
    weight = spec.get("weight")
    if not isinstance(weight, int | float) or weight <= 0:
        raise ConfigError(path, f"{key}.weight", "must be a positive number")
    component = Component(
        name=spec.get("name") or spec["feature"],
        feature=spec["feature"],
        weight=float(weight),
        method=method,
        low=float(normalize.get("min", 0.0)),
        high=float(normalize.get("max", 1.0)),
        by=str(normalize.get("by", "all")),
        transform=spec.get("transform", "identity"),
        direction=spec.get("direction", "higher"),
        missing=spec.get("missing", "zero"),
    )
    for attribute, allowed in (("transform", TRANSFORMS), ("direction", ("higher", "lower")), ("missing", MISSING)):
        if getattr(component, attribute) not in allowed:
            raise ConfigError(path, f"{key}.{attribute}", f"must be one of {', '.join(allowed)}")
    return component


# -- features ---------------------------------------------------------------------------------


def window_aggregates(activity: DataFrame, cfg: ScoringConfig, ds: date) -> DataFrame:
    """All windowed features in one groupBy over the daily_activity rows of the longest window."""
    offset = F.datediff(F.lit(ds), F.col("activity_date"))
    aggregates = []
    for feature in (f for f in cfg.features if f.kind == "window"):
        window, metric = int(feature.spec["window"]), F.col(feature.spec["metric"])
        inside = (offset >= 0) & (offset < window)
        positive = inside & (metric > 0)
        agg = feature.spec["agg"]
        if agg in ("sum", "daily_avg"):
            value = F.sum(F.when(inside, metric))
        elif agg == "max":
            value = F.max(F.when(inside, metric))
        elif agg in ("days", "day_rate"):
            value = F.sum(F.when(positive, 1.0))
        elif agg == "days_since":
            value = F.min(F.when(positive, offset)).cast("double")
        elif agg == "weeks":
            value = F.size(F.collect_set(F.when(positive, F.floor(offset / 7)))).cast("double")
        else:  # last
            value = F.max_by(metric, F.when(inside & metric.isNotNull(), F.col("activity_date")))
        aggregates.append(value.alias(feature.name))
    return activity.groupBy("subscriber_id").agg(*aggregates)


def compute_features(
    subscribers: DataFrame,
    windows: DataFrame,
    predictions: DataFrame | None,
    cfg: ScoringConfig,
    ds: date,
    history_days: int,
) -> DataFrame:
    """Known subscribers (profile columns incl. activation_date, plan_code_90d_ago) + windowed
    aggregates + optional ML predictions -> one row per subscriber with every feature."""
    df = subscribers.join(windows, "subscriber_id", "left")
    if predictions is not None:
        df = df.join(predictions, "subscriber_id", "left")
    else:
        df = df.select(
            "*",
            F.lit(None).cast("double").alias("churn_probability"),
            F.lit(None).cast("string").alias("nbo_offer_id"),
            F.lit(None).cast("double").alias("nbo_score"),
            F.lit(None).cast("double").alias("risk_score"),
            F.lit(None).cast("string").alias("model_version"),
        )
    tenure = F.datediff(F.lit(ds), F.col("activation_date"))
    columns: dict[str, Column] = {}
    for feature in cfg.features:
        if feature.kind == "window":
            columns[feature.name] = _window_feature(feature, tenure, history_days)
        elif feature.kind == "profile":
            columns[feature.name] = _profile_feature(feature.spec["profile"], tenure)
        elif feature.kind == "ml":
            columns[feature.name] = F.col(feature.spec["ml"]).cast("double")
        elif feature.kind == "count_positive":
            columns[feature.name] = sum(
                (F.when(columns[n] > 0, 1.0).otherwise(0.0) for n in feature.spec["count_positive"]), F.lit(0.0)
            )
        else:
            source = f"{cfg.file}#features.{feature.name}.expr"
            columns[feature.name] = expressions.compile_expression(
                str(feature.spec["expr"]), dict(columns), source=source
            ).cast("double")
    passthrough = [c for c in df.columns if c not in columns and c not in cfg.feature_names]
    return df.select(*passthrough, *[col.alias(name) for name, col in columns.items()])


def _window_feature(feature: Feature, tenure: Column, history_days: int) -> Column:
    window, agg, value = int(feature.spec["window"]), feature.spec["agg"], F.col(feature.name)
    observed = F.least(
        F.lit(float(window)), F.lit(float(history_days)), F.coalesce(tenure + 1, F.lit(window)).cast("double")
    )
    observed = F.greatest(observed, F.lit(1.0))
    if agg == "days_since":  # never in the observed history: at least that long
        return F.coalesce(value, observed)
    if agg == "last":
        return value.cast("double")
    if agg in ("day_rate", "daily_avg"):
        return F.coalesce(value, F.lit(0.0)) / observed
    return F.coalesce(value, F.lit(0.0)).cast("double")


def _profile_feature(name: str, tenure: Column) -> Column:
    if name == "tenure_days":  # unknown activation date: unknown tenure (null), not a new joiner
        return F.when(tenure.isNotNull(), F.greatest(tenure, F.lit(0))).cast("double")
    if name == "is_postpaid":
        return F.when(F.col("payment_type") == "POSTPAID", 1.0).otherwise(0.0)
    changed = F.col("plan_code_90d_ago").isNotNull() & (F.col("plan_code") != F.col("plan_code_90d_ago"))
    return F.when(changed, 1.0).otherwise(0.0)


# -- scores -----------------------------------------------------------------------------------


def _transformed(component: Component) -> Column:
    raw = F.col(component.feature).cast("double")
    if component.transform == "log1p":
        return F.log1p(F.greatest(raw, F.lit(0.0)))
    if component.transform == "sqrt":
        return F.sqrt(F.greatest(raw, F.lit(0.0)))
    return raw


def _quantile_column(score: str, component: Component) -> str:
    return f"_q_{score}_{component.name}"


def percentile_cuts(features: DataFrame, cfg: ScoringConfig) -> dict[str, DataFrame]:
    """Approximate percentile cut points (99 per component) per `by` group, one aggregation
    per distinct group column; tiny results, joined back by broadcast."""
    by_group: dict[str, list[Column]] = {}
    for score, components in cfg.scores.items():
        for c in components:
            if c.method == "percentile":
                cut = F.percentile_approx(_transformed(c), PERCENTILES, 1000).alias(_quantile_column(score, c))
                by_group.setdefault(c.by, []).append(cut)
    cuts = {}
    for by, aggregates in by_group.items():
        grouped = features.groupBy(F.lit("all").alias("_all")) if by == "all" else features.groupBy(by)
        cuts[by] = grouped.agg(*aggregates)
    return cuts


def _normalized(score: str, component: Component) -> Column:
    value = _transformed(component)
    if component.method == "minmax":
        scaled = (value - F.lit(component.low)) / F.lit(component.high - component.low)
        normalized = F.least(F.greatest(scaled, F.lit(0.0)), F.lit(1.0))
    else:
        cuts = F.col(_quantile_column(score, component))
        below = F.size(F.filter(cuts, lambda q: q < value))
        at_or_below = F.size(F.filter(cuts, lambda q: q <= value))
        normalized = F.when(value.isNotNull() & cuts.isNotNull(), (below + at_or_below) / (2.0 * F.size(cuts)))
    if component.direction == "lower":
        normalized = 1.0 - normalized
    return normalized


def score_columns(score: str, components: Sequence[Component], degraded: set[str]) -> tuple[Column, Column]:
    """The score (0-100) and its breakdown map for one score."""
    parts = []
    for c in components:
        raw = F.col(c.feature).cast("double")
        missing = raw.isNull()
        normalized = _normalized(score, c)
        filled = {"zero": F.lit(0.0), "neutral": F.lit(0.5), "exclude": F.lit(0.0)}[c.missing]
        value = F.when(missing, filled).otherwise(F.coalesce(normalized, filled))
        counted = ~missing if c.missing == "exclude" else F.lit(True)
        parts.append((c, raw, missing, value, counted))
    total_weight = sum((F.when(counted, F.lit(c.weight)).otherwise(0.0) for c, _, _, _, counted in parts), F.lit(0.0))
    entries = []
    contributions = []
    for c, raw, missing, value, counted in parts:
        weight = F.when(counted, F.lit(c.weight) / total_weight).otherwise(0.0)
        contribution = 100.0 * value * weight
        contributions.append(contribution)
        entries += [
            F.lit(c.name),
            F.struct(
                raw.alias("raw"),
                F.round(value, 4).alias("normalized"),
                F.round(weight, 4).alias("weight"),
                F.round(contribution, 4).alias("contribution"),
                missing.alias("missing"),
                F.lit(c.feature in degraded).alias("degraded"),
            ),
        ]
    total = F.round(F.least(F.greatest(sum(contributions, F.lit(0.0)), F.lit(0.0)), F.lit(100.0)), 2)
    return total, F.create_map(*entries)


def compute_scores(
    features: DataFrame,
    cuts: Mapping[str, DataFrame],
    cfg: ScoringConfig,
    ds: date,
    degraded_features: set[str],
    degraded_sources: Sequence[str],
) -> DataFrame:
    """Features -> one behavior_scores row per subscriber."""
    df = features
    for by, cut in cuts.items():
        key = F.lit("all") if by == "all" else F.col(by)
        df = df.join(
            F.broadcast(
                cut.withColumnRenamed(by, "_cut_key") if by != "all" else cut.withColumnRenamed("_all", "_cut_key")
            ),
            key == F.col("_cut_key"),
            "left",
        ).drop("_cut_key")
    columns = []
    for score in SCORE_NAMES:
        total, breakdown = score_columns(score, cfg.scores[score], degraded_features)
        columns += [total.alias(score), breakdown.alias(f"{score}_breakdown")]
    return df.select(
        "subscriber_id",
        *columns,
        "churn_probability",
        "nbo_offer_id",
        "nbo_score",
        "model_version",
        F.array(*[F.lit(s) for s in sorted(degraded_sources)]).cast("array<string>").alias("degraded_sources"),
        F.lit(cfg.config_version).alias("config_version"),
        F.lit(ds).alias("score_date"),
    )


def features_snapshot(features: DataFrame, cfg: ScoringConfig, ds: date) -> DataFrame:
    """behavior_features: every feature of every subscriber, as a map, with the config version."""
    pairs = []
    for name in cfg.feature_names:
        pairs += [F.lit(name), F.col(name).cast("double")]
    return features.select(
        "subscriber_id",
        F.create_map(*pairs).alias("features"),
        F.lit(cfg.config_version).alias("config_version"),
        F.lit(ds).alias("score_date"),
    )


def unconfigured_sources(
    registry: MetricRegistry, configured: set[str], profile_source: str = "crm_subscribers"
) -> set[str]:
    """Sources the metrics and profile features read that the operator does not have (or has
    switched off): every component built on them is degraded, every day."""
    referenced = {profile_source}.union(*(registry.sources_of(m) for m in registry.names))
    return referenced - configured


def degraded_features(
    cfg: ScoringConfig,
    registry: MetricRegistry,
    unavailable_sources: set[str],
    profile_source: str = "crm_subscribers",
) -> set[str]:
    """Features that depend (directly or through expressions) on a source missing today."""
    by_name = {f.name: f for f in cfg.features}
    memo: dict[str, set[str]] = {}

    def sources(name: str) -> set[str]:
        if name not in memo:
            feature = by_name[name]
            if feature.kind == "window":
                memo[name] = registry.sources_of(feature.spec["metric"])
            elif feature.kind == "profile":
                memo[name] = {profile_source}  # every profile feature comes from the CRM snapshot
            elif feature.kind == "ml":
                memo[name] = {ML_SOURCE}
            elif feature.kind == "count_positive":
                memo[name] = set().union(*(sources(n) for n in feature.spec["count_positive"]))
            else:
                memo[name] = set().union(
                    *(sources(n) for n in expressions.names(expressions.parse(str(feature.spec["expr"]))))
                )
        return memo[name]

    return {f.name for f in cfg.features if sources(f.name) & unavailable_sources}
