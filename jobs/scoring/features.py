"""Features per subscriber from `daily_activity` windows, the profile and the ML predictions, in
a few wide aggregations; which features a missing source degrades."""

from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs import expressions
from jobs.frames import ColumnMemo
from jobs.metrics import SUM_DECIMALS, MetricRegistry
from jobs.scoring.config import ML_SOURCE, Feature, ScoringConfig


def window_aggregates(activity: DataFrame, cfg: ScoringConfig, ds: date) -> DataFrame:
    """All windowed features in one groupBy over the daily_activity rows of the longest window."""
    offset = F.datediff(F.lit(ds), F.col("activity_date"))
    aggregates = []
    for feature in (f for f in cfg.features if f.kind == "window"):
        window, metric = int(feature.spec["window"]), F.col(feature.spec["metric"])
        inside = (offset >= 0) & (offset < window)
        positive = inside & (metric > 0)
        agg = feature.spec["agg"]
        if agg in ("sum", "daily_avg"):  # at SUM_DECIMALS, as daily sums: ranks do not hang on the order of addition
            value = F.round(F.sum(F.when(inside, metric)), SUM_DECIMALS)
        elif agg == "max":
            value = F.max(F.when(inside, metric))
        elif agg in ("days", "day_rate"):
            value = F.sum(F.when(positive, 1.0))
        elif agg == "days_since":
            value = F.min(F.when(positive, offset)).cast("double")
        elif agg == "weeks":
            value = _distinct_weeks(positive, offset, window)
        else:  # last
            value = F.max_by(metric, F.when(inside & metric.isNotNull(), F.col("activity_date")))
        aggregates.append(value.alias(feature.name))
    return activity.groupBy("subscriber_id").agg(*aggregates)


def _distinct_weeks(positive: Column, offset: Column, window: int) -> Column:
    """Distinct 7-day blocks with metric > 0: one bit per block, OR-ed, then counted. A plain
    aggregate, where collect_set would force the slower object-hash aggregation."""
    week = F.floor(offset / 7).cast("int")
    if (window - 1) // 7 >= 63:  # more blocks than a long has bits
        return F.size(F.collect_set(F.when(positive, week))).cast("double")
    bits = F.bit_or(F.when(positive, F.pow(F.lit(2.0), week).cast("long")))  # 2^week, exact below 2^63
    return F.coalesce(F.bit_count(bits), F.lit(0)).cast("double")


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
    memo = ColumnMemo()  # the observed days of each window, shared by its features
    columns: dict[str, Column] = {}
    for feature in cfg.features:
        if feature.kind == "window":
            columns[feature.name] = _window_feature(feature, tenure, history_days, memo)
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


def _window_feature(feature: Feature, tenure: Column, history_days: int, memo: ColumnMemo) -> Column:
    window, agg, value = int(feature.spec["window"]), feature.spec["agg"], F.col(feature.name)

    def observed_days() -> Column:
        observed = F.least(
            F.lit(float(window)), F.lit(float(history_days)), F.coalesce(tenure + 1, F.lit(window)).cast("double")
        )
        return F.greatest(observed, F.lit(1.0))

    observed = memo.get(("observed", window), observed_days)
    if agg == "days_since":  # never in the observed history: at least that long
        return F.coalesce(value, observed)
    if agg == "last":
        return value.cast("double")
    if agg in ("day_rate", "daily_avg"):
        return F.coalesce(value, memo.lit(0.0)) / observed
    return F.coalesce(value, memo.lit(0.0)).cast("double")


def _profile_feature(name: str, tenure: Column) -> Column:
    if name == "tenure_days":  # unknown activation date: unknown tenure (null), not a new joiner
        return F.when(tenure.isNotNull(), F.greatest(tenure, F.lit(0))).cast("double")
    if name == "is_postpaid":
        return F.when(F.col("payment_type") == "POSTPAID", 1.0).otherwise(0.0)
    changed = F.col("plan_code_90d_ago").isNotNull() & (F.col("plan_code") != F.col("plan_code_90d_ago"))
    return F.when(changed, 1.0).otherwise(0.0)


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
