"""The five 0-100 scores from the features: each component transformed, normalised (min-max or
percentile), weighted; the per-row breakdown (raw, normalized, weight, contribution) adds up to
the score."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.scoring.config import SCORE_NAMES, Component, ScoringConfig

PERCENTILES = [i / 100 for i in range(1, 100)]
SEARCH_STEPS = [2**k for k in reversed(range(len(PERCENTILES).bit_length()))]  # 64, 32, ..., 1
ML_COLUMNS = ("churn_probability", "nbo_offer_id", "nbo_score", "model_version")

BREAKDOWN_TYPE = T.MapType(
    T.StringType(),
    T.StructType(
        [
            T.StructField("raw", T.DoubleType()),
            T.StructField("normalized", T.DoubleType()),
            T.StructField("weight", T.DoubleType()),
            T.StructField("contribution", T.DoubleType()),
            T.StructField("missing", T.BooleanType()),
            T.StructField("degraded", T.BooleanType()),
        ]
    ),
)


def _transformed(component: Component) -> Column:
    raw = F.col(component.feature).cast("double")
    if component.transform == "log1p":
        return F.log1p(F.greatest(raw, F.lit(0.0)))
    if component.transform == "sqrt":
        return F.sqrt(F.greatest(raw, F.lit(0.0)))
    return raw


def _quantile_column(score: str, component: Component) -> str:
    return f"_q_{score}_{component.name}"


def percentile_cuts(features: DataFrame, cfg: ScoringConfig) -> dict[str, DataFrame]:
    """Approximate percentile cut points (99 per component) per `by` group, one aggregation
    per distinct group column; tiny results, joined back by broadcast."""
    by_group: dict[str, list[Column]] = {}
    percentages = F.array(*[F.lit(p) for p in PERCENTILES])  # one literal for every component
    for score, components in cfg.scores.items():
        for c in components:
            if c.method == "percentile":
                cut = F.percentile_approx(_transformed(c), percentages, 1000).alias(_quantile_column(score, c))
                by_group.setdefault(c.by, []).append(cut)
    cuts = {}
    for by, aggregates in by_group.items():
        grouped = features.groupBy(F.lit("all").alias("_all")) if by == "all" else features.groupBy(by)
        cuts[by] = grouped.agg(*aggregates)
    return cuts


def _rank_columns(score: str, component: Component) -> tuple[str, str]:
    return f"_below_{score}_{component.name}", f"_at_or_below_{score}_{component.name}"


def with_cut_ranks(df: DataFrame, components: Sequence[tuple[str, Component]]) -> DataFrame:
    """For each (score, percentile component): how many of its cut points lie below the
    transformed value, and how many at or below it (null value or cuts: 0).

    A binary search over the cut points (sorted: percentile_approx of increasing percentages),
    one halving step per projection: a position moves up by the step when the cut point there
    is still below the value. Seven steps for 99 cut points, each a few primitive comparisons,
    where sorting the cut points with the value row by row made the largest share of the stage.
    The transformed value is computed once, not once per step."""
    counts = {
        name: (score, component, strict)
        for score, component in components
        for name, strict in zip(_rank_columns(score, component), (True, False), strict=True)
    }
    if not counts:
        return df
    values = {f"_value_{score}_{component.name}": _transformed(component) for score, component in components}
    df = df.select("*", *[v.alias(name) for name, v in values.items()], *[F.lit(0).alias(name) for name in counts])
    for step in SEARCH_STEPS:
        moved = {}
        for name, (score, component, strict) in counts.items():
            position, value = F.col(name), F.col(f"_value_{score}_{component.name}")
            cut = F.get(F.col(_quantile_column(score, component)), position + (step - 1))  # null past the end
            below = cut < value if strict else cut <= value
            moved[name] = position + F.when(below, step).otherwise(0)
        df = df.withColumns(moved)  # a projection per step: each reads the position twice
    return df.drop(*values)


def _normalized(score: str, component: Component) -> Column:
    value = _transformed(component)
    if component.method == "minmax":
        scaled = (value - F.lit(component.low)) / F.lit(component.high - component.low)
        normalized = F.least(F.greatest(scaled, F.lit(0.0)), F.lit(1.0))
    else:  # the value's mid-rank among the cut points (ties count half)
        below, at_or_below = (F.col(name) for name in _rank_columns(score, component))
        cuts = F.col(_quantile_column(score, component))
        normalized = F.when(value.isNotNull() & cuts.isNotNull(), (below + at_or_below) / (2.0 * F.size(cuts)))
    if component.direction == "lower":
        normalized = 1.0 - normalized
    return normalized


def _normalized_name(score: str, component: Component) -> str:
    return f"_n_{score}_{component.name}"


def score_columns(score: str, components: Sequence[Component], degraded: set[str]) -> tuple[Column, Column]:
    """The score (0-100) and its breakdown map for one score, from the normalized values
    `compute_scores` adds as columns."""
    parts = []
    for c in components:
        raw = F.col(c.feature).cast("double")
        missing = raw.isNull()
        normalized = F.col(_normalized_name(score, c))
        filled = {"zero": F.lit(0.0), "neutral": F.lit(0.5), "exclude": F.lit(0.0)}[c.missing]
        value = F.when(missing, filled).otherwise(F.coalesce(normalized, filled))
        counted = ~missing if c.missing == "exclude" else F.lit(True)
        parts.append((c, raw, missing, value, counted))
    total_weight = sum((F.when(counted, F.lit(c.weight)).otherwise(0.0) for c, _, _, _, counted in parts), F.lit(0.0))
    entries = []
    contributions = []
    for c, raw, missing, value, counted in parts:
        weight = F.when(counted, F.lit(c.weight) / total_weight).otherwise(0.0)
        contribution = 100.0 * value * weight
        contributions.append(contribution)
        entries += [
            F.lit(c.name),
            F.struct(
                raw.alias("raw"),
                F.round(value, 4).alias("normalized"),
                F.round(weight, 4).alias("weight"),
                F.round(contribution, 4).alias("contribution"),
                missing.alias("missing"),
                F.lit(c.feature in degraded).alias("degraded"),
            ),
        ]
    total = F.round(F.least(F.greatest(sum(contributions, F.lit(0.0)), F.lit(0.0)), F.lit(100.0)), 2)
    return total, F.create_map(*entries)


def compute_scores(
    features: DataFrame,
    cuts: Mapping[str, DataFrame],
    cfg: ScoringConfig,
    ds: date,
    degraded_features: set[str],
    degraded_sources: Sequence[str],
) -> DataFrame:
    """Features -> one behavior_scores row per subscriber."""
    # only the columns the scores read, not every feature and profile column, through the
    # projections below
    components = [c for s in SCORE_NAMES for c in cfg.scores[s]]
    read = {c.feature for c in components} | {c.by for c in components if c.by != "all"}
    df = features.select("subscriber_id", *sorted(read - {"subscriber_id", *ML_COLUMNS}), *ML_COLUMNS)
    for by, cut in cuts.items():
        key = F.lit("all") if by == "all" else F.col(by)
        df = df.join(
            F.broadcast(
                cut.withColumnRenamed(by, "_cut_key") if by != "all" else cut.withColumnRenamed("_all", "_cut_key")
            ),
            key.eqNullSafe(F.col("_cut_key")),  # a null group value (no region...) has cut points too
            "left",
        ).drop("_cut_key")
    df = with_cut_ranks(df, [(s, c) for s in SCORE_NAMES for c in cfg.scores[s] if c.method == "percentile"])
    # each normalized value computed once, in its own projection: the score, its contribution
    # and the breakdown all read it
    df = df.select("*", *[_normalized(s, c).alias(_normalized_name(s, c)) for s in SCORE_NAMES for c in cfg.scores[s]])
    columns = []
    for score in SCORE_NAMES:
        total, breakdown = score_columns(score, cfg.scores[score], degraded_features)
        columns += [total.alias(score), breakdown.alias(f"{score}_breakdown")]
    return df.select(
        "subscriber_id",
        *columns,
        *ML_COLUMNS,
        F.array(*[F.lit(s) for s in sorted(degraded_sources)]).cast("array<string>").alias("degraded_sources"),
        F.lit(cfg.config_version).alias("config_version"),
        F.lit(ds).alias("score_date"),
    )
