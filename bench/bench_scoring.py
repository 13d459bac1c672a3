"""Benchmark: the stages after ingest (scores to campaigns) at scale, on synthetic compact history.

    python bench/bench_scoring.py --subscribers 100000 1000000 --days 30 --nights 2

Writes a synthetic `subscriber_profile` snapshot and `days` days of `daily_activity` (Spark
range + hash-based pseudo-random metrics, no Python loops), then runs the stages exactly as the
nightly run executes them for the last `nights` days, timing each, for each size. The first
night builds the lifetime snapshot from the whole history; later nights show steady state
(progress of live missions, incremental lifetime fold, balances carried from the day before).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.config import load_config
from jobs.context import RunContext, build_lakehouse
from jobs.metrics import MetricRegistry
from jobs.spark import build_session
from jobs.stages import badges, campaigns, loyalty, missions, progress, scores, segments
from jobs.tables import DAILY_ACTIVITY, SUBSCRIBER_PROFILE

STAGES = (
    ("scores", scores.run),
    ("segments", segments.run),
    ("missions", missions.run),
    ("progress", progress.run),
    ("badges", badges.run),
    ("loyalty", loyalty.run),
    ("campaigns", campaigns.run),
)


def uniform(seed: int, *columns: Column) -> Column:
    """Deterministic pseudo-random number in [0, 1) from the given columns."""
    return (F.abs(F.xxhash64(F.lit(seed), *columns)) % 1_000_000) / 1_000_000.0


def synthetic_profile(spark: SparkSession, subscribers: int, ds: date) -> DataFrame:
    sid = F.sha2(F.col("id").cast("string"), 256)
    u = uniform(1, F.col("id"))
    return spark.range(subscribers).select(
        sid.alias("subscriber_id"),
        F.when(u < 0.2, "POST_M").otherwise("PRE_S").alias("plan_code"),
        F.when(u < 0.2, "POSTPAID").otherwise("PREPAID").alias("payment_type"),
        F.date_sub(F.lit(ds), (uniform(2, F.col("id")) * 4000).cast("int")).alias("activation_date"),
        F.lit("ACTIVE").alias("status"),
        F.element_at(
            F.array(*[F.lit(b) for b in ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")]),
            (uniform(3, F.col("id")) * 6).cast("int") + 1,
        ).alias("age_band"),
        F.lit("North").alias("region"),
        F.lit(ds).alias("snapshot_date"),
    )


def synthetic_activity(spark: SparkSession, subscribers: int, day: date, registry: MetricRegistry) -> DataFrame:
    base = spark.range(subscribers).withColumn("_u", uniform(4, F.col("id"), F.lit(day.toordinal())))
    metrics = [
        (
            F.floor(uniform(10 + i, F.col("id"), F.lit(day.toordinal())) * 20)
            * F.when(F.col("_u") < 0.85, 1.0).otherwise(0.0)
        ).alias(name)
        for i, name in enumerate(registry.names)
    ]
    return base.select(
        F.sha2(F.col("id").cast("string"), 256).alias("subscriber_id"), *metrics, F.lit(day).alias("activity_date")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[100_000])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--nights", type=int, default=2, help="nightly runs timed, ending on --ds")
    parser.add_argument("--ds", type=date.fromisoformat, default=date(2025, 3, 30))
    parser.add_argument("--workdir", type=Path, default=Path(".bench"))
    parser.add_argument("--driver-memory", default="8g")
    args = parser.parse_args(argv)

    config_overrides = {"spark.conf": {"spark.driver.memory": args.driver_memory, "spark.sql.shuffle.partitions": "16"}}
    spark = build_session(load_config(env="local", overrides=config_overrides).get("spark", {}))
    for n in args.subscribers:
        work = args.workdir / f"scoring-{n}"
        shutil.rmtree(work, ignore_errors=True)
        config = load_config(env="local", overrides={"lakehouse.root": str(work / "lakehouse"), **config_overrides})
        lakehouse = build_lakehouse(spark, config)
        registry = MetricRegistry.load(Path(config.conf_dir) / "metrics.yaml")
        first_night = args.ds - timedelta(days=args.nights - 1)
        started = time.monotonic()
        lakehouse.write(
            synthetic_profile(spark, n, first_night),
            SUBSCRIBER_PROFILE,
            partition_by=["snapshot_date"],
            replace_where={"snapshot_date": first_night},
        )
        for offset in range(args.days):
            day = args.ds - timedelta(days=offset)
            lakehouse.write(
                synthetic_activity(spark, n, day, registry),
                DAILY_ACTIVITY,
                partition_by=["activity_date"],
                replace_where={"activity_date": day},
            )
        print(
            f"setup     {n:>9,} subscribers x {args.days} days of daily_activity: {time.monotonic() - started:7.1f} s",
            flush=True,
        )
        for night in range(args.nights - 1, -1, -1):
            ctx = RunContext(spark, config, lakehouse, args.ds - timedelta(days=night))
            for name, stage in STAGES:
                started = time.monotonic()
                summary = stage(ctx)
                took = time.monotonic() - started
                print(
                    f"{ctx.ds} {name:<9} {n:>9,} subscribers: {took:7.1f} s  {n / took:>10,.0f} subscribers/s  {summary}",
                    flush=True,
                )
        shutil.rmtree(work, ignore_errors=True)
    print(f"driver python peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
