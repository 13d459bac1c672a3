"""Lifetime metrics per subscriber (totals, active days, longest streaks, comebacks, missions
completed), kept as a daily snapshot so a run never rescans the whole history.

A run folds new `daily_activity` days into the previous snapshot's state. Days inside the
lateness window can still receive late events, so the state is kept in two layers: `settled`
covers the days that can no longer change (up to `ds - max_lateness_days`) and is carried from
run to run; the lifetime values add the recent, still-open days on top of it each run. A rerun
or a backfill folds from the newest snapshot before its date, so it gives the same values as
the nightly run did. `advance` folds a span of days into a state (`fold_spans` cuts a longer
one), `snapshot` gives a day's rows from the settled state and the recent days,
`completed_missions` the completions a fold counts.

Streaks and return gaps depend on the order of the days. A fold keeps, per subscriber and daily
metric, one bit per day of its span, then walks the span a day per projection: plain column
arithmetic that Spark compiles, where arrays of days folded by a lambda ran interpreted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.config import MAX_LATENESS_DAYS, ConfigError, load_yaml
from jobs.frames import local_frame
from jobs.metrics import SUM_DECIMALS

AGGREGATIONS = ("sum", "days", "max", "streak", "return_gap")
RETURN_WINDOW_DAYS = 30  # return_gap without a `window`: the return counts when within the last month
COMPLETED = "missions_completed"
MAX_FOLD_DAYS = MAX_LATENESS_DAYS + 1  # days one fold walks: the open days of a snapshot fit in one


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


def _column(key: str) -> Column:
    return F.col(f"`{key}`")  # state keys hold dots


def _streak_day(name: str, active: Column, day: Column) -> dict[str, Column]:
    """One day of a streak state: the best run, the run ending on day `last`, and `last`."""
    best, run, last = _column(name), _column(f"{name}.run"), _column(f"{name}.last")
    run_ = F.when(active, F.when(last == day - 1, run + 1).otherwise(F.lit(1.0))).otherwise(run)
    return {name: F.greatest(best, run_), f"{name}.run": run_, f"{name}.last": F.when(active, day).otherwise(last)}


def _return_day(name: str, active: Column, day: Column) -> dict[str, Column]:
    """One day of a return state: the last active day, the gap before the latest return, and
    the day of that return."""
    last, gap, returned = _column(f"{name}.last"), _column(f"{name}.gap"), _column(f"{name}.return")
    came_back = active & (day - last > 1)  # null, so no return, before the first active day
    return {
        f"{name}.last": F.when(active, day).otherwise(last),
        f"{name}.gap": F.when(came_back, day - last - 1).otherwise(gap),
        f"{name}.return": F.when(came_back, day).otherwise(returned),
    }


def fold_spans(first: date, last: date) -> list[tuple[date, date]]:
    """The days `first`..`last` as consecutive spans `advance` takes; one empty span when there
    are no days, so that a fold still counts the completions and carries the state."""
    if first > last:
        return [(first, last)]
    starts = [first + timedelta(days=i) for i in range(0, (last - first).days + 1, MAX_FOLD_DAYS)]
    return [(start, min(last, start + timedelta(days=MAX_FOLD_DAYS - 1))) for start in starts]


def advance(
    state: DataFrame | None,
    activity: DataFrame,
    completions: DataFrame | None,
    metrics: Mapping[str, LifetimeMetric],
    categories: Sequence[str],
    badges: Sequence[str] = (),
    keep_state_as: str | None = None,
    *,
    span: tuple[date, date],
) -> DataFrame:
    """Fold the activity days of `span` (and newly completed missions) into a state map per
    subscriber.

    `state`: (subscriber_id, state map) from an earlier fold, or None to start from nothing.
    `activity`: daily_activity rows; those of the days `span` names (first, last; at most
    MAX_FOLD_DAYS days, all after the state's days) are folded in.
    `completions`: (subscriber_id, category[, badge]) of missions completed in the folded span;
    `badge` (the badge the mission's template names) is needed when `badges` is given.
    `keep_state_as`: also return the state before the fold, under this name (null for a
    subscriber the state did not hold), sparing a caller a join back to it.
    """
    first, last = span
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    if len(days) > MAX_FOLD_DAYS:
        raise ValueError(f"a fold walks at most {MAX_FOLD_DAYS} days, not {len(days)} ({first} to {last})")
    activity = activity.filter(F.col("activity_date").between(F.lit(first), F.lit(last)))
    day_bit = F.pow(F.lit(2.0), F.datediff("activity_date", F.lit(first))).cast("bigint")  # exact up to 2^62
    aggregates: list[Column] = []
    active_days: dict[str, str] = {}  # daily metric -> its bits: the days of the span it was positive
    for m in metrics.values():
        value = F.col(m.daily).cast("double")
        if m.aggregation == "sum":
            aggregates.append(F.sum(value).alias(f"_new_{m.name}"))
        elif m.aggregation == "days":
            aggregates.append(F.sum(F.when(value > 0, 1.0)).alias(f"_new_{m.name}"))
        elif m.aggregation == "max":
            aggregates.append(F.max(value).alias(f"_new_{m.name}"))
        elif m.daily not in active_days:
            active_days[m.daily] = f"_days_{m.daily}"
            aggregates.append(F.bit_or(F.when(value > 0, day_bit)).alias(active_days[m.daily]))
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
    walked: list[LifetimeMetric] = []  # streaks and return gaps: carried as columns, walked day by day
    for m in metrics.values():
        if m.aggregation in ("sum", "days"):  # rounded as daily sums are: a total reaches 50 at 50
            entries[m.name] = F.round(F.coalesce(old(m.name), zero) + F.coalesce(added(m.name), zero), SUM_DECIMALS)
        elif m.aggregation == "max":
            entries[m.name] = F.greatest(old(m.name), added(m.name))
        elif m.aggregation == "streak":
            walked.append(m)
            entries |= {
                m.name: F.coalesce(old(m.name), zero),
                f"{m.name}.run": F.coalesce(old(f"{m.name}.run"), zero),
                f"{m.name}.last": old(f"{m.name}.last"),
            }
        else:
            walked.append(m)
            entries |= {key: old(key) for key in (f"{m.name}.last", f"{m.name}.gap", f"{m.name}.return")}
    for name in completed_names(categories, badges):
        entries[name] = F.coalesce(old(name), zero) + F.coalesce(added(name), zero)
    kept = [keep_state_as] if keep_state_as else []
    frame = joined.select(
        "subscriber_id",
        *[held.alias(name) for name in kept],
        *[column.cast("double").alias(key) for key, column in entries.items()],
        *active_days.values(),
    )
    for offset, day in enumerate(days if walked else []):
        number = F.unix_date(F.lit(day)).cast("double")  # as `values` reads the run date
        steps: dict[str, Column] = {}
        for m in walked:
            active = F.coalesce(F.getbit(active_days[m.daily], F.lit(offset)) == 1, F.lit(False))
            steps |= (_streak_day if m.aggregation == "streak" else _return_day)(m.name, active, number)
        unchanged = [_column(key) for key in [*entries, *active_days.values()] if key not in steps]
        frame = frame.select("subscriber_id", *kept, *unchanged, *[c.alias(k) for k, c in steps.items()])
    keys = _state_keys(metrics, categories, badges)
    return frame.select(
        "subscriber_id",
        *kept,
        F.map_from_arrays(F.array(*[F.lit(k) for k in keys]), F.array(*[_column(k) for k in keys])).alias("state"),
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
    span = (settled_through + timedelta(days=1), ds)
    full = advance(settled, recent, None, metrics, categories, badges, keep_state_as="settled", span=span)
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
