"""The stages' configuration: each loader parses and validates its conf/ (and templates/) files
into typed settings once per Config.

A Config is one run's view of conf/. The first call of a loader for a Config parses its files;
every later call for the same Config (each stage of the run, the CLI, `config validate`) gets
the object already built, so no stage re-parses a file. A loader that raises is not remembered:
it raises again on the next call. Edited files are seen by a newly loaded Config.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

from jobs.badges import BADGE_MISSIONS, BadgeType, load_badges
from jobs.campaigns import CampaignSettings
from jobs.config import Config
from jobs.context import RunContext
from jobs.exports import ExportSettings
from jobs.lifetime import LifetimeMetric, load_lifetime_metrics
from jobs.lifetime import metric_names as lifetime_names
from jobs.loyalty import LoyaltySettings
from jobs.metrics import MetricRegistry
from jobs.missions import MissionSettings, eligibility_names
from jobs.offers import OfferCatalogue
from jobs.predictions import PredictionContract
from jobs.quality.spec import QualitySpec, load_spec
from jobs.scoring import ScoringConfig
from jobs.segments import SegmentRules
from jobs.templates import CATEGORIES, MissionMetric, TemplateSet, load_mission_metrics, load_templates

__all__ = [
    "DEFAULT_LATENESS_DAYS",
    "DEFAULT_LOOKBACK_DAYS",
    "DEFAULT_PROFILE_SOURCE",
    "badge_types",
    "campaign_settings",
    "conf_dir",
    "config_of",
    "export_settings",
    "lifetime_metrics",
    "loyalty_settings",
    "max_lateness_days",
    "metric_registry",
    "mission_metrics",
    "mission_settings",
    "offer_catalogue",
    "prediction_contract",
    "profile_source",
    "quality_spec",
    "scoring_config",
    "segment_rules",
    "subscriber_lookback_days",
    "template_set",
]

DEFAULT_LATENESS_DAYS = 7  # ingest.max_lateness_days: how late an event may arrive and still count for its day
DEFAULT_LOOKBACK_DAYS = 7  # ingest.subscriber_lookback_days: how old the newest profile snapshot may be
DEFAULT_PROFILE_SOURCE = "crm_subscribers"  # ingest.profile_source: the snapshot behind subscriber_profile

T = TypeVar("T")
_LOADED: dict[int, dict[Hashable, Any]] = {}  # id(Config) -> what its loaders built; dropped with the Config


def config_of(ctx: RunContext | Config) -> Config:
    return ctx.config if isinstance(ctx, RunContext) else ctx


def conf_dir(ctx: RunContext | Config) -> Path:
    return Path(config_of(ctx).conf_dir)


def _once(ctx: RunContext | Config, key: Hashable, load: Callable[[Config], T]) -> T:
    """`load(config)`, built on the first call for this Config and `key`, then remembered."""
    config = config_of(ctx)
    loaded = _LOADED.get(id(config))
    if loaded is None:
        loaded = _LOADED[id(config)] = {}
        weakref.finalize(config, _LOADED.pop, id(config), None)
    if key not in loaded:
        loaded[key] = load(config)
    return loaded[key]


def max_lateness_days(ctx: RunContext | Config) -> int:
    return config_of(ctx).get("ingest.max_lateness_days", DEFAULT_LATENESS_DAYS)


def subscriber_lookback_days(ctx: RunContext | Config) -> int:
    return config_of(ctx).get("ingest.subscriber_lookback_days", DEFAULT_LOOKBACK_DAYS)


def profile_source(ctx: RunContext | Config) -> str:
    """The source whose snapshot feeds subscriber_profile (and so the profile features)."""
    return str(config_of(ctx).get("ingest.profile_source", DEFAULT_PROFILE_SOURCE))


def metric_registry(ctx: RunContext | Config) -> MetricRegistry:
    return _once(ctx, "metrics", lambda c: MetricRegistry.load(conf_dir(c) / "metrics.yaml"))


def scoring_config(ctx: RunContext | Config) -> ScoringConfig:
    return _once(ctx, "scoring", lambda c: ScoringConfig.load(conf_dir(c) / "scoring.yaml", metric_registry(c)))


def segment_rules(ctx: RunContext | Config) -> SegmentRules:
    """conf/segments.yaml, its rules over the scores and features."""

    def load(config: Config) -> SegmentRules:
        cfg = scoring_config(config)
        return SegmentRules.load(conf_dir(config) / "segments.yaml", [*cfg.scores, *cfg.feature_names])

    return _once(ctx, "segments", load)


def mission_settings(ctx: RunContext | Config) -> MissionSettings:
    return _once(ctx, "missions", lambda c: MissionSettings.load(conf_dir(c) / "missions.yaml"))


def mission_metrics(ctx: RunContext | Config) -> dict[str, MissionMetric]:
    """The daily metrics of conf/metrics.yaml that missions may track."""
    return dict(_once(ctx, "mission_metrics", lambda c: load_mission_metrics(conf_dir(c) / "metrics.yaml")))


def lifetime_metrics(ctx: RunContext | Config) -> dict[str, LifetimeMetric]:
    """`lifetime_metrics` of conf/metrics.yaml, over its daily metrics."""

    def load(config: Config) -> dict[str, LifetimeMetric]:
        return load_lifetime_metrics(conf_dir(config) / "metrics.yaml", metric_registry(config).names)

    return dict(_once(ctx, "lifetime_metrics", load))


def offer_catalogue(ctx: RunContext | Config) -> OfferCatalogue:
    return _once(ctx, "offers", lambda c: OfferCatalogue.load(conf_dir(c) / "offers.yaml"))


def template_set(
    ctx: RunContext | Config, settings: MissionSettings | None = None, templates_dir: Path | None = None
) -> TemplateSet:
    """Load and validate the mission templates against metrics, segments, names, badges and offers."""
    config = config_of(ctx)
    if settings is not None and settings is not mission_settings(config):
        return _load_templates(config, settings, templates_dir)  # settings of the caller's own: not remembered
    return _once(config, ("templates", templates_dir), lambda c: _load_templates(c, mission_settings(c), templates_dir))


def _load_templates(config: Config, settings: MissionSettings, templates_dir: Path | None) -> TemplateSet:
    cfg = scoring_config(config)
    root = conf_dir(config).parent
    badges = sorted(p.stem for p in (root / settings.badges_dir).glob("*.yaml")) or None
    return load_templates(
        templates_dir or root / settings.templates_dir,
        mission_metrics(config),
        segment_rules(config).names,
        eligibility_names(list(cfg.scores), cfg.feature_names),
        badges,
        offer_catalogue(config).ids,
    )


def badge_types(ctx: RunContext | Config) -> list[BadgeType]:
    def load(config: Config) -> list[BadgeType]:
        cfg = scoring_config(config)
        names = [
            *eligibility_names(list(cfg.scores), cfg.feature_names),
            *lifetime_names(lifetime_metrics(config), CATEGORIES),
            BADGE_MISSIONS,
        ]
        return load_badges(conf_dir(config).parent / mission_settings(config).badges_dir, names)

    return list(_once(ctx, "badges", load))


def loyalty_settings(ctx: RunContext | Config) -> LoyaltySettings:
    def load(config: Config) -> LoyaltySettings:
        return LoyaltySettings.load(conf_dir(config) / "loyalty.yaml", list(scoring_config(config).scores))

    return _once(ctx, "loyalty", load)


def campaign_settings(ctx: RunContext | Config) -> CampaignSettings:
    """conf/campaigns.yaml, its rules over the scores, features, tier and points balance."""

    def load(config: Config) -> CampaignSettings:
        cfg = scoring_config(config)
        names = [*eligibility_names(list(cfg.scores), cfg.feature_names), "tier", "points_balance"]
        return CampaignSettings.load(conf_dir(config) / "campaigns.yaml", list(cfg.scores), names)

    return _once(ctx, "campaigns", load)


def prediction_contract(ctx: RunContext | Config) -> PredictionContract | None:
    """conf/ml_predictions.yaml, or None for an operator without an ML delivery."""

    def load(config: Config) -> PredictionContract | None:
        path = conf_dir(config) / "ml_predictions.yaml"
        return PredictionContract.load(path) if path.exists() else None

    return _once(ctx, "ml_predictions", load)


def export_settings(ctx: RunContext | Config) -> ExportSettings:
    def load(config: Config) -> ExportSettings:
        return ExportSettings.load(conf_dir(config) / "exports.yaml", config.get("exports.consumers") or {})

    return _once(ctx, "exports", load)


def quality_spec(ctx: RunContext | Config) -> QualitySpec:
    """conf/quality.yaml with the environment's `quality:` overlay."""
    return _once(
        ctx,
        "quality_spec",
        lambda config: load_spec(Path(config.conf_dir) / "quality.yaml", config.get("quality") or {}),
    )
