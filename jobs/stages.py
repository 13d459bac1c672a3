"""Pipeline stages: the I/O around the pure transformations, one function per stage.

Each stage reads what earlier stages wrote for the run date, writes its own tables replacing
exactly that date's rows, and returns a small summary for the run log.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.config import Config
from jobs.context import PipelineError, RunContext
from jobs.ingest import IngestContext, SourceResult, run_ingest
from jobs.metrics import MetricRegistry, daily_activity
from jobs.missions import MissionSettings, assign, baselines, candidates, catalog_frame, eligibility_names, with_holdout
from jobs.profiles import profile_as_of
from jobs.scoring import (
    ScoringConfig,
    compute_features,
    compute_scores,
    degraded_features,
    features_snapshot,
    percentile_cuts,
    window_aggregates,
)
from jobs.segments import SegmentRules, assign_segments
from jobs.tables import (
    BEHAVIOR_FEATURES,
    BEHAVIOR_SCORES,
    DAILY_ACTIVITY,
    EVENTS,
    MISSION_ASSIGNMENTS,
    MISSION_CATALOG,
    PIPELINE_RUNS,
    SUBSCRIBER_SEGMENTS,
)
from jobs.templates import TemplateSet, catalog_rows, load_mission_metrics, load_templates

log = logging.getLogger(__name__)


def ingest(ctx: RunContext) -> list[SourceResult]:
    """Raw extracts of every due source -> events, events_rejected, subscriber_profile."""
    config = ctx.config
    ingest_ctx = IngestContext(
        ds=ctx.ds,
        timezone=config.require("operator.timezone"),
        country_code=str(config.require("operator.country_code")),
        key=config.require("privacy.pseudonymisation_key"),
        max_lateness_days=config.get("ingest.max_lateness_days", 7),
    )
    lookback = config.get("ingest.subscriber_lookback_days", 7)
    results = run_ingest(ctx.lakehouse, ctx.sources(), ingest_ctx, ctx.raw_root, lookback)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise PipelineError("; ".join(f"{r.source}: {r.message}" for r in failed))
    return results


def metric_registry(ctx: RunContext | Config) -> MetricRegistry:
    return MetricRegistry.load(_conf_dir(ctx) / "metrics.yaml")


def scoring_config(ctx: RunContext | Config) -> ScoringConfig:
    return ScoringConfig.load(_conf_dir(ctx) / "scoring.yaml", metric_registry(ctx))


def _conf_dir(ctx: RunContext | Config) -> Path:
    config = ctx.config if isinstance(ctx, RunContext) else ctx
    return Path(config.conf_dir)


def activity(ctx: RunContext) -> dict[str, Any]:
    """events -> daily_activity for the run date and any earlier day that got late events."""
    lakehouse, ds = ctx.lakehouse, ctx.ds
    lateness = ctx.config.get("ingest.max_lateness_days", 7)
    window = [("event_date", ">=", ds - timedelta(days=lateness)), ("event_date", "<=", ds)]
    events = lakehouse.read(EVENTS, partitions=window).filter(F.col("ingest_date") <= F.lit(ds))
    late = [
        r[0]
        for r in events.filter((F.col("ingest_date") == F.lit(ds)) & (F.col("event_date") < F.lit(ds)))
        .select("event_date")
        .distinct()
        .collect()  # at most max_lateness_days dates
    ]
    dates = sorted({ds, *late})
    daily = daily_activity(events.filter(F.col("event_date").isin(dates)), metric_registry(ctx))
    result = lakehouse.write(
        daily, DAILY_ACTIVITY, partition_by=["activity_date"], replace_where={"activity_date": dates}
    )
    return {"dates": [d.isoformat() for d in dates], "rows": result.rows_added}


def unavailable_sources(ctx: RunContext) -> set[str]:
    """Sources whose ingest failed or whose extract was missing on the run date."""
    if not ctx.lakehouse.exists(PIPELINE_RUNS):
        return set()
    runs = ctx.lakehouse.read(PIPELINE_RUNS, partitions=[("run_ds", "=", ctx.ds)])
    rows = (
        runs.filter((F.col("stage") == "ingest") & F.col("status").isin("failed", "missing")).select("source").collect()
    )
    return {r.source for r in rows}  # one row per configured source at most


def scoring_base(ctx: RunContext) -> DataFrame:
    """Known subscribers with their profile and the plan they had 90 days earlier."""
    lookback = ctx.config.get("ingest.subscriber_lookback_days", 7)
    profile = profile_as_of(ctx.lakehouse, ctx.ds, lookback)
    if profile is None:
        raise PipelineError(f"no subscriber_profile snapshot within {lookback} days before {ctx.ds}: run ingest first")
    base = profile.drop("snapshot_date")
    earlier = profile_as_of(ctx.lakehouse, ctx.ds - timedelta(days=90), lookback)
    if earlier is None:
        return base.withColumn("plan_code_90d_ago", F.lit(None).cast("string"))
    return base.join(
        earlier.select("subscriber_id", F.col("plan_code").alias("plan_code_90d_ago")), "subscriber_id", "left"
    )


def latest_predictions(ctx: RunContext, cfg: ScoringConfig) -> DataFrame | None:
    if not ctx.lakehouse.exists(cfg.ml_table):
        return None
    window = [("ds", ">=", ctx.ds - timedelta(days=cfg.ml_max_age_days)), ("ds", "<=", ctx.ds)]
    predictions = ctx.lakehouse.read(cfg.ml_table, partitions=window)
    return predictions.groupBy("subscriber_id").agg(
        *[F.max_by(c, "ds").alias(c) for c in ("churn_probability", "nbo_offer_id", "nbo_score", "model_version")]
    )


def history_days(ctx: RunContext, window: int) -> int:
    """Days of daily_activity available up to the run date, capped by the longest window."""
    dates = [d for d in ctx.lakehouse.partition_values(DAILY_ACTIVITY, "activity_date") if d <= ctx.ds.isoformat()]
    if not dates:
        return 1
    return min(window, (ctx.ds - date.fromisoformat(min(dates))).days + 1)


def scores(ctx: RunContext) -> dict[str, Any]:
    """daily_activity windows + profile + ML -> behavior_features and behavior_scores."""
    cfg = scoring_config(ctx)
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
        unavailable = unavailable_sources(ctx)
        degraded = degraded_features(cfg, metric_registry(ctx), unavailable)
        scored = compute_scores(features, percentile_cuts(features, cfg), cfg, ds, degraded, sorted(unavailable))
        lakehouse.write(
            features_snapshot(features, cfg, ds),
            BEHAVIOR_FEATURES,
            partition_by=["score_date"],
            replace_where={"score_date": ds},
        )
        result = lakehouse.write(scored, BEHAVIOR_SCORES, partition_by=["score_date"], replace_where={"score_date": ds})
    finally:
        features.unpersist()
    return {
        "subscribers": result.rows_added,
        "config_version": cfg.config_version,
        "degraded_sources": sorted(unavailable),
    }


def segments(ctx: RunContext) -> dict[str, Any]:
    """behavior_scores + behavior_features + profile -> subscriber_segments."""
    cfg = scoring_config(ctx)
    rules = SegmentRules.load(ctx.conf_path("segments.yaml"), [*cfg.scores, *cfg.feature_names])
    lakehouse, ds = ctx.lakehouse, ctx.ds
    day = [("score_date", "=", ds)]
    scored = lakehouse.read(BEHAVIOR_SCORES, partitions=day).select("subscriber_id", *cfg.scores)
    features = lakehouse.read(BEHAVIOR_FEATURES, partitions=day).select(
        "subscriber_id", *[F.col("features").getItem(n).alias(n) for n in cfg.feature_names]
    )
    profile = scoring_base(ctx).select("subscriber_id", "payment_type", "plan_code", "status", "age_band", "region")
    joined = scored.join(features, "subscriber_id").join(profile, "subscriber_id", "left")
    result = lakehouse.write(
        assign_segments(joined, rules, ds),
        SUBSCRIBER_SEGMENTS,
        partition_by=["segment_date"],
        replace_where={"segment_date": ds},
    )
    if result.rows_added == 0:
        log.warning("no subscribers segmented for %s", ds)
    return {"subscribers": result.rows_added, "segments_version": rules.version}


def mission_settings(ctx: RunContext | Config) -> MissionSettings:
    return MissionSettings.load(_conf_dir(ctx) / "missions.yaml")


def template_set(
    ctx: RunContext | Config, settings: MissionSettings | None = None, templates_dir: Path | None = None
) -> TemplateSet:
    """Load and validate the mission templates against metrics, segments, names and badges."""
    settings = settings or mission_settings(ctx)
    cfg = scoring_config(ctx)
    conf_dir = _conf_dir(ctx)
    rules = SegmentRules.load(conf_dir / "segments.yaml", [*cfg.scores, *cfg.feature_names])
    root = conf_dir.parent
    badges = sorted(p.stem for p in (root / settings.badges_dir).glob("*.yaml")) or None
    return load_templates(
        templates_dir or root / settings.templates_dir,
        load_mission_metrics(conf_dir / "metrics.yaml"),
        rules.names,
        eligibility_names(list(cfg.scores), cfg.feature_names),
        badges,
    )


def mission_subjects(ctx: RunContext, templates: TemplateSet, settings: MissionSettings) -> DataFrame:
    """One row per scored subscriber: scores, segment, features, profile, baselines, holdout."""
    cfg = scoring_config(ctx)
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
    profile = scoring_base(ctx).select("subscriber_id", "payment_type", "plan_code", "status", "age_band", "region")
    start = ds - timedelta(days=settings.baseline_days - 1)
    activity_rows = lakehouse.read(
        DAILY_ACTIVITY, partitions=[("activity_date", ">=", start), ("activity_date", "<=", ds)]
    )
    used = sorted({t.metric for t in templates.templates})
    usual = baselines(activity_rows, [templates.metrics[m] for m in used], ds, settings.baseline_days)
    subjects = (
        scored.join(segment, "subscriber_id")
        .join(features, "subscriber_id")
        .join(profile, "subscriber_id", "left")
        .join(usual, "subscriber_id", "left")
    )
    return with_holdout(subjects, settings)


def missions(ctx: RunContext) -> dict[str, Any]:
    """Templates -> mission_catalog; eligible subscribers -> mission_assignments."""
    settings = mission_settings(ctx)
    templates = template_set(ctx, settings)
    lakehouse, ds = ctx.lakehouse, ctx.ds
    active_templates = templates.active_on(ds)
    rows = catalog_rows(active_templates, templates.metrics)
    lakehouse.write(
        catalog_frame(ctx.spark, rows, ds).coalesce(1),
        MISSION_CATALOG,
        partition_by=["catalog_date"],
        replace_where={"catalog_date": ds},
    )
    subjects = mission_subjects(ctx, templates, settings)
    window = [("assigned_ds", ">=", ds - timedelta(days=settings.lookback_days)), ("assigned_ds", "<", ds)]
    if lakehouse.exists(MISSION_ASSIGNMENTS):
        previous = lakehouse.read(MISSION_ASSIGNMENTS, partitions=window)
    else:
        previous = ctx.spark.createDataFrame(
            [], "subscriber_id string, template_id string, period_end date, cooldown_days int"
        )
    assigned = assign(candidates(subjects, active_templates, templates.metrics, settings, ds), previous, settings, ds)
    result = lakehouse.write(
        assigned, MISSION_ASSIGNMENTS, partition_by=["assigned_ds"], replace_where={"assigned_ds": ds}
    )
    return {"catalog_missions": len(rows), "templates": len(active_templates), "assignments": result.rows_added}
