"""Pipeline stages: the I/O around the pure transformations, one function per stage.

Each stage reads what earlier stages wrote for the run date, writes its own tables replacing
exactly that date's rows, and returns a small summary for the run log.
"""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs import quality
from jobs.badges import BADGE_MISSIONS, BadgeType, award, held_levels, load_badges, not_awarded_later
from jobs.badges import catalog_rows as catalog_badges
from jobs.campaigns import CampaignSettings, audiences, triggers
from jobs.config import Config
from jobs.context import PipelineError, RunContext
from jobs.exports import ExportSettings, audience_changes, export_files, export_jdbc, state_changes, with_identifier
from jobs.frames import with_nullable_nesting
from jobs.ingest import (
    IngestContext,
    ShrinkGuard,
    SourceResult,
    file_rejects,
    known_subscribers,
    record_runs,
    run_ingest,
)
from jobs.lifetime import LifetimeMetric, advance, load_lifetime_metrics
from jobs.lifetime import metric_names as lifetime_names
from jobs.lifetime import values as lifetime_values
from jobs.loyalty import CAPPED, LoyaltySettings, balances, earnings, expiries, ledger_entries, tiers, with_budgets
from jobs.metrics import MetricRegistry, daily_activity
from jobs.missions import MissionSettings, assign, baselines, candidates, catalog_frame, eligibility_names, with_holdout
from jobs.offers import OfferCatalogue
from jobs.predictions import (
    PredictionContract,
    classify_predictions,
    newest_fresh_date,
    to_prediction_rejects,
    to_predictions,
)
from jobs.predictions import counts as prediction_counts
from jobs.profiles import profile_as_of
from jobs.progress import prior_completions, track
from jobs.scoring import (
    ML_SOURCE,
    PLAN_CHANGE_DAYS,
    ScoringConfig,
    compute_features,
    compute_scores,
    degraded_features,
    features_snapshot,
    percentile_cuts,
    unconfigured_sources,
    window_aggregates,
)
from jobs.segments import SegmentRules, assign_segments
from jobs.sources import SourceError, conform, list_extract_files, read_extract, render_template, template_values
from jobs.subscriber_state import (
    RECENT_DAYS,
    active_missions,
    badges_held,
    carried_forward,
    changed_subscribers,
    expiring_points,
    recent_completions,
    shown_profile,
    subscriber_state,
    tier_ladder,
    with_next_tier,
)
from jobs.tables import (
    BADGE_AWARDS,
    BADGE_CATALOG,
    BEHAVIOR_FEATURES,
    BEHAVIOR_SCORES,
    CAMPAIGN_AUDIENCES,
    CAMPAIGN_TRIGGERS,
    DAILY_ACTIVITY,
    EVENTS,
    EVENTS_REJECTED,
    EXPORT_RUNS,
    LOYALTY_LEDGER,
    LOYALTY_TIERS,
    MISSION_ASSIGNMENTS,
    MISSION_CATALOG,
    MISSION_PROGRESS,
    ML_PREDICTIONS,
    PIPELINE_RUNS,
    SUBSCRIBER_LIFETIME,
    SUBSCRIBER_SEGMENTS,
    SUBSCRIBER_STATE,
    schema_of,
)
from jobs.templates import CATEGORIES, TemplateSet, catalog_rows, load_mission_metrics, load_templates

log = logging.getLogger(__name__)

UNAVAILABLE = ("failed", "missing", "degraded", "held")  # ingest statuses that leave a source without data


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
    guard = ShrinkGuard.from_config(config.get("ingest.shrink_guard"))
    results = run_ingest(ctx.lakehouse, ctx.sources(), ingest_ctx, ctx.raw_root, lookback, guard)
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


def profile_source(ctx: RunContext) -> str:
    """The source whose snapshot feeds subscriber_profile (and so the profile features)."""
    return str(ctx.config.get("ingest.profile_source", "crm_subscribers"))


def unavailable_sources(ctx: RunContext) -> set[str]:
    """Sources the metrics need that are not configured (or not active), and sources whose
    ingest failed, was missing or held back on the run date."""
    configured = {name for name, spec in ctx.config.sources.items() if spec.get("active", True)}
    absent = unconfigured_sources(metric_registry(ctx), configured, profile_source(ctx))
    if not ctx.lakehouse.exists(PIPELINE_RUNS):
        return absent
    runs = ctx.lakehouse.read(PIPELINE_RUNS, partitions=[("run_ds", "=", ctx.ds)])
    rows = runs.filter((F.col("stage") == "ingest") & F.col("status").isin(*UNAVAILABLE)).select("source").collect()
    return absent | {r.source for r in rows}  # one row per configured source at most


def scoring_base(ctx: RunContext) -> DataFrame:
    """Known subscribers with their profile and the plan they had PLAN_CHANGE_DAYS earlier."""
    lookback = ctx.config.get("ingest.subscriber_lookback_days", 7)
    profile = profile_as_of(ctx.lakehouse, ctx.ds, lookback)
    if profile is None:
        raise PipelineError(f"no subscriber_profile snapshot within {lookback} days before {ctx.ds}: run ingest first")
    base = profile.drop("snapshot_date")
    earlier = profile_as_of(ctx.lakehouse, ctx.ds - timedelta(days=PLAN_CHANGE_DAYS), lookback)
    if earlier is None:
        return base.withColumn("plan_code_90d_ago", F.lit(None).cast("string"))
    return base.join(
        earlier.select("subscriber_id", F.col("plan_code").alias("plan_code_90d_ago")), "subscriber_id", "left"
    )


def latest_predictions(ctx: RunContext, cfg: ScoringConfig) -> DataFrame | None:
    """The newest prediction per subscriber at most ml.max_age_days old (later loads win a tie)."""
    if not ctx.lakehouse.exists(cfg.ml_table):
        return None
    window = [("ds", ">=", ctx.ds - timedelta(days=cfg.ml_max_age_days)), ("ds", "<=", ctx.ds)]
    predictions = ctx.lakehouse.read(cfg.ml_table, partitions=window).filter(F.col("loaded_ds") <= F.lit(ctx.ds))
    newest = F.struct("ds", "loaded_ds", "model_name")
    columns = ("churn_probability", "risk_score", "nbo_offer_id", "nbo_score", "model_version")
    return predictions.groupBy("subscriber_id").agg(*[F.max_by(c, newest).alias(c) for c in columns])


def stale_predictions(ctx: RunContext, cfg: ScoringConfig) -> bool:
    """True when no prediction day within ml.max_age_days of the run date was loaded."""
    days = ctx.lakehouse.partition_values(cfg.ml_table, "ds")
    return newest_fresh_date(days, ctx.ds, cfg.ml_max_age_days) is None


def predictions(ctx: RunContext) -> dict[str, Any]:
    """The data-science team's dated delivery -> ml_predictions, quarantine and accounting.
    An operator without conf/ml_predictions.yaml has no such delivery: nothing to load."""
    path = ctx.conf_path("ml_predictions.yaml")
    if not path.exists():
        return {"status": "not_configured", "read": 0, "accepted": 0}
    contract = PredictionContract.load(path)
    source, ds = contract.source, ctx.ds
    if not contract.active:
        result = SourceResult(source.name, "inactive", message="source is not active")
    else:
        try:
            result = load_predictions(ctx, contract)
        except SourceError as exc:
            log.warning("ml predictions for %s: %s", ds, exc)
            result = SourceResult(source.name, "missing", message=str(exc))
    record_runs(ctx.lakehouse, "ingest", ds, [result])  # accounted like any ingested source
    return {"status": result.status, "read": result.rows_read, "accepted": result.rows_accepted}


def load_predictions(ctx: RunContext, contract: PredictionContract) -> SourceResult:
    started = time.monotonic()
    source, ds, lakehouse = contract.source, ctx.ds, ctx.lakehouse
    extract = read_extract(ctx.spark, source, ds, ctx.raw_root)
    conformed = conform(extract.rows, source)
    file_lines = sum(r.lines for r in extract.rejected_files)  # files set aside whole: their lines are rejected
    known = known_subscribers(lakehouse, ds, ctx.config.get("ingest.subscriber_lookback_days", 7))
    classified = classify_predictions(
        conformed, source.columns, ds, contract.max_lateness_days, known, offer_catalogue(ctx).ids
    ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n = prediction_counts(classified)
        lakehouse.write(
            to_predictions(classified, ds), ML_PREDICTIONS, partition_by=["ds"], replace_where={"loaded_ds": ds}
        )
        rejects = to_prediction_rejects(classified, source.columns, source.name, ds)
        if extract.rejected_files:
            batch = IngestContext(ds, str(ctx.config.get("operator.timezone")), "", "")
            rejects = rejects.unionByName(file_rejects(ctx.spark, extract.rejected_files, source, batch))
        lakehouse.write(
            rejects,
            EVENTS_REJECTED,
            partition_by=["ingest_date"],
            replace_where={"ingest_date": ds, "source": source.name},
        )
    finally:
        classified.unpersist()
    return SourceResult(
        source.name,
        "succeeded",
        rows_read=n["read"] + file_lines,
        rows_accepted=n["accepted"],
        rows_rejected=n["rejected"] + file_lines,
        rows_duplicate=n["duplicate"],
        duration_s=round(time.monotonic() - started, 3),
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
        unavailable = unavailable_sources(ctx) - {ML_SOURCE}  # a missed delivery matters once stale
        if stale_predictions(ctx, cfg):
            unavailable.add(ML_SOURCE)
        degraded = degraded_features(cfg, metric_registry(ctx), unavailable, profile_source(ctx))
        scored = compute_scores(features, percentile_cuts(features, cfg), cfg, ds, degraded, sorted(unavailable))
        lakehouse.write(
            with_nullable_nesting(features_snapshot(features, cfg, ds)),
            BEHAVIOR_FEATURES,
            partition_by=["score_date"],
            replace_where={"score_date": ds},
        )
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
    """Load and validate the mission templates against metrics, segments, names, badges and offers."""
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
        offer_catalogue(ctx).ids,
    )


def offer_catalogue(ctx: RunContext | Config) -> OfferCatalogue:
    return OfferCatalogue.load(_conf_dir(ctx) / "offers.yaml")


def scored_subjects(ctx: RunContext, settings: MissionSettings | None = None) -> DataFrame:
    """One row per subscriber scored on the run date: scores, ML columns, segment, features,
    profile and the holdout flag."""
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
    subjects = (
        scored.join(segment, "subscriber_id", "left")
        .join(features, "subscriber_id", "left")
        .join(profile, "subscriber_id", "left")
    )
    return with_holdout(subjects, settings or mission_settings(ctx))


def mission_subjects(ctx: RunContext, templates: TemplateSet, settings: MissionSettings) -> DataFrame:
    """Scored subjects with a segment, plus their baselines of every mission metric in use."""
    lakehouse, ds = ctx.lakehouse, ctx.ds
    start = ds - timedelta(days=settings.baseline_days - 1)
    activity_rows = lakehouse.read(
        DAILY_ACTIVITY, partitions=[("activity_date", ">=", start), ("activity_date", "<=", ds)]
    )
    used = sorted({t.metric for t in templates.templates})
    usual = baselines(activity_rows, [templates.metrics[m] for m in used], ds, settings.baseline_days)
    subjects = scored_subjects(ctx, settings).filter(F.col("segment").isNotNull())
    return subjects.join(usual, "subscriber_id", "left")


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
    window = [
        ("assigned_ds", ">=", ds - timedelta(days=settings.lookback_days(templates.templates))),
        ("assigned_ds", "<", ds),
    ]
    if lakehouse.exists(MISSION_ASSIGNMENTS):
        previous = lakehouse.read(MISSION_ASSIGNMENTS, partitions=window)
        previous = previous.join(completed_by(ctx, ds - timedelta(days=1)), "assignment_id", "left")
    else:
        previous = ctx.spark.createDataFrame(
            [], "subscriber_id string, template_id string, period_end date, cooldown_days int"
        )
    if active_templates:
        assigned = assign(
            candidates(subjects, active_templates, templates.metrics, settings, ds), previous, settings, ds
        )
    else:  # no template runs today: nothing to assign (and no empty array of candidates to expand)
        assigned = ctx.spark.createDataFrame([], schema_of(MISSION_ASSIGNMENTS))
    result = lakehouse.write(
        assigned, MISSION_ASSIGNMENTS, partition_by=["assigned_ds"], replace_where={"assigned_ds": ds}
    )
    return {"catalog_missions": len(rows), "templates": len(active_templates), "assignments": result.rows_added}


def completed_by(ctx: RunContext, day: date) -> DataFrame:
    """Assignments whose mission was completed by `day` (from that day's mission_progress)."""
    progress = ctx.lakehouse.read_or_empty(
        MISSION_PROGRESS, schema_of(MISSION_PROGRESS), partitions=[("progress_ds", "=", day)]
    )
    return progress.filter(F.col("status") == "completed").select("assignment_id", F.lit(True).alias("completed"))


def _read_day(ctx: RunContext, table: str, column: str, day: date | None = None) -> DataFrame:
    """One day's partition of a table, or an empty frame of its schema when the table is new."""
    return ctx.lakehouse.read_or_empty(table, schema_of(table), partitions=[(column, "=", day or ctx.ds)])


def _latest_before(ctx: RunContext, table: str, column: str) -> date | None:
    """The newest partition date of `table` before the run date (the state a run folds from)."""
    earlier = [d for d in ctx.lakehouse.partition_values(table, column) if d < ctx.ds.isoformat()]
    return date.fromisoformat(max(earlier)) if earlier else None


def progress(ctx: RunContext) -> dict[str, Any]:
    """Live mission_assignments x daily_activity -> mission_progress for the run date."""
    settings = mission_settings(ctx)
    metrics = load_mission_metrics(ctx.conf_path("metrics.yaml"))
    lakehouse, ds = ctx.lakehouse, ctx.ds
    longest = max(settings.period_days.values()) + 1
    window = [("assigned_ds", ">=", ds - timedelta(days=longest)), ("assigned_ds", "<=", ds)]
    assignments = lakehouse.read_or_empty(MISSION_ASSIGNMENTS, schema_of(MISSION_ASSIGNMENTS), partitions=window)
    activity_rows = lakehouse.read(
        DAILY_ACTIVITY, partitions=[("activity_date", ">=", ds - timedelta(days=longest)), ("activity_date", "<=", ds)]
    )
    earlier = lakehouse.read_or_empty(
        MISSION_PROGRESS,
        schema_of(MISSION_PROGRESS),
        partitions=[("progress_ds", ">=", ds - timedelta(days=longest)), ("progress_ds", "<=", ds)],
    )
    # completions recorded so far, materialised before this date's rows are replaced
    recorded = prior_completions(earlier, ds).localCheckpoint()
    rows = track(assignments, activity_rows, recorded, metrics, ds)
    result = lakehouse.write(rows, MISSION_PROGRESS, partition_by=["progress_ds"], replace_where={"progress_ds": ds})
    counts = {
        r.status: r.n
        for r in _read_day(ctx, MISSION_PROGRESS, "progress_ds")
        .groupBy("status")
        .agg(F.count("*").alias("n"))
        .collect()
    }  # one row per status
    return {"rows": result.rows_added, **counts}


def lifetime_snapshot(ctx: RunContext, metrics: dict[str, LifetimeMetric], badge_ids: list[str]) -> DataFrame:
    """Fold the days since the previous snapshot into subscriber_lifetime for the run date;
    completed missions count per category and toward the badge their template names."""
    lakehouse, ds = ctx.lakehouse, ctx.ds
    lateness = ctx.config.get("ingest.max_lateness_days", 7)
    settled_through = ds - timedelta(days=lateness)
    previous = _latest_before(ctx, SUBSCRIBER_LIFETIME, "stats_date")
    completions = lakehouse.read_or_empty(MISSION_PROGRESS, schema_of(MISSION_PROGRESS))
    if previous is None:
        state = None
        settling = [("activity_date", "<=", settled_through)]
        completions = completions.filter(F.col("progress_ds") <= F.lit(ds))
    else:
        state = lakehouse.read(SUBSCRIBER_LIFETIME, partitions=[("stats_date", "=", previous)]).select(
            "subscriber_id", F.col("settled").alias("state")
        )
        settling = [
            ("activity_date", ">", previous - timedelta(days=lateness)),
            ("activity_date", "<=", settled_through),
        ]
        completions = completions.filter((F.col("progress_ds") > F.lit(previous)) & (F.col("progress_ds") <= F.lit(ds)))
    linked = {t.id: t.badge for t in template_set(ctx).templates}
    badge_of = F.create_map(*[F.lit(v) for pair in sorted(linked.items()) for v in pair])
    completions = completions.filter(F.col("newly_completed")).select(
        "subscriber_id", "category", F.element_at(badge_of, F.col("template_id")).alias("badge")
    )
    settled = advance(
        state, lakehouse.read(DAILY_ACTIVITY, partitions=settling), completions, metrics, CATEGORIES, badge_ids
    )
    settled = settled.localCheckpoint()
    recent = lakehouse.read(
        DAILY_ACTIVITY, partitions=[("activity_date", ">", settled_through), ("activity_date", "<=", ds)]
    )
    full = advance(settled, recent, None, metrics, CATEGORIES, badge_ids).withColumnRenamed("state", "_full")
    snapshot = full.join(settled.withColumnRenamed("state", "settled"), "subscriber_id", "left").select(
        "subscriber_id",
        "settled",
        F.lit(settled_through).alias("settled_through"),
        lifetime_values(F.col("_full"), metrics, CATEGORIES, ds, badge_ids).alias("metrics"),
        F.lit(ds).alias("stats_date"),
    )
    lakehouse.write(
        with_nullable_nesting(snapshot),
        SUBSCRIBER_LIFETIME,
        partition_by=["stats_date"],
        replace_where={"stats_date": ds},
    )
    return _read_day(ctx, SUBSCRIBER_LIFETIME, "stats_date")


def badge_types(ctx: RunContext | Config) -> list[BadgeType]:
    cfg = scoring_config(ctx)
    conf_dir = _conf_dir(ctx)
    metrics = load_lifetime_metrics(conf_dir / "metrics.yaml", metric_registry(ctx).names)
    names = [
        *eligibility_names(list(cfg.scores), cfg.feature_names),
        *lifetime_names(metrics, CATEGORIES),
        BADGE_MISSIONS,
    ]
    return load_badges(conf_dir.parent / mission_settings(ctx).badges_dir, names)


def badges(ctx: RunContext) -> dict[str, Any]:
    """daily_activity + completions -> subscriber_lifetime; rules -> badge_catalog, badge_awards."""
    lakehouse, ds = ctx.lakehouse, ctx.ds
    types = badge_types(ctx)
    metrics = load_lifetime_metrics(ctx.conf_path("metrics.yaml"), metric_registry(ctx).names)
    levels = catalog_badges(types)
    catalog = ctx.spark.createDataFrame([(*row.values(), ds) for row in levels], schema_of(BADGE_CATALOG)).coalesce(1)
    lakehouse.write(catalog, BADGE_CATALOG, partition_by=["catalog_date"], replace_where={"catalog_date": ds})
    badge_ids = [t.id for t in types]
    names = lifetime_names(metrics, CATEGORIES, badge_ids)
    lifetime = lifetime_snapshot(ctx, metrics, badge_ids).select(
        "subscriber_id", *[F.col("metrics").getItem(n).alias(n) for n in names]
    )
    subjects = scored_subjects(ctx).join(lifetime, "subscriber_id", "left").fillna(0.0, subset=names)
    earlier = lakehouse.read_or_empty(BADGE_AWARDS, schema_of(BADGE_AWARDS)).filter(F.col("awarded_ds") != F.lit(ds))
    earlier = earlier.select("subscriber_id", "badge_id", "badge_type", "level_rank", "awarded_ds").localCheckpoint()
    new = not_awarded_later(award(subjects, held_levels(earlier, ds), types, ds), earlier, ds)
    result = lakehouse.write(new, BADGE_AWARDS, partition_by=["awarded_ds"], replace_where={"awarded_ds": ds})
    return {"catalog_badges": len(levels), "awards": result.rows_added}


def loyalty_settings(ctx: RunContext | Config) -> LoyaltySettings:
    return LoyaltySettings.load(_conf_dir(ctx) / "loyalty.yaml", list(scoring_config(ctx).scores))


def loyalty(ctx: RunContext) -> dict[str, Any]:
    """Completions and badge awards -> loyalty_ledger; balances and scores -> loyalty_tiers."""
    settings = loyalty_settings(ctx)
    lakehouse, ds = ctx.lakehouse, ctx.ds
    earned = earnings(
        _read_day(ctx, MISSION_PROGRESS, "progress_ds"), _read_day(ctx, BADGE_AWARDS, "awarded_ds"), settings, ds
    )
    if settings.points_expiry_days:
        earned_then = _read_day(ctx, LOYALTY_LEDGER, "entry_ds", ds - timedelta(days=settings.points_expiry_days))
        earned = earned.unionByName(expiries(earned_then, ds))
    nearby = [("entry_ds", ">=", ds - timedelta(days=62)), ("entry_ds", "<=", ds + timedelta(days=62))]
    recorded = lakehouse.read_or_empty(LOYALTY_LEDGER, schema_of(LOYALTY_LEDGER), partitions=nearby)
    entries = with_budgets(
        ledger_entries(earned, recorded.select("entry_id", "entry_ds").localCheckpoint(), ds),
        _read_day(ctx, SUBSCRIBER_SEGMENTS, "segment_date"),
        settings.budgets,
    )
    written = lakehouse.write(entries, LOYALTY_LEDGER, partition_by=["entry_ds"], replace_where={"entry_ds": ds})
    capped = _read_day(ctx, LOYALTY_LEDGER, "entry_ds").filter(F.col("status") == CAPPED).count()

    previous = _latest_before(ctx, LOYALTY_TIERS, "tier_ds")
    if previous is None:
        moved = lakehouse.read(LOYALTY_LEDGER, partitions=[("entry_ds", "<=", ds)])
        before = None
    else:
        moved = lakehouse.read(LOYALTY_LEDGER, partitions=[("entry_ds", ">", previous), ("entry_ds", "<=", ds)])
        before = _read_day(ctx, LOYALTY_TIERS, "tier_ds", previous)
    scores_today = lakehouse.read(BEHAVIOR_SCORES, partitions=[("score_date", "=", ds)]).select(
        "subscriber_id", *scoring_config(ctx).scores
    )
    subjects = with_holdout(scores_today, mission_settings(ctx))
    tier_rows = tiers(subjects, balances(before, moved), before, settings, ds)
    result = lakehouse.write(tier_rows, LOYALTY_TIERS, partition_by=["tier_ds"], replace_where={"tier_ds": ds})
    return {"ledger_entries": written.rows_added, "capped_entries": capped, "subscribers_tiered": result.rows_added}


def campaigns(ctx: RunContext) -> dict[str, Any]:
    """The run date's assignments, completions, awards, tier changes and score moves ->
    campaign_triggers; configured audiences -> campaign_audiences."""
    cfg = scoring_config(ctx)
    lakehouse, ds = ctx.lakehouse, ctx.ds
    names = [*eligibility_names(list(cfg.scores), cfg.feature_names), "tier", "points_balance"]
    settings = CampaignSettings.load(ctx.conf_path("campaigns.yaml"), list(cfg.scores), names)
    tier_rows = _read_day(ctx, LOYALTY_TIERS, "tier_ds")
    subjects = scored_subjects(ctx).join(
        tier_rows.select("subscriber_id", "tier", "points_balance"), "subscriber_id", "left"
    )
    score_pairs = subjects.select("subscriber_id", "holdout", *cfg.scores)
    previous_day = _latest_before(ctx, BEHAVIOR_SCORES, "score_date")
    if previous_day is None:  # first scoring day: nothing to cross from
        score_pairs = score_pairs.limit(0)
    before = lakehouse.read(BEHAVIOR_SCORES, partitions=[("score_date", "=", previous_day or ds)]).select(
        "subscriber_id", *[F.col(s).alias(f"prev_{s}") for s in cfg.scores]
    )
    score_pairs = score_pairs.join(before, "subscriber_id")
    longest = max(mission_settings(ctx).period_days.values()) + 1
    assignment_offers = lakehouse.read_or_empty(
        MISSION_ASSIGNMENTS,
        schema_of(MISSION_ASSIGNMENTS),
        partitions=[("assigned_ds", ">=", ds - timedelta(days=longest)), ("assigned_ds", "<=", ds)],
    ).select("assignment_id", "offer_id")
    rows = triggers(
        _read_day(ctx, MISSION_ASSIGNMENTS, "assigned_ds"),
        _read_day(ctx, MISSION_PROGRESS, "progress_ds"),
        _read_day(ctx, BADGE_AWARDS, "awarded_ds"),
        tier_rows,
        score_pairs,
        settings,
        ds,
        assignment_offers,
        offer_catalogue(ctx).frame(ctx.spark),
        segments=_read_day(ctx, SUBSCRIBER_SEGMENTS, "segment_date"),
        segment_grants=loyalty_settings(ctx).budgets.segment_offer_grants,
    )
    result = lakehouse.write(
        with_nullable_nesting(rows), CAMPAIGN_TRIGGERS, partition_by=["trigger_ds"], replace_where={"trigger_ds": ds}
    )
    members = lakehouse.write(
        audiences(subjects, settings, ds),
        CAMPAIGN_AUDIENCES,
        partition_by=["audience_ds"],
        replace_where={"audience_ds": ds},
    )
    return {"triggers": result.rows_added, "audience_members": members.rows_added}


def state(ctx: RunContext) -> dict[str, Any]:
    """Scores, segments, live missions, completions, badges, ledger and tiers -> subscriber_state,
    recomputing only the subscribers whose state can have changed since the previous state day
    (jobs.subscriber_state: the incremental rule); the others carry their previous row."""
    lakehouse, ds = ctx.lakehouse, ctx.ds
    settings = mission_settings(ctx)
    loyalty_conf = loyalty_settings(ctx)
    cfg = scoring_config(ctx)
    subjects = with_holdout(
        lakehouse.read(BEHAVIOR_SCORES, partitions=[("score_date", "=", ds)])
        .select("subscriber_id", *cfg.scores)
        .join(
            _read_day(ctx, SUBSCRIBER_SEGMENTS, "segment_date").select("subscriber_id", "segment"),
            "subscriber_id",
            "left",
        ),
        settings,
    )
    tier_rows = with_next_tier(_read_day(ctx, LOYALTY_TIERS, "tier_ds"), tier_ladder(loyalty_conf.tiers))
    previous_day = _latest_before(ctx, SUBSCRIBER_STATE, "state_ds")
    full = previous_day is None or bool(ctx.config.get("subscriber_state.full_refresh", False))
    since = ds if full else previous_day  # progress rows read from (since - RECENT_DAYS, ds]
    longest = max(settings.period_days.values()) + RECENT_DAYS + 1
    assignments = lakehouse.read_or_empty(
        MISSION_ASSIGNMENTS,
        schema_of(MISSION_ASSIGNMENTS),
        partitions=[("assigned_ds", ">=", ds - timedelta(days=longest)), ("assigned_ds", "<=", ds)],
    )
    progress_rows = lakehouse.read_or_empty(
        MISSION_PROGRESS,
        schema_of(MISSION_PROGRESS),
        partitions=[("progress_ds", ">", since - timedelta(days=RECENT_DAYS)), ("progress_ds", "<=", ds)],
    )
    awards = lakehouse.read_or_empty(BADGE_AWARDS, schema_of(BADGE_AWARDS), partitions=[("awarded_ds", "<=", ds)])
    earliest = ds - timedelta(days=loyalty_conf.points_expiry_days or 36500)
    ledger = lakehouse.read_or_empty(
        LOYALTY_LEDGER, schema_of(LOYALTY_LEDGER), partitions=[("entry_ds", ">=", earliest), ("entry_ds", "<=", ds)]
    )
    previous = None if previous_day is None else _read_day(ctx, SUBSCRIBER_STATE, "state_ds", previous_day)
    keys, carried, reasons = None, None, {}
    if not full:
        profile = shown_profile(subjects, tier_rows)
        why = changed_subscribers(
            profile,
            previous,
            progress_rows.filter(F.col("progress_ds") == F.lit(ds)),
            progress_rows.filter(F.col("progress_ds") == F.lit(previous_day)),
            _read_day(ctx, MISSION_ASSIGNMENTS, "assigned_ds"),
            progress_rows,
            awards,
            ledger,
            ds,
            previous_day,
        ).localCheckpoint()  # used to restrict every input, and counted
        reasons = {r.reason: r.n for r in why.groupBy("reason").agg(F.count("*").alias("n")).collect()}  # <= 6 rows
        keys = why.select("subscriber_id").distinct()
        carried = carried_forward(previous, profile, keys, ds)

    def only_changed(df: DataFrame) -> DataFrame:
        return df if keys is None else df.join(keys, "subscriber_id", "left_semi")

    recent = progress_rows.filter(F.col("progress_ds") > F.lit(ds - timedelta(days=RECENT_DAYS)))
    rows = subscriber_state(
        only_changed(subjects),
        active_missions(only_changed(recent.filter(F.col("progress_ds") == F.lit(ds))), assignments),
        recent_completions(only_changed(recent), assignments),
        badges_held(only_changed(awards)),
        expiring_points(only_changed(ledger), ds),
        only_changed(tier_rows),
        previous,
        ds,
    )
    if carried is not None:
        rows = rows.unionByName(carried)
    if previous is not None:
        rows = rows.localCheckpoint()  # the previous day's rows are read before any write
    result = lakehouse.write(
        with_nullable_nesting(rows), SUBSCRIBER_STATE, partition_by=["state_ds"], replace_where={"state_ds": ds}
    )
    written = _read_day(ctx, SUBSCRIBER_STATE, "state_ds")
    changed = written.filter(F.col("changed")).count()
    recomputed = result.rows_added if keys is None else keys.count()
    summary = {
        "mode": "full" if full else "incremental",
        "previous_state_ds": previous_day.isoformat() if previous_day else None,
        "subscribers": result.rows_added,
        "recomputed": recomputed,
        "carried": result.rows_added - recomputed,
        "changed": changed,
        "reasons": dict(sorted(reasons.items())),
    }
    log.info("subscriber_state %s: %s", ds, summary)
    return summary


def export_settings(ctx: RunContext | Config) -> ExportSettings:
    config = ctx.config if isinstance(ctx, RunContext) else ctx
    return ExportSettings.load(_conf_dir(ctx) / "exports.yaml", config.get("exports.consumers") or {})


def exports(ctx: RunContext) -> dict[str, Any]:
    """The run date's changed subscriber_state rows, triggers, audience changes and ledger
    entries -> one delivery per active consumer of conf/exports.yaml; export_runs."""
    settings = export_settings(ctx)
    lakehouse, ds = ctx.lakehouse, ctx.ds
    previous_audience_day = _latest_before(ctx, CAMPAIGN_AUDIENCES, "audience_ds")
    before = (
        None
        if previous_audience_day is None
        else _read_day(ctx, CAMPAIGN_AUDIENCES, "audience_ds", previous_audience_day)
    )
    datasets = {
        "subscriber_state": state_changes(_read_day(ctx, SUBSCRIBER_STATE, "state_ds")),
        "campaign_triggers": _read_day(ctx, CAMPAIGN_TRIGGERS, "trigger_ds"),
        "audience_changes": audience_changes(_read_day(ctx, CAMPAIGN_AUDIENCES, "audience_ds"), before, ds),
        "ledger_entries": _read_day(ctx, LOYALTY_LEDGER, "entry_ds"),
    }
    mapping = None
    if any(c.identifier == "msisdn" for c in settings.active):
        path = render_template(settings.mapping_path, template_values(ds, ctx.raw_root))
        if not list_extract_files(path):
            raise PipelineError(f"{settings.file}: msisdn_mapping.path: no MSISDN mapping extract at {path}")
        reader = ctx.spark.read.schema("subscriber_id string, msisdn string")
        mapping = reader.option("header", True).csv(path) if settings.mapping_format == "csv" else reader.parquet(path)
        mapping = mapping.dropDuplicates(["subscriber_id"]).localCheckpoint()
    root = str(ctx.config.get("exports.root", "./exports"))
    records, summary = [], {}
    for consumer in settings.active:
        log.info(
            "export %s for %s: %s via %s, subscriber identifier %s",
            consumer.name,
            ds,
            ", ".join(consumer.datasets),
            consumer.kind,
            consumer.identifier,
        )
        chosen, held = {}, {}
        for name in consumer.datasets:
            leaving, held_back = with_identifier(datasets[name], consumer, mapping)
            chosen[name] = leaving
            held[name] = held_back.count()
            if held[name]:
                log.warning(
                    "export %s %s: %d row(s) without an MSISDN mapping held back", consumer.name, name, held[name]
                )
        if consumer.kind == "files":
            manifest = export_files(root, consumer, chosen, held, ds)
            location = f"{root}/{consumer.name}/{ds.isoformat()}"
            rows = {n: d["rows"] for n, d in manifest["datasets"].items()}
            checksums = {n: ",".join(f["sha256"] for f in d["files"]) for n, d in manifest["datasets"].items()}
        else:
            rows = export_jdbc(ctx.spark, consumer, chosen, ds)
            location, checksums = f"{consumer.table_prefix}*", {}
        summary[consumer.name] = rows
        records += [
            (
                ds,
                consumer.name,
                consumer.kind,
                n,
                consumer.identifier,
                int(rows[n]),
                location,
                checksums.get(n),
                "delivered",
            )
            for n in consumer.datasets
        ]
    lakehouse.write(
        ctx.spark.createDataFrame(records, schema_of(EXPORT_RUNS)).coalesce(1),
        EXPORT_RUNS,
        partition_by=["run_ds"],
        replace_where={"run_ds": ds},
    )
    # the suites of conf/quality.yaml validated by this stage (export_runs): after the gate, a
    # critical failure fails the run once the delivery is made
    after = [name for name, table in quality.quality_spec(ctx).tables.items() if table.validated_by == "exports"]
    if after:
        quality.run_quality(ctx, after)
    return summary
