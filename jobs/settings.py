"""One run's settings: every conf/ and templates/ file parsed and validated once into a frozen,
typed `Settings` that the run context carries (`ctx.settings`); no stage reads a YAML file.

`load_settings(config)` runs every loader, each with what the loaders before it built (the
metric registry, the scores and features...), collects every problem instead of stopping at
the first (each with its file and, where the loader knows them, line and column) and raises one
SettingsError listing them all. `gamify config validate`, `gamify run` and the DAG's
check_config report that same list (jobs.validation).

A Config is one run's view of conf/: its Settings is built on first use and remembered for it,
so every stage of a run, and every date of a backfill, gets the same object. A load that fails
is not remembered (the next call tries again); edited files are seen by a newly loaded Config.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from jobs.badges import BADGE_MISSIONS, BadgeType, load_badges
from jobs.campaigns import CampaignSettings
from jobs.config import Config, ConfigError, SettingsError
from jobs.exports import ExportSettings
from jobs.ingest import ShrinkGuard, source_problems
from jobs.lifetime import LifetimeMetric, load_lifetime_metrics
from jobs.lifetime import metric_names as lifetime_names
from jobs.loyalty import LoyaltySettings
from jobs.metrics import MetricRegistry
from jobs.missions import MissionSettings, eligibility_names
from jobs.offers import OfferCatalogue
from jobs.orchestration.settings import AirflowSettings
from jobs.predictions import PredictionContract
from jobs.quality.spec import QualitySpec, load_spec
from jobs.scoring import ScoringConfig
from jobs.segments import SegmentRules
from jobs.sources import Source
from jobs.templates import CATEGORIES, MissionMetric, TemplateError, TemplateSet, load_mission_metrics, load_templates

__all__ = ["IngestSettings", "Settings", "SettingsError", "load_settings", "templates_in"]

T = TypeVar("T")

DEFAULT_EXPORTS_ROOT = "./exports"  # exports.root unset: deliveries under the working folder
DEFAULT_PROFILE_SOURCE = "crm_subscribers"  # ingest.profile_source unset: the CRM snapshot source


@dataclass(frozen=True, slots=True)
class IngestSettings:
    """The scalars of the run configuration's `operator:` and `ingest:` blocks the stages use
    (the pseudonymisation key is a secret: it is read where it is used, never kept here)."""

    timezone: str
    """operator.timezone: the operator's local day, to which event times are assigned."""
    country_code: str
    """operator.country_code: digits prefixed to national MSISDNs before pseudonymisation."""
    max_lateness_days: int
    """ingest.max_lateness_days: how late an event may arrive and still count for its day."""
    subscriber_lookback_days: int
    """ingest.subscriber_lookback_days: how old the newest CRM snapshot may be to define the known subscribers."""
    profile_source: str
    """ingest.profile_source: the source whose snapshot feeds subscriber_profile (and the profile features)."""
    shrink_guard: ShrinkGuard
    """ingest.shrink_guard: how far an extract may shrink against the source's last run before it is held."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Every stage's settings for one run, loaded and validated together by `load_settings`."""

    sources: Mapping[str, Source]
    """Every configured source (conf/sources/*.yaml with the environment overlay), compiled and checked."""
    ingest: IngestSettings
    """The operator and ingest scalars of the run configuration."""
    metrics: MetricRegistry
    """conf/metrics.yaml: the daily metrics of daily_activity."""
    mission_metrics: Mapping[str, MissionMetric]
    """conf/metrics.yaml `mission_metrics`: the daily metrics missions may track."""
    lifetime_metrics: Mapping[str, LifetimeMetric]
    """conf/metrics.yaml `lifetime_metrics`: the subscriber_lifetime metrics badge rules may use."""
    scoring: ScoringConfig
    """conf/scoring.yaml: windows, features and scores."""
    segments: SegmentRules
    """conf/segments.yaml: the segment rules over the scores, features and profile."""
    missions: MissionSettings
    """conf/missions.yaml: periods, baselines, holdout, dynamic levels, template and badge folders."""
    offers: OfferCatalogue
    """conf/offers.yaml: the offers mission rewards and campaigns may grant."""
    templates: TemplateSet
    """templates/missions: every mission template, checked against metrics, segments, badges and offers."""
    badges: tuple[BadgeType, ...]
    """templates/badges: every badge type with its levels."""
    loyalty: LoyaltySettings
    """conf/loyalty.yaml: points, budgets, expiry and tiers."""
    campaigns: CampaignSettings
    """conf/campaigns.yaml: trigger crossings and audiences."""
    predictions: PredictionContract | None
    """conf/ml_predictions.yaml, or None for an operator without an ML delivery."""
    exports: ExportSettings
    """conf/exports.yaml with the environment's `exports.consumers`: who receives which dataset, and how."""
    exports_root: str
    """exports.root: the folder file consumers' deliveries are written under."""
    exports_require_gate: bool
    """exports.require_gate: a date no quality gate validated is not exported."""
    quality: QualitySpec
    """conf/quality.yaml with the environment's `quality:` overlay: the suites and their gates."""
    state_full_refresh: bool
    """subscriber_state.full_refresh: recompute every subscriber's state instead of the changed ones."""
    state_max_changed_share: float
    """subscriber_state.max_changed_share: above this share of changed rows on the previous state
    day, a night recomputes every subscriber's state."""
    airflow: AirflowSettings
    """conf/airflow.yaml: the DAG's schedule, policies and stage groups (checked against the pipeline's stages)."""


_LOADED: dict[int, Settings] = {}  # id(Config) -> its Settings; dropped with the Config


def load_settings(config: Config) -> Settings:
    """The Settings of `config`, built on the first call and remembered for that Config; raises
    SettingsError listing every problem of every file (not remembered: a later call retries)."""
    settings = _LOADED.get(id(config))
    if settings is None:
        settings = _build(config)
        _LOADED[id(config)] = settings
        weakref.finalize(config, _LOADED.pop, id(config), None)
    return settings


def templates_in(config: Config, directory: Path) -> TemplateSet:
    """The mission templates of another folder (`gamify templates --dir`), checked against the
    settings of `config` like the configured ones; raises TemplateError listing their problems."""
    settings = load_settings(config)
    return _load_templates(
        config,
        settings.missions,
        settings.scoring,
        settings.segments,
        settings.mission_metrics,
        settings.offers,
        directory,
    )


class _Problems:
    """Collects what each loader raises, so that every loader runs and every problem is listed."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def attempt(self, what: str, load: Callable[[], T]) -> T | None:
        try:
            return load()
        except TemplateError as exc:
            self.found.extend(exc.problems)
        except ConfigError as exc:
            self.found.append(str(exc))
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            self.found.append(f"{what}: {type(exc).__name__}: {first}")
        return None


def _build(config: Config) -> Settings:
    problems = _Problems()
    attempt = problems.attempt
    conf = Path(config.conf_dir)

    sources: dict[str, Source] = {}
    for name, spec in config.sources.items():
        file = config.file_of(f"sources.{name}")
        source = attempt(file, lambda spec=spec, file=file: Source.from_config(spec, file))
        if source is not None:
            problems.found.extend(attempt(file, lambda source=source: source_problems(source)) or [])
            sources[name] = source
    ingest = attempt("ingest", lambda: _ingest(config))

    metrics = attempt("metrics.yaml", lambda: MetricRegistry.load(conf / "metrics.yaml"))
    mission_metrics = lifetime = scoring = None
    if metrics is not None:  # the same file: its problems are those of the registry
        mission_metrics = attempt("metrics.yaml", lambda: load_mission_metrics(conf / "metrics.yaml"))
        lifetime = attempt("metrics.yaml", lambda: load_lifetime_metrics(conf / "metrics.yaml", metrics.names))
        scoring = attempt("scoring.yaml", lambda: ScoringConfig.load(conf / "scoring.yaml", metrics))
    missions = attempt("missions.yaml", lambda: MissionSettings.load(conf / "missions.yaml"))
    offers = attempt("offers.yaml", lambda: OfferCatalogue.load(conf / "offers.yaml"))

    segments = loyalty = campaigns = None
    if scoring is not None:
        rule_names = eligibility_names(list(scoring.scores), scoring.feature_names)
        segment_names = [*scoring.scores, *scoring.feature_names]
        segments = attempt("segments.yaml", lambda: SegmentRules.load(conf / "segments.yaml", segment_names))
        loyalty = attempt("loyalty.yaml", lambda: LoyaltySettings.load(conf / "loyalty.yaml", list(scoring.scores)))
        campaign_names = [*rule_names, "tier", "points_balance"]
        campaigns = attempt(
            "campaigns.yaml",
            lambda: CampaignSettings.load(conf / "campaigns.yaml", list(scoring.scores), campaign_names),
        )

    templates = badges = None
    if missions is not None and scoring is not None:
        if segments is not None and mission_metrics is not None and offers is not None:
            templates = attempt(
                "templates",
                lambda: _load_templates(config, missions, scoring, segments, mission_metrics, offers, None),
            )
        if lifetime is not None:
            badge_names = [*rule_names, *lifetime_names(lifetime, CATEGORIES), BADGE_MISSIONS]
            badges = attempt("badges", lambda: load_badges(conf.parent / missions.badges_dir, badge_names))

    predictions_file = conf / "ml_predictions.yaml"
    predictions = attempt(
        "ml_predictions.yaml", lambda: PredictionContract.load(predictions_file) if predictions_file.exists() else None
    )
    exports = attempt(
        "exports.yaml", lambda: ExportSettings.load(conf / "exports.yaml", config.get("exports.consumers") or {})
    )
    quality = attempt("quality.yaml", lambda: load_spec(conf / "quality.yaml", config.get("quality") or {}))
    airflow = attempt("airflow.yaml", lambda: _airflow(conf))
    attempt("lakehouse.root", lambda: _lakehouse_root(config))
    if metrics is not None and scoring is not None and lifetime is not None:
        attempt("lakehouse.stats_columns", lambda: _stats_columns(config, metrics, scoring, lifetime))

    if problems.found:
        raise SettingsError(list(dict.fromkeys(problems.found)))  # a file read by two loaders is reported once
    return Settings(
        sources=MappingProxyType(sources),
        ingest=ingest,
        metrics=metrics,
        mission_metrics=MappingProxyType(dict(mission_metrics)),
        lifetime_metrics=MappingProxyType(dict(lifetime)),
        scoring=scoring,
        segments=segments,
        missions=missions,
        offers=offers,
        templates=templates,
        badges=tuple(badges),
        loyalty=loyalty,
        campaigns=campaigns,
        predictions=predictions,
        exports=exports,
        exports_root=str(config.get("exports.root") or DEFAULT_EXPORTS_ROOT),
        exports_require_gate=bool(config.get("exports.require_gate", True)),
        quality=quality,
        state_full_refresh=bool(config.get("subscriber_state.full_refresh", False)),
        state_max_changed_share=float(config.get("subscriber_state.max_changed_share", 0.5)),
        airflow=airflow,
    )


def _ingest(config: Config) -> IngestSettings:
    # operator.* and the two day counts are required and type-checked by load_config
    try:
        guard = ShrinkGuard.from_config(config.get("ingest.shrink_guard"))
    except ValueError as exc:
        key = "ingest.shrink_guard"
        raise ConfigError(config.file_of(key), key, str(exc).removeprefix(f"{key}: ")) from exc
    return IngestSettings(
        timezone=str(config.require("operator.timezone")),
        country_code=str(config.require("operator.country_code")),
        max_lateness_days=int(config.require("ingest.max_lateness_days")),
        subscriber_lookback_days=int(config.require("ingest.subscriber_lookback_days")),
        profile_source=str(config.get("ingest.profile_source") or DEFAULT_PROFILE_SOURCE),
        shrink_guard=guard,
    )


def _stats_columns(
    config: Config, metrics: MetricRegistry, scoring: ScoringConfig, lifetime: Mapping[str, LifetimeMetric]
) -> Mapping[str, tuple[str, ...]]:
    from jobs.context import stats_columns  # the run context imports this module lazily
    from jobs.docs import specs_with

    specs = specs_with(metrics, scoring.feature_names, lifetime)
    return stats_columns(config, {spec.name: spec for spec in specs})


def _airflow(conf: Path) -> AirflowSettings:
    from jobs.pipeline import STAGES  # the stages import the run context, which imports this module lazily

    airflow = AirflowSettings.load(conf)
    airflow.stage_groups(list(STAGES))  # the groups must cut the pipeline into contiguous runs
    return airflow


def _lakehouse_root(config: Config) -> None:
    from jobs.lakehouse import LakehouseError, local_path

    try:
        local_path(str(config.get("lakehouse.root")))
    except LakehouseError as exc:
        raise ConfigError(config.file_of("lakehouse.root"), "lakehouse.root", str(exc)) from exc


def _load_templates(
    config: Config,
    missions: MissionSettings,
    scoring: ScoringConfig,
    segments: SegmentRules,
    mission_metrics: Mapping[str, MissionMetric],
    offers: OfferCatalogue,
    directory: Path | None,
) -> TemplateSet:
    root = Path(config.conf_dir).parent
    badges = sorted(p.stem for p in (root / missions.badges_dir).glob("*.yaml")) or None
    return load_templates(
        directory or root / missions.templates_dir,
        dict(mission_metrics),
        segments.names,
        eligibility_names(list(scoring.scores), scoring.feature_names),
        badges,
        offers.ids,
        missions.period_days,
    )
