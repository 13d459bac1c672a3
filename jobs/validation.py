"""`gamify config validate`: load and compile every configuration and template file with the
loader a run uses (jobs.settings), and report every problem found (each with its file and,
where known, line and column) instead of stopping at the first one or leaving it to a Spark
stack trace; plus the masking of secrets for `gamify config show`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs.config import QUERY_PASSWORD, SECRET_KEY, URL_PASSWORD, Config

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
    """Every problem of the loaded configuration (jobs.settings.load_settings, the loader every
    run uses): sources (rules, mappings, value specs), ingest settings, metrics, scoring,
    segments, missions and templates, offers, badges, loyalty, campaigns, ML predictions,
    exports, quality gates and orchestration settings."""
    from jobs.settings import SettingsError, load_settings

    try:
        load_settings(config)
    except SettingsError as exc:
        return exc.problems
    return []
