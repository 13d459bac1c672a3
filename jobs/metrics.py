"""The metric registry (conf/metrics.yaml) and the `daily_activity` table built from it.

`daily_activity` holds one row per subscriber per day with one column per daily metric, computed
from `events` in a single wide aggregation. Scoring windows and mission progress read it instead
of raw events, so a nightly run touches one new day of events plus this compact history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs import expressions
from jobs.config import ConfigError, load_yaml
from jobs.tables import DAILY_ACTIVITY, TableSpec, spec_of
from jobs.tables import Column as SpecColumn

EVENT_NAMES = ("event_type", "event_subtype", "source", "channel", "unit", "quantity", "amount")
VALUES = ("count", "quantity", "amount")
AGGS = ("sum", "max", "min")
# Decimals a sum of doubles is kept at: finer than any source unit (amounts are decimal(18,4)),
# coarse enough to drop the error of adding doubles, which also depends on the order of addition
# (so on how a cluster split the rows): sums meet thresholds and reruns agree.
SUM_DECIMALS = 6


@dataclass(frozen=True)
class DailyMetric:
    name: str
    when: str
    value: str = "count"
    agg: str = "sum"
    sources: tuple[str, ...] = ()
    description: str = ""  # meaning and unit, for the data dictionary


@dataclass(frozen=True)
class MetricRegistry:
    version: str
    attributes: tuple[str, ...]
    daily: tuple[DailyMetric, ...]
    derived: Mapping[str, str]
    file: str = "conf/metrics.yaml"

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.daily] + list(self.derived)

    def sources_of(self, metric: str) -> set[str]:
        """Data sources a metric depends on (derived metrics: those of the metrics they use)."""
        by_name = {m.name: m for m in self.daily}
        if metric in by_name:
            return set(by_name[metric].sources)
        node = expressions.parse(self.derived[metric])
        return set().union(*(self.sources_of(n) for n in expressions.names(node)))

    @classmethod
    def load(cls, path: str | Path) -> MetricRegistry:
        path = Path(path)
        data = load_yaml(path) or {}
        attributes = tuple(data.get("attributes") or ())
        allowed = [*EVENT_NAMES, *(f"attr_{a}" for a in attributes)]
        # the events columns a `when` reads: text, but quantity and amount (attributes are text too)
        types = {n: expressions.NUMBER if n in ("quantity", "amount") else expressions.STRING for n in allowed}
        daily = []
        for name, spec in (data.get("daily_metrics") or {}).items():
            key = f"daily_metrics.{name}"
            if not isinstance(spec, Mapping) or "when" not in spec:
                raise ConfigError(path, key, "needs a `when` expression")
            metric = DailyMetric(
                name=name,
                when=str(spec["when"]),
                value=spec.get("value", "count"),
                agg=spec.get("agg", "sum"),
                sources=tuple(spec.get("sources") or ()),
                description=str(spec.get("description") or ""),
            )
            if metric.value not in VALUES:
                raise ConfigError(path, f"{key}.value", f"must be one of {', '.join(VALUES)}")
            if metric.agg not in AGGS:
                raise ConfigError(path, f"{key}.agg", f"must be one of {', '.join(AGGS)}")
            _validate(metric.when, types, path, f"{key}.when")
            daily.append(metric)
        if not daily:
            raise ConfigError(path, "daily_metrics", "must define at least one metric")
        derived = dict(data.get("derived_metrics") or {})
        known = [m.name for m in daily]
        for name, text in derived.items():
            _validate(str(text), dict.fromkeys(known, expressions.NUMBER), path, f"derived_metrics.{name}")
            known.append(name)
        return cls(str(data.get("version", "1")), attributes, tuple(daily), derived, str(path))


def _validate(text: str, types: Mapping[str, str], path: Path, key: str) -> None:
    """Names, types, and a condition as the result: a mistake is a load error, not a failed night."""
    try:
        expressions.validate(text, types, source=f"{path}#{key}", types=types, expect=expressions.BOOLEAN)
    except expressions.ExpressionError as exc:
        raise ConfigError(path, key, str(exc)) from exc


def _event_names(registry: MetricRegistry) -> dict[str, Column]:
    names = {n: F.col(n) for n in EVENT_NAMES}
    names.update({f"attr_{a}": F.col("attributes").getItem(a) for a in registry.attributes})
    return names


def daily_activity(events: DataFrame, registry: MetricRegistry) -> DataFrame:
    """Events -> one row per (subscriber_id, activity_date) with every metric, one groupBy.

    Metrics are 0 (not null) when no event counted; derived metrics are 0/1 flags.
    """
    names = _event_names(registry)
    aggregates = []
    for metric in registry.daily:
        condition = F.coalesce(
            expressions.compile_expression(metric.when, names, source=f"{registry.file}#{metric.name}"), F.lit(False)
        )
        value = F.lit(1.0) if metric.value == "count" else F.col(metric.value).cast("double")
        picked = F.when(condition, value)
        aggregate = {"sum": F.sum, "max": F.max, "min": F.min}[metric.agg](picked)
        if metric.agg == "sum":  # at SUM_DECIMALS: 2.8 + 5.6 + 1.6 is 10, in any order
            aggregate = F.round(F.coalesce(aggregate, F.lit(0.0)), SUM_DECIMALS)
        aggregates.append(aggregate.alias(metric.name))
    daily = events.groupBy("subscriber_id", F.col("event_date").alias("activity_date")).agg(*aggregates)
    return with_derived_flags(daily, registry)


def with_derived_flags(daily: DataFrame, registry: MetricRegistry) -> DataFrame:
    """Daily metric rows -> the same rows with the registry's derived 0/1 flags, in registry order."""
    metric_columns = {m.name: F.coalesce(F.col(m.name), F.lit(0.0)) for m in registry.daily}
    for name, text in registry.derived.items():
        flag = expressions.compile_expression(text, metric_columns, source=f"{registry.file}#{name}")
        daily = daily.withColumn(name, F.when(flag, F.lit(1.0)).otherwise(F.lit(0.0)))
        metric_columns[name] = F.col(name)
    return daily.select("subscriber_id", *registry.names, "activity_date")


def activity_spec(registry: MetricRegistry) -> TableSpec:
    """The daily_activity table spec with one column per configured metric, in written order."""
    base = spec_of(DAILY_ACTIVITY)
    metrics = [
        SpecColumn(m.name, "double", f"{m.description or m.name} ({m.agg} over the day's events: {m.when})")
        for m in registry.daily
    ]
    flags = [
        SpecColumn(name, "double", f"1 when {text}, else 0 (derived daily flag)")
        for name, text in registry.derived.items()
    ]
    first, *rest = base.columns
    return replace(base, columns=(first, *metrics, *flags, *rest))


def activity_dates_to_refresh(ds: date, late_dates: Sequence[date]) -> list[date]:
    """The run date plus any earlier day that received late events in this run."""
    return sorted({ds, *late_dates})


def load_registry(conf_dir: str | Path) -> MetricRegistry:
    return MetricRegistry.load(Path(conf_dir) / "metrics.yaml")


def registry_from(config: Any) -> MetricRegistry:
    return load_registry(config.conf_dir)


DAY_BITS = 62  # days a day mask holds: bits 0..61 of a long, so it never turns negative


def day_mask(active: Column, day: Column) -> Column:
    """Aggregate: a long with bit `day` (0 to DAY_BITS - 1) set for every row where `active`
    holds, and 0 when it never does."""
    bit = F.call_function("shiftleft", F.lit(1).cast("long"), day)  # F.shiftleft takes a constant shift only
    return F.coalesce(F.bit_or(F.when(active, bit)), F.lit(0).cast("long"))


def with_longest_runs(df: DataFrame, runs: Mapping[str, str]) -> DataFrame:
    """Add, for each `name: mask` of `runs`, the longest run of consecutive set bits of the long
    column `mask` as an int column `name` (0 when no bit is set).

    Binary lifting over spans: span k marks the bits where a run of at least k ones starts, so
    span 2k = span k & (span k >> k). The length found so far, with `reached` its span, grows by
    k (largest k first) where span k & (reached >> k) is not empty. One projection per step, each a few primitive
    operations, instead of sorting an array of days per row.
    """
    steps = (1, 2, 4, 8, 16, 32)
    span = {(name, k): f"_span{k}_{name}" for name in runs for k in steps}
    df = df.select("*", *[F.col(mask).alias(span[name, 1]) for name, mask in runs.items()])
    for k in steps[:-1]:
        df = df.select(
            "*",
            *[(F.col(span[n, k]).bitwiseAND(F.shiftright(span[n, k], k))).alias(span[n, 2 * k]) for n in runs],
        )
    reached = {name: f"_reached_{name}" for name in runs}
    df = df.select("*", *[F.lit(-1).cast("long").alias(reached[n]) for n in runs], *[F.lit(0).alias(n) for n in runs])
    for k in reversed(steps):
        grown = {n: F.col(span[n, k]).bitwiseAND(F.shiftright(reached[n], k)) for n in runs}
        df = df.withColumns(
            {
                **{reached[n]: F.when(grown[n] != 0, grown[n]).otherwise(F.col(reached[n])) for n in runs},
                **{n: F.when(grown[n] != 0, F.col(n) + k).otherwise(F.col(n)) for n in runs},
            }
        )
    return df.drop(*span.values(), *reached.values())
