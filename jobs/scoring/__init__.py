"""Behavior scoring: features from `daily_activity` windows, five explainable 0-100 scores.

Definitions live in conf/scoring.yaml. Every score is a weighted sum of normalized components,
and the per-row breakdown (raw value, normalized value, weight, contribution) adds up to the
score. Everything is built from Spark built-in expressions in a few wide aggregations.

- `config`: conf/scoring.yaml read and validated (ScoringConfig, Feature, Component);
- `features`: window aggregates, profile and ML features, the features a missing source degrades;
- `scores`: normalisation (min-max, percentile cuts), the scores and their breakdowns.
"""

from __future__ import annotations

from jobs.scoring.config import ML_SOURCE, PLAN_CHANGE_DAYS, SCORE_NAMES, Component, Feature, ScoringConfig
from jobs.scoring.features import (
    compute_features,
    degraded_features,
    features_snapshot,
    unconfigured_sources,
    window_aggregates,
)
from jobs.scoring.scores import BREAKDOWN_TYPE, compute_scores, percentile_cuts

__all__ = [
    "BREAKDOWN_TYPE",
    "ML_SOURCE",
    "PLAN_CHANGE_DAYS",
    "SCORE_NAMES",
    "Component",
    "Feature",
    "ScoringConfig",
    "compute_features",
    "compute_scores",
    "degraded_features",
    "features_snapshot",
    "percentile_cuts",
    "unconfigured_sources",
    "window_aggregates",
]
