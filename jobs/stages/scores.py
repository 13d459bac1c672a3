"""The scores stage: daily_activity windows, the profile and the newest fresh ML predictions ->
behavior_features and behavior_scores, with the features of unavailable sources degraded."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.context import RunContext
from jobs.frames import with_nullable_nesting
from jobs.predictions import newest_fresh_date
from jobs.run_log import UNAVAILABLE, later_days_ran
from jobs.scoring import (
    ML_SOURCE,
    ScoringConfig,
    compute_features,
    compute_scores,
    degraded_features,
    features_snapshot,
    percentile_cuts,
    unconfigured_sources,
    window_aggregates,
)
from jobs.spark import JIT_SIZED_CODE, scoped_sql_conf
from jobs.stages.readers import scoring_base
from jobs.tables import BEHAVIOR_FEATURES, BEHAVIOR_SCORES, DAILY_ACTIVITY, PIPELINE_RUNS

__all__ = [
    "fresh_predictions",
    "history_days",
    "latest_predictions",
    "run",
    "stale_predictions",
    "unavailable_sources",
]


def run(ctx: RunContext) -> dict[str, Any]:
    """daily_activity windows + profile + ML -> behavior_features and behavior_scores."""
    cfg = ctx.settings.scoring
    lakehouse, ds = ctx.lakehouse, ctx.ds
    start = ds - timedelta(days=cfg.max_window - 1)
    activity_rows = lakehouse.read(
        DAILY_ACTIVITY, partitions=[("activity_date", ">=", start), ("activity_date", "<=", ds)]
    )
    windows = window_aggregates(activity_rows, cfg, ds)
    features = compute_features(
        scoring_base(ctx), windows, latest_predictions(ctx, cfg), cfg, ds, history_days(ctx, cfg.max_window)
    )
    features = features.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        unavailable = unavailable_sources(ctx) - {ML_SOURCE}  # a missed delivery matters once stale
        if stale_predictions(ctx, cfg):
            unavailable.add(ML_SOURCE)
        degraded = degraded_features(cfg, ctx.settings.metrics, unavailable, ctx.settings.ingest.profile_source)
        scored = compute_scores(features, percentile_cuts(features, cfg), cfg, ds, degraded, sorted(unavailable))
        lakehouse.write(
            with_nullable_nesting(features_snapshot(features, cfg, ds)),
            BEHAVIOR_FEATURES,
            partition_by=["score_date"],
            replace_where={"score_date": ds},
        )
        with scoped_sql_conf(ctx.spark, JIT_SIZED_CODE):  # five breakdown maps in one projection
            result = lakehouse.write(
                with_nullable_nesting(scored),
                BEHAVIOR_SCORES,
                partition_by=["score_date"],
                replace_where={"score_date": ds},
            )
    finally:
        features.unpersist()
    return {
        "subscribers": result.rows_added,
        "config_version": cfg.config_version,
        "degraded_sources": sorted(unavailable),
    }


def unavailable_sources(ctx: RunContext) -> set[str]:
    """Sources the metrics need that are not configured (or not active), and sources whose
    ingest failed, was missing or held back on the run date."""
    settings = ctx.settings
    configured = {name for name, source in settings.sources.items() if source.active}
    absent = unconfigured_sources(settings.metrics, configured, settings.ingest.profile_source)
    if not ctx.lakehouse.exists(PIPELINE_RUNS):
        return absent
    runs = ctx.lakehouse.read(PIPELINE_RUNS, partitions=[("run_ds", "=", ctx.ds)])
    rows = runs.filter((F.col("stage") == "ingest") & F.col("status").isin(*UNAVAILABLE)).select("source").collect()
    return absent | {r.source for r in rows}  # one row per configured source at most


def latest_predictions(ctx: RunContext, cfg: ScoringConfig) -> DataFrame | None:
    """The newest prediction per subscriber at most ml.max_age_days old (later loads win a tie)."""
    if not ctx.lakehouse.exists(cfg.ml_table):
        return None
    newest = F.struct("ds", "loaded_ds", "model_name")
    columns = ("churn_probability", "risk_score", "nbo_offer_id", "nbo_score", "model_version")
    return fresh_predictions(ctx, cfg).groupBy("subscriber_id").agg(*[F.max_by(c, newest).alias(c) for c in columns])


def fresh_predictions(ctx: RunContext, cfg: ScoringConfig) -> DataFrame:
    """Predictions for the last ml.max_age_days days, as loaded by the run date: a rerun of a
    past date does not see a delivery loaded after it."""
    window = [("ds", ">=", ctx.ds - timedelta(days=cfg.ml_max_age_days)), ("ds", "<=", ctx.ds)]
    return ctx.lakehouse.read(cfg.ml_table, partitions=window).filter(F.col("loaded_ds") <= F.lit(ctx.ds))


def stale_predictions(ctx: RunContext, cfg: ScoringConfig) -> bool:
    """True when no prediction day within ml.max_age_days of the run date was loaded by then."""
    days = ctx.lakehouse.partition_values(cfg.ml_table, "ds")
    if newest_fresh_date(days, ctx.ds, cfg.ml_max_age_days) is None:
        return True
    if not later_days_ran(ctx.lakehouse, ctx.ds):
        return False  # every delivery so far was loaded on or before the run date
    return fresh_predictions(ctx, cfg).limit(1).count() == 0  # a rerun: only what was loaded by then


def history_days(ctx: RunContext, window: int) -> int:
    """Days of daily_activity available up to the run date, capped by the longest window."""
    dates = [d for d in ctx.lakehouse.partition_values(DAILY_ACTIVITY, "activity_date") if d <= ctx.ds.isoformat()]
    if not dates:
        return 1
    return min(window, (ctx.ds - date.fromisoformat(min(dates))).days + 1)
