"""`gamify config validate`: load and compile every configuration and template file, the way
a run would, and report every problem found (each with its file and, where known, line and
column) instead of stopping at the first one or leaving it to a Spark stack trace."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jobs.config import QUERY_PASSWORD, SECRET_KEY, URL_PASSWORD, Config, ConfigError
from jobs.templates import TemplateError

MASK = "***"


def mask_url(text: str) -> str:
    """`jdbc:postgresql://u:pw@host/db?password=x` -> `jdbc:postgresql://u:***@host/db?password=***`."""
    text = URL_PASSWORD.sub(lambda m: f"{m.group('prefix')}:{MASK}@", text)
    return QUERY_PASSWORD.sub(lambda m: f"{m.group('prefix')}{MASK}", text)


def masked(value: Any, key: str = "") -> Any:
    """A copy of a config value with every secret-like key's value and every password inside
    a URL replaced by ***, for printing."""
    if isinstance(value, Mapping):
        return {k: masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if SECRET_KEY.search(key) and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return mask_url(value)
    return value


def config_problems(config: Config) -> list[str]:
    """Every problem of the loaded configuration: sources (rules, mappings, value specs),
    metrics, scoring, segments, missions and templates, badges, loyalty, campaigns, quality
    gates and orchestration settings."""
    from jobs import stages
    from jobs.campaigns import CampaignSettings
    from jobs.ingest import source_problems
    from jobs.missions import eligibility_names
    from jobs.orchestration.settings import AirflowSettings
    from jobs.pipeline import STAGES
    from jobs.quality import load_spec
    from jobs.segments import SegmentRules
    from jobs.sources import Source

    problems: list[str] = []

    def attempt(what: str, load: Callable[[], Any]) -> Any:
        try:
            return load()
        except TemplateError as exc:
            problems.extend(exc.problems)
        except ConfigError as exc:
            problems.append(str(exc))
        except Exception as exc:
            problems.append(f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return None

    for name, spec in config.sources.items():
        file = config.file_of(f"sources.{name}")
        source = attempt(file, lambda spec=spec, file=file: Source.from_config(spec, file))
        if source is not None:
            problems.extend(source_problems(source))
    conf_dir = config.conf_dir
    attempt("metrics.yaml", lambda: stages.metric_registry(config))
    cfg = attempt("scoring.yaml", lambda: stages.scoring_config(config))
    if cfg is not None:
        allowed = [*cfg.scores, *cfg.feature_names]
        attempt("segments.yaml", lambda: SegmentRules.load(conf_dir / "segments.yaml", allowed))
        attempt("missions.yaml", lambda: stages.mission_settings(config))
        attempt("templates", lambda: stages.template_set(config))
        attempt("badges", lambda: stages.badge_types(config))
        attempt("loyalty.yaml", lambda: stages.loyalty_settings(config))
        names = [*eligibility_names(list(cfg.scores), cfg.feature_names), "tier", "points_balance"]
        attempt("campaigns.yaml", lambda: CampaignSettings.load(conf_dir / "campaigns.yaml", list(cfg.scores), names))
    attempt("quality.yaml", lambda: load_spec(conf_dir / "quality.yaml", config.get("quality") or {}))
    attempt("airflow.yaml", lambda: AirflowSettings.load(conf_dir).stage_groups(list(STAGES)))
    return list(dict.fromkeys(problems))  # a file read by two loaders is reported once
