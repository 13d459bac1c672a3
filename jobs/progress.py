"""Mission progress: every live assignment measured against its period, day by day.

An assignment is live from the day it was assigned to the last day of its period, and
`missions.settle_days` after it. Each run measures it over `daily_activity` from the period
start up to the run date (never past the period's end) with the metric's aggregation (sum,
distinct active days, longest consecutive-day streak, best day) and finds the first day the
target was reached. Lifecycle: assigned (period not started) -> active -> completed | expired
(period over below target). While it settles, an expired mission can still be completed by a
late event of its period's days. A completion is final: once recorded it is kept by every later
run and every rerun, so a mission is never completed twice nor un-completed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.metrics import SUM_DECIMALS
from jobs.templates import MissionMetric

ASSIGNMENT_COLUMNS = (
    "assignment_id", "subscriber_id", "mission_id", "template_id", "category", "metric", "aggregation",
    "period_start", "period_end", "target_value", "reward_points", "holdout",
)  # fmt: skip


def live(assignments: DataFrame, ds: date, settle_days: int = 0) -> DataFrame:
    """Assignments made on or before `ds` whose period has not ended more than `settle_days`
    before `ds`."""
    settled = F.date_add(F.col("period_end"), settle_days)
    return assignments.filter((F.col("assigned_ds") <= F.lit(ds)) & (settled >= F.lit(ds)))


def daily_value(metrics: Mapping[str, MissionMetric]) -> Column:
    """The daily_activity column the row's mission metric reads (one flat CASE over the registry)."""
    value = F.lit(None).cast("double")
    for i, m in enumerate(metrics.values()):
        branch = (F.col("metric") == m.name, F.col(m.daily).cast("double"))
        value = F.when(*branch) if i == 0 else value.when(*branch)
    return value


def _fold(days: Column) -> Column:
    """One ordered pass over (day, value) structs: running sum, active days, best day, longest
    streak, and the first day the row's aggregation reached its target."""
    start = F.struct(
        F.lit(0.0).alias("total"),
        F.lit(0.0).alias("days"),
        F.lit(0.0).alias("best_day"),
        F.lit(-(10**9)).alias("prev"),
        F.lit(0).alias("run"),
        F.lit(0).alias("streak"),
        F.lit(None).cast("int").alias("reached"),
    )

    def step(acc: Column, item: Column) -> Column:
        value = F.coalesce(item["value"], F.lit(0.0))
        positive = value > 0
        total = acc["total"] + value
        days_ = acc["days"] + F.when(positive, 1.0).otherwise(0.0)
        best_day = F.greatest(acc["best_day"], value)
        run = F.when(positive, F.when(item["day"] == acc["prev"] + 1, acc["run"] + 1).otherwise(1)).otherwise(0)
        streak = F.greatest(acc["streak"], run)
        measured = _by_aggregation(total, days_, streak.cast("double"), best_day)
        # compared at SUM_DECIMALS: a sum of doubles (2.8 + 5.6 + 1.6 = 9.999999999999998) that
        # meets a target exactly in the source's decimals reaches it
        reached_now = F.round(measured, SUM_DECIMALS) >= F.col("target_value")
        reached = F.coalesce(acc["reached"], F.when(reached_now, item["day"]))
        return F.struct(
            total.alias("total"),
            days_.alias("days"),
            best_day.alias("best_day"),
            F.when(positive, item["day"]).otherwise(acc["prev"]).alias("prev"),
            run.alias("run"),
            streak.alias("streak"),
            reached.alias("reached"),
        )

    return F.aggregate(F.array_sort(days), start, step)


def _by_aggregation(total: Column, days: Column, streak: Column, best_day: Column) -> Column:
    aggregation = F.col("aggregation")
    return (
        F.when(aggregation == "sum", total)
        .when(aggregation == "days", days)
        .when(aggregation == "streak", streak)
        .otherwise(best_day)
    )


def prior_completions(progress: DataFrame, ds: date) -> DataFrame:
    """Completions already recorded: before the run date, and by an earlier run of the run date."""
    done = progress.filter(F.col("status") == "completed")
    return done.groupBy("assignment_id").agg(
        F.min(F.when(F.col("progress_ds") < F.lit(ds), F.col("completed_ds"))).alias("_completed_before"),
        F.min(F.when(F.col("progress_ds") == F.lit(ds), F.col("completed_ds"))).alias("_completed_same_day"),
    )


def track(
    assignments: DataFrame,
    activity: DataFrame,
    recorded: DataFrame,
    metrics: Mapping[str, MissionMetric],
    ds: date,
    settle_days: int = 0,
) -> DataFrame:
    """Live assignments x daily_activity -> mission_progress rows for `ds`.

    `recorded`: completions already recorded, from `prior_completions`. An assignment stays
    live `settle_days` after its period: an event of the period's days that arrives late can
    still complete it (measured on the period's days only; `expired` until then).
    """
    current = live(assignments, ds, settle_days).select(*ASSIGNMENT_COLUMNS)
    day = F.col("d.activity_date")
    in_period = (
        (F.col("a.subscriber_id") == F.col("d.subscriber_id"))
        & (day >= F.col("a.period_start"))
        & (day <= F.least(F.col("a.period_end"), F.lit(ds)))
    )
    joined = current.alias("a").join(activity.alias("d"), in_period, "left")
    metric_value = daily_value(metrics)
    measured = joined.groupBy(*[F.col(f"a.{c}") for c in ASSIGNMENT_COLUMNS]).agg(
        F.collect_list(
            F.when(day.isNotNull(), F.struct(F.unix_date(day).alias("day"), metric_value.alias("value")))
        ).alias("_days")
    )
    state = measured.withColumn("_state", _fold(F.col("_days")))
    value = _by_aggregation(
        F.col("_state.total"), F.col("_state.days"), F.col("_state.streak").cast("double"), F.col("_state.best_day")
    )
    reached = F.date_from_unix_date(F.col("_state.reached"))
    with_prior = state.join(recorded, "assignment_id", "left")
    completed_ds = F.least(F.col("_completed_before"), F.col("_completed_same_day"), reached)
    status = (
        F.when(F.col("completed_ds").isNotNull(), "completed")
        .when(F.lit(ds) < F.col("period_start"), "assigned")
        .when(F.lit(ds) >= F.col("period_end"), "expired")
        .otherwise("active")
    )
    return (
        with_prior.withColumn("progress_value", value)
        .withColumn("completed_ds", completed_ds)
        .select(
            *ASSIGNMENT_COLUMNS[:10],
            "progress_value",
            F.round(F.least(F.lit(100.0), F.col("progress_value") / F.col("target_value") * 100), 1).alias(
                "progress_pct"
            ),
            status.alias("status"),
            "completed_ds",
            (F.col("completed_ds").isNotNull() & F.col("_completed_before").isNull()).alias("newly_completed"),
            "reward_points",
            "holdout",
            F.lit(ds).alias("progress_ds"),
        )
    )
