"""conf/scoring.yaml read and validated: the features (window, profile, ML, derived), the five
scores' components (feature, weight, direction, transform, normalisation, missing-value policy)
and the vocabulary they are written in."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
