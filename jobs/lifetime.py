"""Lifetime metrics per subscriber (totals, active days, longest streaks, comebacks, missions
completed), kept as a daily snapshot so a run never rescans the whole history.

A run folds new `daily_activity` days into the previous snapshot's state. Days inside the
lateness window can still receive late events, so the state is kept in two layers: `settled`
covers the days that can no longer change (up to `ds - max_lateness_days`) and is carried from
run to run; the lifetime values add the recent, still-open days on top of it each run. A rerun
or a backfill folds from the newest snapshot before its date, so it gives the same values as
the nightly run did. `advance` folds days into a state, `snapshot` gives a day's rows from the
settled state and the recent days, `completed_missions` the completions a fold counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.config import ConfigError, load_yaml
from jobs.frames import local_frame
from jobs.metrics import SUM_DECIMALS

AGGREGATIONS = ("sum", "days", "max", "streak", "return_gap")
RETURN_WINDOW_DAYS = 30  # return_gap without a `window`: the return counts when within the last month
COMPLETED = "missions_completed"


@dataclass(frozen=True)
class LifetimeMetric:
    name: str
    daily: str
    aggregation: str
    window: int = RETURN_WINDOW_DAYS  # return_gap: how recent the return must be


def load_lifetime_metrics(path: str | Path, daily_names: Sequence[str]) -> dict[str, LifetimeMetric]:
    data = load_yaml(Path(path)) or {}
    metrics = {}
    for name, spec in (data.get("lifetime_metrics") or {}).items():
        key = f"lifetime_metrics.{name}"
        if not isinstance(spec, Mapping) or spec.get("daily") not in daily_names:
            raise ConfigError(path, f"{key}.daily", f"must name a daily metric ({', '.join(daily_names)})")
        if spec.get("aggregation") not in AGGREGATIONS:
            raise ConfigError(path, f"{key}.aggregation", f"must be one of {', '.join(AGGREGATIONS)}")
        metrics[name] = LifetimeMetric(
            name, spec["daily"], spec["aggregation"], int(spec.get("window", RETURN_WINDOW_DAYS))
        )
    return metrics


def completed_names(categories: Sequence[str], badges: Sequence[str] = ()) -> list[str]:
    """Missions completed in total, per category and per badge their template names."""
    return [COMPLETED, *(f"{COMPLETED}_{c}" for c in categories), *(badge_missions_name(b) for b in badges)]


def badge_missions_name(badge: str) -> str:
    """Lifetime count of completed missions whose template names `badge` (its `badge_missions`)."""
    return f"{COMPLETED}_for_{badge}"


def metric_names(
    metrics: Mapping[str, LifetimeMetric], categories: Sequence[str], badges: Sequence[str] = ()
) -> list[str]:
    """Names badge rules may use from the lifetime snapshot."""
    return [*metrics, *completed_names(categories, badges)]


def _state_keys(
    metrics: Mapping[str, LifetimeMetric], categories: Sequence[str], badges: Sequence[str] = ()
) -> list[str]:
    keys = []
    for m in metrics.values():
        if m.aggregation == "streak":
            keys += [m.name, f"{m.name}.run", f"{m.name}.last"]
        elif m.aggregation == "return_gap":
            keys += [f"{m.name}.last", f"{m.name}.gap", f"{m.name}.return"]
        else:
            keys.append(m.name)
    return [*keys, *completed_names(categories, badges)]


def _streak(days: Column, best: Column, run: Column, last: Column) -> Column:
    """Continue a streak state (best, run ending on day `last`) over sorted active day numbers."""
    start = F.struct(best.alias("best"), run.alias("run"), last.alias("last"))

    def step(acc: Column, day: Column) -> Column:
        run_ = F.when(day == acc["last"] + 1, acc["run"] + 1).otherwise(F.lit(1.0))
        return F.struct(F.greatest(acc["best"], run_).alias("best"), run_.alias("run"), day.alias("last"))

    return F.aggregate(days, start, step)


def _return_gap(days: Column, last: Column, gap: Column, returned: Column) -> Column:
    """Continue a (last active day, gap before the latest return, day of that return) state."""
    start = F.struct(last.alias("last"), gap.alias("gap"), returned.alias("returned"))

    def step(acc: Column, day: Column) -> Column:
        came_back = acc["last"].isNotNull() & (day - acc["last"] > 1)
        return F.struct(
            day.alias("last"),
            F.when(came_back, day - acc["last"] - 1).otherwise(acc["gap"]).alias("gap"),
            F.when(came_back, day).otherwise(acc["returned"]).alias("returned"),
        )

    return F.aggregate(days, start, step)


def advance(
    state: DataFrame | None,
    activity: DataFrame,
    completions: DataFrame | None,
    metrics: Mapping[str, LifetimeMetric],
    categories: Sequence[str],
    badges: Sequence[str] = (),
    keep_state_as: str | None = None,
) -> DataFrame:
    """Fold activity days (and newly completed missions) into a state map per subscriber.

    `state`: (subscriber_id, state map) from an earlier fold, or None to start from nothing.
    `activity`: daily_activity rows of the days being folded in, all after the state's days.
    `completions`: (subscriber_id, category[, badge]) of missions completed in the folded span;
    `badge` (the badge the mission's template names) is needed when `badges` is given.
    `keep_state_as`: also return the state before the fold, under this name (null for a
    subscriber the state did not hold), sparing a caller a join back to it.
    """
    aggregates: list[Column] = []
    day_lists: dict[str, str] = {}
    for m in metrics.values():
        value = F.col(m.daily).cast("double")
        if m.aggregation == "sum":
            aggregates.append(F.sum(value).alias(f"_new_{m.name}"))
        elif m.aggregation == "days":
            aggregates.append(F.sum(F.when(value > 0, 1.0)).alias(f"_new_{m.name}"))
        elif m.aggregation == "max":
            aggregates.append(F.max(value).alias(f"_new_{m.name}"))
        elif m.daily not in day_lists:
            day_lists[m.daily] = f"_days_{m.daily}"
            active_day = F.when(value > 0, F.unix_date("activity_date").cast("double"))
            aggregates.append(F.array_sort(F.collect_list(active_day)).alias(day_lists[m.daily]))
    new = activity.groupBy("subscriber_id").agg(*aggregates)
    if completions is not None:
        counts = completions.groupBy("subscriber_id").agg(
            F.count(F.lit(1)).cast("double").alias(f"_new_{COMPLETED}"),
            *[F.sum(F.when(F.col("category") == c, 1.0)).alias(f"_new_{COMPLETED}_{c}") for c in categories],
            *[F.sum(F.when(F.col("badge") == b, 1.0)).alias(f"_new_{badge_missions_name(b)}") for b in badges],
        )
        new = new.join(counts, "subscriber_id", "full")
    if state is None:
        state = local_frame(activity.sparkSession, [], "subscriber_id string, state map<string,double>")
    joined = state.join(new, "subscriber_id", "full")
    held, zero = F.col("state"), F.lit(0.0)  # built once: each Column built is a round trip to the JVM

    def old(key: str) -> Column:
        return held.getItem(key)

    def added(name: str) -> Column:
        return F.col(f"_new_{name}") if f"_new_{name}" in joined.columns else F.lit(None).cast("double")

    entries: dict[str, Column] = {}
    for m in metrics.values():
        if m.aggregation in ("sum", "days"):  # rounded as daily sums are: a total reaches 50 at 50
            entries[m.name] = F.round(F.coalesce(old(m.name), zero) + F.coalesce(added(m.name), zero), SUM_DECIMALS)
        elif m.aggregation == "max":
            entries[m.name] = F.greatest(old(m.name), added(m.name))
        else:
            days = F.coalesce(F.col(day_lists[m.daily]), F.array().cast("array<double>"))
            days = F.filter(days, lambda d: d.isNotNull())
            if m.aggregation == "streak":
                folded = _streak(
                    days, F.coalesce(old(m.name), zero), F.coalesce(old(f"{m.name}.run"), zero),
                    old(f"{m.name}.last"),
                )  # fmt: skip
                entries |= {m.name: folded["best"], f"{m.name}.run": folded["run"], f"{m.name}.last": folded["last"]}
            else:
                folded = _return_gap(days, old(f"{m.name}.last"), old(f"{m.name}.gap"), old(f"{m.name}.return"))
                entries |= {
                    f"{m.name}.last": folded["last"],
                    f"{m.name}.gap": folded["gap"],
                    f"{m.name}.return": folded["returned"],
                }
    for name in completed_names(categories, badges):
        entries[name] = F.coalesce(old(name), zero) + F.coalesce(added(name), zero)
    keys = _state_keys(metrics, categories, badges)
    return joined.select(
        "subscriber_id",
        *([F.col("state").alias(keep_state_as)] if keep_state_as else []),
        F.map_from_arrays(
            F.array(*[F.lit(k) for k in keys]), F.array(*[entries[k].cast("double") for k in keys])
        ).alias("state"),
    )


def completed_missions(progress: DataFrame, template_badges: Mapping[str, str | None]) -> DataFrame:
    """mission_progress rows -> (subscriber_id, category, badge) of the missions newly completed
    in them; `badge` is the badge their template names (`template_badges`: template id -> badge)."""
    badge_of = F.create_map(*[F.lit(v) for pair in sorted(template_badges.items()) for v in pair])
    return progress.filter(F.col("newly_completed")).select(
        "subscriber_id", "category", F.element_at(badge_of, F.col("template_id")).alias("badge")
    )


def snapshot(
    settled: DataFrame,
    recent: DataFrame,
    metrics: Mapping[str, LifetimeMetric],
    categories: Sequence[str],
    ds: date,
    settled_through: date,
    badges: Sequence[str] = (),
) -> DataFrame:
    """subscriber_lifetime rows for `ds`: the `settled` state (days through `settled_through`)
    carried as it is, and the lifetime values with the `recent` daily_activity days (after
    `settled_through`, through `ds`) folded on top of it."""
    full = advance(settled, recent, None, metrics, categories, badges, keep_state_as="settled")
    return full.select(
        "subscriber_id",
        "settled",
        F.lit(settled_through).alias("settled_through"),
        values(F.col("state"), metrics, categories, ds, badges).alias("metrics"),
        F.lit(ds).alias("stats_date"),
    )


def values(
    state: Column,
    metrics: Mapping[str, LifetimeMetric],
    categories: Sequence[str],
    ds: date,
    badges: Sequence[str] = (),
) -> Column:
    """The lifetime metrics on `ds` from a state map, as a map<string,double>."""
    today, zero = F.unix_date(F.lit(ds)).cast("double"), F.lit(0.0)
    out: dict[str, Column] = {}
    for m in metrics.values():
        if m.aggregation == "return_gap":
            recent = today - state.getItem(f"{m.name}.return") < m.window
            out[m.name] = F.when(recent, state.getItem(f"{m.name}.gap")).otherwise(zero)
        else:
            out[m.name] = F.coalesce(state.getItem(m.name), zero)
    for name in completed_names(categories, badges):
        out[name] = F.coalesce(state.getItem(name), zero)
    return F.map_from_arrays(F.array(*[F.lit(k) for k in out]), F.array(*out.values()))
