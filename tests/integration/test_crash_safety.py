"""A writer killed with SIGKILL in the middle of a table write: readers keep seeing the previous
version, a rerun of the date gives the content of an uninterrupted run, and `gamify maintain`
removes the files the dead write left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from jobs.cli import main as gamify
from jobs.lakehouse import Lakehouse

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TABLE = "activity_like"
ROWS = 400_000  # enough that the write lasts well over the 20 ms the test polls at, so the kill lands inside it

WRITER = textwrap.dedent(
    """
    import sys
    from datetime import date
    from jobs.config import load_config
    from jobs.lakehouse import Lakehouse
    from jobs.spark import build_session
    from tests.integration.test_crash_safety import TABLE, day_rows

    root = sys.argv[1]
    packages = load_config(env="test", environ={}).get("spark.packages")
    spark = build_session({"master": "local[2]", "packages": packages, "conf": {"spark.sql.shuffle.partitions": "2"}})
    lakehouse = Lakehouse(spark, root)
    lakehouse.write(day_rows(spark, date(2025, 3, 1), 1000), TABLE, partition_by=["part"],
                    replace_where={"run_ds": date(2025, 3, 1)})
    print("WRITING", flush=True)
    lakehouse.write(day_rows(spark, date(2025, 3, 2)), TABLE, partition_by=["part"],
                    replace_where={"run_ds": date(2025, 3, 2)})
    print("COMMITTED", flush=True)
    """
)


def day_rows(spark, run_ds: date, rows: int = ROWS):
    """A deterministic day of rows spread over 8 partition folders."""
    return spark.range(0, rows, numPartitions=8).select(
        F.col("id"),
        (F.col("id") % 8).cast("int").alias("part"),
        (F.col("id") * 0.5 + run_ds.day).alias("value"),
        F.lit(run_ds).alias("run_ds"),
    )


def data_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet") if "_delta_log" not in p.parts}


def referenced(root: Path) -> set[str]:
    return {u.removeprefix("file://").removeprefix(str(root) + "/") for u in DeltaTable(str(root)).file_uris()}


def test_a_write_killed_mid_way_leaves_the_previous_version_and_no_trace_after_maintenance(spark, tmp_path):
    lake = tmp_path / "lake"
    table = lake / TABLE
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(lake)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # the JVM is in the same process group: killed with it
    )
    try:
        assert writer.stdout.readline().strip() == "WRITING", "the first version was not written"
        committed = referenced(table)
        deadline = time.monotonic() + 600
        while not (data_files(table) - committed) and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(writer.pid, signal.SIGKILL)
        writer.wait(timeout=60)
    finally:
        if writer.poll() is None:
            os.killpg(writer.pid, signal.SIGKILL)
    orphans = data_files(table) - referenced(table)
    # the kill landed after some files of the second write were on disk, in its partition folders
    assert len(orphans) >= 1
    assert [o for o in orphans if not re.fullmatch(r"part=[0-7]/part-\d{5}-[^/]+\.parquet", o)] == []

    lakehouse = Lakehouse(spark, str(lake))
    assert lakehouse.version(TABLE) == 1  # create + the first day; the dead write never committed
    assert lakehouse.read(TABLE).count() == 1000
    assert pl.read_delta(str(table)).height == 1000

    lakehouse.write(
        day_rows(spark, date(2025, 3, 2)), TABLE, partition_by=["part"], replace_where={"run_ds": "2025-03-02"}
    )
    expected = day_rows(spark, date(2025, 3, 1), 1000).unionByName(day_rows(spark, date(2025, 3, 2)))
    result = lakehouse.read(TABLE).select(*expected.columns)
    assert result.count() == ROWS + 1000
    assert result.exceptAll(expected).count() == 0 == expected.exceptAll(result).count()

    assert orphans <= data_files(table)  # still there until maintenance
    exit_code = gamify(
        ["--env", "test", "maintain", "--lakehouse-root", str(lake), "--tables", TABLE, "--retention-hours", "0"]
    )
    assert exit_code == 0
    assert data_files(table) == referenced(table)
    assert orphans & data_files(table) == set()
    assert lakehouse.read(TABLE).count() == ROWS + 1000
