"""What a small table's write and the reads after it cost in a warm JVM, with Spark SQL
settings switched in turn.

    python -m bench.write_cost [--rows 50] [--cycles 8] [--rounds 5] [--set KEY=VALUE ...]

Each cycle replaces one date's rows of a table partitioned by date with `Lakehouse.write` (the
jobs' own write) and then reads that partition twice with a count: the first read of a new
version builds its state from the Delta log, the second finds it cached. Each `--set` is a
variant of its own, applied to the running session around its cycles; the variants alternate
round by round with the settings as configured. Prints the median seconds per variant.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

from pyspark.sql import SparkSession

from bench.bench_night import bench_config
from jobs.lakehouse import Lakehouse
from jobs.pipeline import build_lakehouse
from jobs.spark import build_session, scoped_sql_conf

TABLE = "write_cost"
FIRST_DATE = date(2025, 1, 1)
DATES = 12  # the cycles rotate over this many partitions, so a write replaces rows it wrote before
AS_CONFIGURED = "as configured"


def variants(settings: Sequence[str]) -> dict[str, dict[str, str]]:
    """The settings as configured, then one variant per `KEY=VALUE`."""
    found: dict[str, dict[str, str]] = {AS_CONFIGURED: {}}
    for setting in settings:
        key, sep, value = (part.strip() for part in setting.partition("="))
        if not sep or not key or not value:
            raise ValueError(f"--set {setting!r}: expected KEY=VALUE, a Spark SQL setting and its value")
        found[f"{key}={value}"] = {key: value}
    return found


def cycle(spark: SparkSession, lakehouse: Lakehouse, ds: date, rows: int) -> tuple[float, float, float]:
    """Seconds of one write of `rows` rows for `ds`, of the first read after it and of a second one."""
    frame = spark.range(rows).selectExpr(
        "cast(id as string) as subscriber_id", "id * 1.5 as value", f"date'{ds.isoformat()}' as ds"
    )
    started = time.perf_counter()
    lakehouse.write(frame, TABLE, partition_by=["ds"], replace_where={"ds": ds})
    written = time.perf_counter()
    lakehouse.read(TABLE, partitions=[("ds", "=", ds)]).count()
    first = time.perf_counter()
    lakehouse.read(TABLE, partitions=[("ds", "=", ds)]).count()
    return written - started, first - written, time.perf_counter() - first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50, help="rows per write (default: 50)")
    parser.add_argument("--cycles", type=int, default=8, help="cycles per variant and round (default: 8)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over the variants (default: 5)")
    parser.add_argument("--warmup", type=int, default=10, help="cycles before any is counted (default: 10)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a variant's setting")
    parser.add_argument("--env", default="test", help="configuration overlay (default: test)")
    args = parser.parse_args(argv)
    for name in ("rows", "cycles", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    try:
        runs = variants(args.set)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="gamify-write-cost-") as folder:
        config = bench_config(Path(folder), args.env, {})
        spark = build_session(config.get("spark"))
        lakehouse = build_lakehouse(spark, config)
        dates = [FIRST_DATE + timedelta(days=i) for i in range(DATES)]
        for i in range(args.warmup):
            cycle(spark, lakehouse, dates[i % DATES], args.rows)
        seconds: dict[str, list[tuple[float, float, float]]] = {name: [] for name in runs}
        done = 0
        for _ in range(args.rounds):
            for name, settings in runs.items():
                with scoped_sql_conf(spark, settings):
                    for _ in range(args.cycles):
                        seconds[name].append(cycle(spark, lakehouse, dates[done % DATES], args.rows))
                        done += 1
        spark.stop()
    print(f"{args.rows} rows a write, {args.rounds} x {args.cycles} cycles per variant, env {args.env}; median seconds")
    print(f"{'variant':<60}{'write':>8}{'1st read':>10}{'2nd read':>10}")
    for name, figures in seconds.items():
        write, first, second = (statistics.median(column) for column in zip(*figures, strict=True))
        print(f"{name:<60}{write:>8.3f}{first:>10.3f}{second:>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
