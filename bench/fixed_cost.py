"""Where a small night's time goes: per stage, the wall seconds, the Spark jobs and the seconds
at least one of them ran, and the JVM's JIT-compilation and GC time over the stage.

    python -m bench.fixed_cost [--subscribers 300] [--days 3] [--env test]

Generates a small operator, runs every night of it stage by stage in one Spark application
(the event log on, uncompressed, in the work folder) and prints a table per night. On small
data, wall minus job time is the driver's own work: planning (Catalyst, Delta's snapshot and
file listing), the Python side (building plans, Great Expectations) and py4j. The JIT column
is compile time of the JVM's compiler threads, which share the machine's cores with the rest.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.bench_night import bench_config, generate
from jobs.pipeline import STAGES, RunContext, build_lakehouse, run_stages
from jobs.spark import build_session

START = date(2025, 3, 1)


def covered_seconds(intervals: Iterable[tuple[int, int]]) -> float:
    """Seconds covered by at least one of the (start, end) millisecond intervals."""
    total, current = 0, None
    for start, end in sorted(intervals):
        if current is None or start > current[1]:
            if current is not None:
                total += current[1] - current[0]
            current = [start, end]
        else:
            current[1] = max(current[1], end)
    if current is not None:
        total += current[1] - current[0]
    return total / 1000


def job_intervals(event_log_dir: Path) -> list[tuple[int, int]]:
    """(submission, completion) in epoch milliseconds of every finished job of the event logs."""
    started: dict[int, int] = {}
    intervals = []
    for path in sorted(p for p in event_log_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
        with path.open() as lines:
            for line in lines:
                if '"SparkListenerJob' not in line[:40]:
                    continue
                event = json.loads(line)
                if event["Event"] == "SparkListenerJobStart":
                    started[event["Job ID"]] = event["Submission Time"]
                elif event["Event"] == "SparkListenerJobEnd" and event["Job ID"] in started:
                    intervals.append((started.pop(event["Job ID"]), event["Completion Time"]))
    return intervals


class JvmClock:
    """Cumulative JIT-compilation and GC milliseconds of the session's JVM, through JMX."""

    def __init__(self, spark: Any) -> None:
        management = spark.sparkContext._jvm.java.lang.management.ManagementFactory
        self.compiler = management.getCompilationMXBean()
        self.collectors = list(management.getGarbageCollectorMXBeans())

    def read(self) -> tuple[int, int]:
        return int(self.compiler.getTotalCompilationTime()), sum(int(c.getCollectionTime()) for c in self.collectors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=300)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--env", default="test", help="configuration overlay (default: test)")
    parser.add_argument("--workdir", type=Path, help="kept when given (default: a temporary folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return _run(args, args.workdir)
    with tempfile.TemporaryDirectory(prefix="gamify-fixed-cost-") as folder:
        return _run(args, Path(folder))


def _run(args: argparse.Namespace, root: Path) -> int:
    events = root / "event_log"
    events.mkdir(exist_ok=True)
    generate(root / "raw", args.subscribers, args.days, START, seed=42)
    event_log = {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.compress": "false",
        "spark.eventLog.dir": events.resolve().as_uri(),
    }
    config = bench_config(root, args.env, event_log)
    spark = build_session(config.get("spark"))
    lakehouse = build_lakehouse(spark, config)
    clock = JvmClock(spark)
    nights = []
    for ds in (START + timedelta(days=i) for i in range(args.days)):
        rows = []
        for stage in STAGES:
            jit, gc = clock.read()
            began, started = time.time(), time.monotonic()
            run_stages(RunContext(spark, config, lakehouse, ds), [stage])
            wall = time.monotonic() - started
            jit_after, gc_after = clock.read()
            rows.append((stage, wall, int(began * 1000), int(time.time() * 1000), jit_after - jit, gc_after - gc))
        nights.append((ds, rows))
    spark.stop()  # flushes the event log
    intervals = job_intervals(events)
    for ds, rows in nights:
        print(f"\n{ds}  {args.subscribers:,} subscribers, env {args.env}")
        print(f"{'stage':<18}{'wall s':>8}{'jobs':>6}{'jobs s':>8}{'driver s':>10}{'JIT s':>8}{'GC s':>7}")
        totals = [0.0, 0, 0.0, 0.0, 0.0]
        for stage, wall, began_ms, ended_ms, jit_ms, gc_ms in rows:
            mine = [(s, e) for s, e in intervals if began_ms <= s <= ended_ms]
            figures = [wall, len(mine), covered_seconds(mine), jit_ms / 1000, gc_ms / 1000]
            totals = [t + f for t, f in zip(totals, figures, strict=True)]
            print(_line(stage, *figures))
        print(_line("night", *totals))
    return 0


def _line(name: str, wall: float, jobs: int, busy: float, jit: float, gc: float) -> str:
    return f"{name:<18}{wall:>8.1f}{jobs:>6}{busy:>8.1f}{wall - busy:>10.1f}{jit:>8.1f}{gc:>7.1f}"


if __name__ == "__main__":
    raise SystemExit(main())
