"""Delta tables: replace-by-run semantics, atomicity, time travel, third-party readability."""

from __future__ import annotations

from datetime import date

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from jobs.lakehouse import Lakehouse, LakehouseError

pytestmark = pytest.mark.unit


@pytest.fixture
def lakehouse(spark, tmp_path):
    return Lakehouse(spark, str(tmp_path / "lake"))


def day_rows(spark, ingest: str, rows: list[tuple[int, str]]):
    """Rows of one run: (id, event_date) with ingest_date fixed to the run date."""
    df = spark.createDataFrame(rows, "id long, event_date string")
    return df.select(
        "id",
        F.col("event_date").cast("date").alias("event_date"),
        F.lit(ingest).cast("date").alias("ingest_date"),
        F.create_map(F.lit("k"), F.col("id").cast("string")).alias("attrs"),
        F.to_timestamp(F.col("event_date")).alias("ts"),
        (F.col("id") * 1.25).cast("decimal(18,4)").alias("amount"),
    )


def write(lakehouse, df, ingest):
    return lakehouse.write(
        df, "t", partition_by=["event_date"], replace_where={"ingest_date": date.fromisoformat(ingest)}
    )


def ids(df) -> list[tuple]:
    return sorted((r.id, str(r.event_date), str(r.ingest_date)) for r in df.collect())


def test_engine_defaults_to_delta_rs_without_the_jars(lakehouse):
    assert lakehouse.engine == "delta-rs"


def test_rerun_replaces_only_its_own_rows_including_late_ones(spark, lakehouse):
    write(lakehouse, day_rows(spark, "2025-03-01", [(1, "2025-03-01"), (2, "2025-03-01")]), "2025-03-01")
    # the next run brings a late row for 03-01: it must not clobber the first run's rows
    write(lakehouse, day_rows(spark, "2025-03-02", [(3, "2025-03-02"), (4, "2025-03-01")]), "2025-03-02")
    # rerun of 03-01 with different content replaces exactly what 03-01 wrote
    result = write(lakehouse, day_rows(spark, "2025-03-01", [(5, "2025-03-01")]), "2025-03-01")
    assert ids(lakehouse.read("t")) == [
        (3, "2025-03-02", "2025-03-02"),
        (4, "2025-03-01", "2025-03-02"),
        (5, "2025-03-01", "2025-03-01"),
    ]
    assert (result.version, result.rows_added) == (2, 1)


def test_time_travel_reads_old_versions(spark, lakehouse):
    write(lakehouse, day_rows(spark, "2025-03-01", [(1, "2025-03-01")]), "2025-03-01")
    write(lakehouse, day_rows(spark, "2025-03-01", [(2, "2025-03-01")]), "2025-03-01")
    assert [r.id for r in lakehouse.read("t", version=0).collect()] == [1]
    assert [r.id for r in lakehouse.read("t").collect()] == [2]
    assert lakehouse.version("t") == 1


def test_an_empty_rerun_removes_the_runs_rows(spark, lakehouse):
    write(lakehouse, day_rows(spark, "2025-03-01", [(1, "2025-03-01")]), "2025-03-01")
    write(lakehouse, day_rows(spark, "2025-03-01", []), "2025-03-01")
    assert lakehouse.read("t").count() == 0


def test_partition_filters_prune_reads(spark, lakehouse):
    write(lakehouse, day_rows(spark, "2025-03-02", [(1, "2025-03-01"), (2, "2025-03-02")]), "2025-03-02")
    pruned = lakehouse.read("t", partitions=[("event_date", ">=", date(2025, 3, 2))])
    assert [r.id for r in pruned.collect()] == [2]
    assert lakehouse.read("t", partitions=[("event_date", "in", [date(2025, 3, 1)])]).count() == 1


def test_a_crash_before_commit_leaves_the_previous_version_intact(spark, lakehouse, monkeypatch):
    write(lakehouse, day_rows(spark, "2025-03-01", [(1, "2025-03-01")]), "2025-03-01")

    def crash(*args, **kwargs):
        raise OSError("simulated crash during commit")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", crash)
    with pytest.raises(OSError, match="simulated crash"):
        write(lakehouse, day_rows(spark, "2025-03-01", [(9, "2025-03-01")]), "2025-03-01")
    monkeypatch.undo()
    assert lakehouse.version("t") == 0
    assert [r.id for r in lakehouse.read("t").collect()] == [1]
    assert pl.read_delta(lakehouse.uri("t"))["id"].to_list() == [1]


def test_tables_are_readable_by_deltalake_and_polars_with_partition_values(spark, lakehouse):
    write(lakehouse, day_rows(spark, "2025-03-02", [(1, "2025-03-01"), (2, "2025-03-02")]), "2025-03-02")
    table = DeltaTable(lakehouse.uri("t"))
    assert table.metadata().partition_columns == ["event_date"]
    frame = pl.read_delta(lakehouse.uri("t")).sort("id")
    assert frame["event_date"].cast(pl.Utf8).to_list() == ["2025-03-01", "2025-03-02"]
    assert [str(a) for a in frame["amount"].to_list()] == ["1.2500", "2.5000"]
    actions = pa.table(DeltaTable(lakehouse.uri("t")).get_add_actions(flatten=True)).to_pylist()
    stats = {row["path"]: row for row in actions}
    assert sum(r["num_records"] for r in stats.values()) == 2
    assert {str(r["min.ingest_date"]) for r in stats.values()} == {"2025-03-02"}


def test_replace_by_a_column_mixed_inside_a_file_is_refused(spark, lakehouse):
    mixed = day_rows(spark, "2025-03-01", [(1, "2025-03-01")]).union(day_rows(spark, "2025-03-03", [(2, "2025-03-01")]))
    lakehouse.write(mixed.coalesce(1), "t", partition_by=["event_date"], replace_where={"event_date": date(2025, 3, 1)})
    with pytest.raises(LakehouseError, match="mixes values of 'ingest_date'"):
        write(lakehouse, day_rows(spark, "2025-03-02", [(3, "2025-03-02")]), "2025-03-02")


def test_partitioning_must_match_the_table(spark, lakehouse):
    write(lakehouse, day_rows(spark, "2025-03-01", [(1, "2025-03-01")]), "2025-03-01")
    with pytest.raises(LakehouseError, match="partitioned by"):
        lakehouse.write(
            day_rows(spark, "2025-03-01", []),
            "t",
            partition_by=["ingest_date"],
            replace_where={"ingest_date": "2025-03-01"},
        )
