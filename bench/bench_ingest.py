"""Benchmark: sample generation and one night of ingest at a given size.

    python bench/bench_ingest.py --subscribers 1000000 [--days 1] [--workdir .bench]

Prints wall time and throughput per step plus the peak memory of this (driver) process, so the
claim "driver memory does not grow with the data" can be checked by running two sizes. The
sample is generated in a child process so that its memory is not counted as the driver's.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from jobs.config import load_config
from jobs.pipeline import RunContext, build_lakehouse, run_stages
from jobs.spark import build_session


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2025, 3, 1))
    parser.add_argument("--workdir", type=Path, default=Path(".bench"))
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--keep", action="store_true", help="keep the generated data and lakehouse")
    args = parser.parse_args(argv)

    work = args.workdir / f"n{args.subscribers}"
    shutil.rmtree(work, ignore_errors=True)
    raw, lake = work / "raw", work / "lakehouse"

    started = time.monotonic()
    command = [
        sys.executable,
        "-m",
        "jobs.sample_data",
        "--subscribers",
        str(args.subscribers),
        "--days",
        str(args.days),
    ]
    command += ["--start", args.start.isoformat(), "--seed", "1", "--out", str(raw)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    gen_s = time.monotonic() - started
    manifest = json.loads((raw / "_manifest.json").read_text())
    rows = sum(n for days in manifest["rows"].values() for n in days.values())
    print(
        f"generate  {args.subscribers:>9,} subscribers x {args.days} day(s): {gen_s:8.1f} s  {rows:>12,} raw rows  {rows / gen_s:>10,.0f} rows/s"
    )

    config = load_config(
        env="local",
        overrides={
            "raw.root": str(raw),
            "lakehouse.root": str(lake),
            "spark.conf": {"spark.driver.memory": args.driver_memory},
        },
    )
    spark = build_session(config.get("spark", {}))
    lakehouse = build_lakehouse(spark, config)
    for offset in range(args.days):
        ds = args.start + timedelta(days=offset)
        started = time.monotonic()
        results = run_stages(RunContext(spark, config, lakehouse, ds), ["ingest"])["ingest"]
        took = time.monotonic() - started
        read = sum(r.rows_read for r in results)
        events = sum(r.events_written for r in results)
        print(
            f"ingest    {ds}: {took:8.1f} s  {read:>12,} rows read  {events:>12,} events  {read / took:>10,.0f} rows/s"
        )
        for r in results:
            print(f"          {r.source:<18} {r.status:<10} {r.rows_read:>11,} read {r.duration_s:7.1f} s")
    print(f"driver python peak RSS: {peak_rss_mb():,.0f} MB")
    spark.stop()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
