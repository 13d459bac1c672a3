"""Delta tables on delta-spark: replace-by-run semantics, time travel, schema evolution with intent,
commit metadata, documentation, file sizing, maintenance and third-party readability."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from pyspark.sql import functions as F

from jobs.lakehouse import Lakehouse, LakehouseError, SchemaChangeError, local_path

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Doc:
    description: str
    columns: dict[str, str]

    def comments(self) -> dict[str, str]:
        return self.columns


DOCS = {"t": Doc("one row per test event; by event_date", {"id": "event number", "amount": "amount in EUR"})}


@pytest.fixture
def lakehouse(spark, tmp_path):
    return Lakehouse(
        spark, str(tmp_path / "lake"), docs=DOCS.get, single_file_tables=("small",), unshuffled_tables=("direct",)
    )


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


def write(lakehouse, df, ingest, table="t"):
    return lakehouse.write(
        df, table, partition_by=["event_date"], replace_where={"ingest_date": date.fromisoformat(ingest)}
    )


def ids(df) -> list[tuple]:
    return sorted((r.id, str(r.event_date), str(r.ingest_date)) for r in df.collect())


def parquet_files(lakehouse, table) -> set[str]:
    root = Path(lakehouse.uri(table))
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet") if "_delta_log" not in p.parts}


def referenced_files(lakehouse, table) -> set[str]:
    root = lakehouse.uri(table)
    return {uri.removeprefix("file://").removeprefix(root + "/") for uri in DeltaTable(root).file_uris()}


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
    # version 0 creates the table with its documentation, then one commit per write
    assert (result.version, result.rows_added, result.files_added) == (3, 1, 1)


def test_a_file_uri_root_is_the_local_path_it_names(spark, tmp_path):
    root = tmp_path / "lake with space"
    lakehouse = Lakehouse(spark, root.as_uri() + "/")  # file:///.../lake%20with%20space/
    assert lakehouse.root == str(root)
    write(lakehouse, day_rows(spark, "2025-03-01", [(1, "2025-03-01")]), "2025-03-01")
    assert ids(Lakehouse(spark, str(root)).read("t")) == [(1, "2025-03-01", "2025-03-01")]
    assert lakehouse.tables() == ["t"]
    with pytest.raises(LakehouseError, match=r"file:///path"):
        Lakehouse(spark, "file://otherhost/lake")


def test_delta_rs_reads_a_percent_escape_in_a_local_path_as_the_character_so_such_roots_are_refused(tmp_path):
    write_deltalake(str(tmp_path / "lake house" / "t"), pa.table({"id": [1, 2]}))
    write_deltalake(str(tmp_path / "plain" / "t"), pa.table({"id": [3]}))
    (tmp_path / "plain").rename(tmp_path / "lake%20house")

    def files(table: Path) -> list[str]:
        return [uri.rsplit("/", 1)[1] for uri in DeltaTable(str(table)).file_uris()]

    assert files(tmp_path / "lake%20house" / "t") == files(tmp_path / "lake house" / "t")  # the other's log
    for root in (f"{tmp_path}/lake%20house", f"file://{tmp_path}/lake%2520house", "/data/%4a"):
        with pytest.raises(LakehouseError, match=r"holds '%(20|4a)', which delta-rs .* reads as the character"):
            local_path(root)
    for root in ("/data/50%_off#1?x y", "s3://bucket/lake%20house", f"file://{tmp_path}/lake%20house"):
        assert local_path(root) == (f"{tmp_path}/lake house" if root.startswith("file:") else root)


def test_a_write_must_match_what_it_replaces(spark, lakehouse):
    write(lakehouse, day_rows(spark, "2025-03-01", [(1, "2025-03-01")]), "2025-03-01")
    with pytest.raises(Exception, match=r"(?i)replaceWhere|DELTA_REPLACE_WHERE"):
        write(lakehouse, day_rows(spark, "2025-03-02", [(2, "2025-03-02")]), "2025-03-01")
    assert ids(lakehouse.read("t")) == [(1, "2025-03-01", "2025-03-01")]


def test_time_travel_reads_old_versions(spark, lakehouse):
    write(lakehouse, day_rows(spark, "2025-03-01", [(1, "2025-03-01")]), "2025-03-01")
    write(lakehouse, day_rows(spark, "2025-03-01", [(2, "2025-03-01")]), "2025-03-01")
    assert [r.id for r in lakehouse.read("t", version=1).collect()] == [1]
    assert [r.id for r in lakehouse.read("t").collect()] == [2]
    assert lakehouse.version("t") == 2


def test_an_empty_rerun_removes_the_runs_rows(spark, lakehouse):
    write(lakehouse, day_rows(spark, "2025-03-01", [(1, "2025-03-01")]), "2025-03-01")
    write(lakehouse, day_rows(spark, "2025-03-01", []), "2025-03-01")
    assert lakehouse.read("t").count() == 0


def test_partition_filters_prune_reads(spark, lakehouse):
    write(lakehouse, day_rows(spark, "2025-03-02", [(1, "2025-03-01"), (2, "2025-03-02")]), "2025-03-02")
    pruned = lakehouse.read("t", partitions=[("event_date", ">=", date(2025, 3, 2))])
    assert [r.id for r in pruned.collect()] == [2]
    assert lakehouse.read("t", partitions=[("event_date", "in", [date(2025, 3, 1)])]).count() == 1
    assert lakehouse.partition_values("t", "event_date") == ["2025-03-01", "2025-03-02"]


def test_partition_rows_add_up_each_partitions_files_from_the_log(spark, lakehouse):
    assert lakehouse.partition_rows("t", "event_date") == {}  # no table yet
    write(lakehouse, day_rows(spark, "2025-03-01", [(1, "2025-03-01"), (2, "2025-03-01")]), "2025-03-01")
    write(lakehouse, day_rows(spark, "2025-03-02", [(3, "2025-03-01"), (4, "2025-03-02")]), "2025-03-02")
    assert len(DeltaTable(lakehouse.uri("t")).file_uris()) == 3  # two files in the first partition
    assert lakehouse.partition_rows("t", "event_date") == {"2025-03-01": 3, "2025-03-02": 1}


def test_commits_record_run_date_stage_and_run_id(spark, lakehouse):
    with lakehouse.committing(ds="2025-03-01", stage="ingest"):
        write(lakehouse, day_rows(spark, "2025-03-01", [(1, "2025-03-01")]), "2025-03-01")
    with lakehouse.committing(ds="2025-03-02", stage="ingest"):
        write(lakehouse, day_rows(spark, "2025-03-02", [(2, "2025-03-02")]), "2025-03-02")
    history = lakehouse.history("t")
    written = [(h["version"], h["user_metadata"].get("ds"), h["user_metadata"].get("stage")) for h in history]
    assert written[:2] == [(2, "2025-03-02", "ingest"), (1, "2025-03-01", "ingest")]
    assert history[0]["user_metadata"]["run_id"] == lakehouse.commit_info["run_id"]
    assert "ds" not in lakehouse.commit_info  # the context is restored after the block
    # the same answer from SQL, as an analyst would ask it
    row = spark.sql(f"describe history delta.`{lakehouse.uri('t')}` limit 1").first()
    assert '"ds": "2025-03-02"' in row["userMetadata"]


def test_tables_carry_description_column_comments_and_properties(spark, lakehouse):
    write(lakehouse, day_rows(spark, "2025-03-01", [(1, "2025-03-01")]), "2025-03-01")
    detail = spark.sql(f"describe detail delta.`{lakehouse.uri('t')}`").first()
    assert detail["description"] == "one row per test event; by event_date"
    assert detail["properties"]["delta.logRetentionDuration"] == "interval 30 days"
    assert detail["properties"]["delta.deletedFileRetentionDuration"] == "interval 7 days"
    comments = {f.name: f.metadata.get("comment") for f in lakehouse.read("t").schema.fields}
    assert comments == {
        "id": "event number",
        "event_date": None,
        "ingest_date": None,
        "attrs": None,
        "ts": None,
        "amount": "amount in EUR",
    }


def statistics_written(lakehouse, table) -> list[set[str]]:
    """For each file the table's newest commit added: the columns its min/max statistics cover,
    as written in the log (readers apply the table's current setting to older files)."""
    log = Path(lakehouse.uri(table)) / "_delta_log" / f"{lakehouse.version(table):020d}.json"
    adds = [json.loads(line)["add"] for line in log.read_text().splitlines() if '"add"' in line]
    return [set(json.loads(a["stats"])["minValues"]) for a in adds]


def test_statistics_cover_only_the_configured_columns_from_creation_or_the_next_write(spark, tmp_path):
    plain = Lakehouse(spark, str(tmp_path / "lake"), docs=DOCS.get)
    write(plain, day_rows(spark, "2025-03-01", [(1, "2025-03-01")]), "2025-03-01")
    assert statistics_written(plain, "t") == [{"id", "ingest_date", "ts", "amount"}]  # Delta's default

    listed = {"t": ("id", "ingest_date"), "new": ("id", "ingest_date")}
    configured = Lakehouse(spark, str(tmp_path / "lake"), docs=DOCS.get, stats_columns=listed)
    write(configured, day_rows(spark, "2025-03-02", [(2, "2025-03-02")]), "2025-03-02")  # an existing table
    write(configured, day_rows(spark, "2025-03-02", [(2, "2025-03-02")]), "2025-03-02", table="new")
    for table in ("t", "new"):
        detail = spark.sql(f"describe detail delta.`{configured.uri(table)}`").first()
        assert detail["properties"]["delta.dataSkippingStatsColumns"] == "id,ingest_date"
        assert statistics_written(configured, table) == [{"id", "ingest_date"}]
    history = configured.history("t", 5)
    assert [h["operation"] for h in history][:3] == ["WRITE", "SET TBLPROPERTIES", "WRITE"]
    assert history[1]["user_metadata"]["run_id"] == configured.commit_info["run_id"]
    assert ids(configured.read("t").filter("ingest_date = date'2025-03-02'")) == [(2, "2025-03-02", "2025-03-02")]
    write(configured, day_rows(spark, "2025-03-03", [(3, "2025-03-03")]), "2025-03-03")  # set once
    assert [h["operation"] for h in configured.history("t", 5)][:2] == ["WRITE", "WRITE"]


def test_an_added_column_merges_into_the_table_and_old_rows_read_null(spark, lakehouse):
    write(lakehouse, day_rows(spark, "2025-03-01", [(1, "2025-03-01")]), "2025-03-01")
    wider = day_rows(spark, "2025-03-02", [(2, "2025-03-02")]).withColumn("roaming_mb", F.lit(12.5))
    write(lakehouse, wider, "2025-03-02")
    rows = sorted((r.id, r.roaming_mb) for r in lakehouse.read("t").collect())
    assert rows == [(1, None), (2, 12.5)]
    assert pl.read_delta(lakehouse.uri("t")).sort("id")["roaming_mb"].to_list() == [None, 12.5]


def test_an_added_column_s_comment_is_retried_and_carries_the_run(spark, lakehouse, monkeypatch):
    """The comment of an added column is a commit after the data's: another writer committing
    in between is retried, as for a write, and the commit names the run."""
    monkeypatch.setitem(DOCS["t"].columns, "roaming_mb", "roaming data in MB")
    write(lakehouse, day_rows(spark, "2025-03-01", [(1, "2025-03-01")]), "2025-03-01")
    real_sql, refused = spark.sql, []

    def sql(text, *args, **kwargs):
        if text.startswith("alter table") and not refused:
            refused.append(text)
            raise RuntimeError("[DELTA_CONCURRENT_APPEND] ConcurrentAppendException: files were added")
        return real_sql(text, *args, **kwargs)

    monkeypatch.setattr(spark, "sql", sql)
    wider = day_rows(spark, "2025-03-02", [(2, "2025-03-02")]).withColumn("roaming_mb", F.lit(12.5))
    with lakehouse.committing(ds="2025-03-02", stage="activity"):
        write(lakehouse, wider, "2025-03-02")
    assert len(refused) == 1
    comments = {f.name: f.metadata.get("comment") for f in lakehouse.schema("t").fields}
    assert comments["roaming_mb"] == "roaming data in MB"
    latest = lakehouse.history("t", 1)[0]
    assert latest["operation"] == "CHANGE COLUMN"
    assert (latest["user_metadata"]["ds"], latest["user_metadata"]["stage"]) == ("2025-03-02", "activity")


def test_a_retyped_column_fails_naming_table_column_and_both_types(spark, lakehouse):
    write(lakehouse, day_rows(spark, "2025-03-01", [(1, "2025-03-01")]), "2025-03-01")
    retyped = day_rows(spark, "2025-03-02", [(2, "2025-03-02")]).withColumn("amount", F.lit("2.5"))
    with pytest.raises(SchemaChangeError) as error:
        write(lakehouse, retyped, "2025-03-02")
    message = str(error.value)
    assert "table 't'" in message and "'amount'" in message
    assert "from decimal(18,4) to string" in message and "new column name" in message
    assert lakehouse.version("t") == 1  # nothing committed


def test_a_dropped_column_fails_and_says_what_to_do(spark, lakehouse):
    write(lakehouse, day_rows(spark, "2025-03-01", [(1, "2025-03-01")]), "2025-03-01")
    with pytest.raises(SchemaChangeError, match=r"column 'attrs' \(map<string,string>\) is missing from the write"):
        write(lakehouse, day_rows(spark, "2025-03-02", [(2, "2025-03-02")]).drop("attrs"), "2025-03-02")


def test_a_write_is_one_file_per_partition_however_many_tasks_made_it(spark, lakehouse):
    rows = [(i, f"2025-03-0{1 + i % 2}") for i in range(200)]
    scattered = day_rows(spark, "2025-03-02", rows).repartition(16)
    result = write(lakehouse, scattered, "2025-03-02")
    assert result.files_added == 2  # one per event_date, not 16 x 2
    assert len(parquet_files(lakehouse, "t")) == 2


def test_an_unshuffled_table_writes_each_task_s_rows_where_they_are(spark, lakehouse):
    rows = [(i, f"2025-03-0{1 + i % 2}") for i in range(200)]
    scattered = day_rows(spark, "2025-03-02", rows).repartition(4)
    result = write(lakehouse, scattered, "2025-03-02", table="direct")
    assert result.files_added == 8  # no optimized-write shuffle: each of the 4 tasks writes both dates
    assert len(parquet_files(lakehouse, "direct")) == 8
    assert ids(lakehouse.read("direct")) == sorted((i, d, "2025-03-02") for i, d in rows)


def test_single_file_tables_write_one_file_per_commit(spark, lakehouse):
    df = day_rows(spark, "2025-03-01", [(i, "2025-03-01") for i in range(50)]).repartition(8)
    lakehouse.write(df, "small", partition_by=["ingest_date"], replace_where={"ingest_date": "2025-03-01"})
    assert len(parquet_files(lakehouse, "small")) == 1


def test_a_single_file_table_keeps_one_file_per_partition_across_writers(spark, lakehouse):
    def runs(stage: str, sources: list[str | None]):
        rows = [(stage, s) for s in sources]
        return spark.createDataFrame(rows, "stage string, source string").withColumn(
            "run_ds", F.lit("2025-03-01").cast("date")
        )

    day = date(2025, 3, 1)
    lakehouse.write(runs("ingest", ["cdr", "app"]), "small", partition_by=["run_ds"], replace_where={"run_ds": day})
    lakehouse.write(
        runs("scores", [None]), "small", partition_by=["run_ds"], replace_where={"run_ds": day, "stage": "scores"}
    )
    lakehouse.write(
        runs("ingest", ["app"]),
        "small",
        partition_by=["run_ds"],
        replace_where={"run_ds": day, "stage": "ingest", "source": ["app"]},
    )
    written = sorted((r.stage, r.source) for r in lakehouse.read("small").collect())
    assert written == [("ingest", "app"), ("ingest", "cdr"), ("scores", None)]  # null sources stay too
    assert len(referenced_files(lakehouse, "small")) == 1


def test_a_single_file_table_refuses_rows_outside_what_the_write_replaces(spark, lakehouse):
    def runs(sources: list[str]):
        rows = [("ingest", s) for s in sources]
        return spark.createDataFrame(rows, "stage string, source string").withColumn(
            "run_ds", F.lit("2025-03-01").cast("date")
        )

    day = date(2025, 3, 1)
    lakehouse.write(runs(["cdr", "app"]), "small", partition_by=["run_ds"], replace_where={"run_ds": day})
    # a rerun of `app` whose frame also holds a `cdr` row: that row must not sit beside the kept one
    with pytest.raises(Exception, match=r"(?i)replaceWhere|DELTA_REPLACE_WHERE"):
        lakehouse.write(
            runs(["app", "cdr"]),
            "small",
            partition_by=["run_ds"],
            replace_where={"run_ds": day, "stage": "ingest", "source": ["app"]},
        )
    assert sorted((r.stage, r.source) for r in lakehouse.read("small").collect()) == [
        ("ingest", "app"),
        ("ingest", "cdr"),
    ]


def test_maintenance_compacts_then_reruns_still_replace_exactly_their_rows(spark, lakehouse):
    for day in ("2025-03-01", "2025-03-02", "2025-03-03"):  # three runs, all with rows for 03-01
        write(lakehouse, day_rows(spark, day, [(int(day[-1]), "2025-03-01"), (10 + int(day[-1]), day)]), day)
    assert len(parquet_files(lakehouse, "t")) == 5
    result = lakehouse.maintain("t", retention_hours=0)
    assert (result.files_compacted, result.files_written) == (3, 1)  # the 03-01 partition: three runs, one file
    assert result.files_vacuumed == 3
    assert parquet_files(lakehouse, "t") == referenced_files(lakehouse, "t")
    # a rerun of 03-02 after compaction: only its own rows change, the others stay
    write(lakehouse, day_rows(spark, "2025-03-02", [(7, "2025-03-01")]), "2025-03-02")
    assert ids(lakehouse.read("t")) == [
        (1, "2025-03-01", "2025-03-01"),
        (3, "2025-03-01", "2025-03-03"),
        (7, "2025-03-01", "2025-03-02"),
        (11, "2025-03-01", "2025-03-01"),
        (13, "2025-03-03", "2025-03-03"),
    ]
    assert Path(lakehouse.uri("t"), "_delta_log", "_last_checkpoint").exists()
    history = lakehouse.history("t", 10)
    assert any(h["operation"] == "OPTIMIZE" and h["user_metadata"].get("stage") == "maintain" for h in history)


def test_tables_are_readable_by_deltalake_and_polars_with_partition_values(spark, lakehouse):
    write(lakehouse, day_rows(spark, "2025-03-02", [(1, "2025-03-01"), (2, "2025-03-02")]), "2025-03-02")
    table = DeltaTable(lakehouse.uri("t"))
    assert table.metadata().partition_columns == ["event_date"]
    frame = pl.read_delta(lakehouse.uri("t")).sort("id")
    assert frame["event_date"].cast(pl.Utf8).to_list() == ["2025-03-01", "2025-03-02"]
    assert [str(a) for a in frame["amount"].to_list()] == ["1.2500", "2.5000"]
    maps = [a if isinstance(a, dict) else {e["key"]: e["value"] for e in a} for a in frame["attrs"].to_list()]
    assert maps == [{"k": "1"}, {"k": "2"}]


def test_partitioning_must_match_the_table(spark, lakehouse):
    write(lakehouse, day_rows(spark, "2025-03-01", [(1, "2025-03-01")]), "2025-03-01")
    with pytest.raises(LakehouseError, match="partitioned by"):
        lakehouse.write(
            day_rows(spark, "2025-03-01", []),
            "t",
            partition_by=["ingest_date"],
            replace_where={"ingest_date": "2025-03-01"},
        )


def test_a_write_needs_a_replace_predicate(spark, lakehouse):
    with pytest.raises(LakehouseError, match="replace_where"):
        lakehouse.write(day_rows(spark, "2025-03-01", []), "t", partition_by=["event_date"], replace_where={})


def test_nested_not_null_fields_are_stored_nullable_and_rewritten_without_a_type_change(spark, lakehouse):
    breakdown = F.create_map(F.lit("recency"), F.struct(F.lit(1.5).alias("points"))).alias("breakdown")
    df = spark.range(2).select("id", breakdown, F.lit(date(2025, 3, 1)).alias("event_date"))
    for _ in range(2):  # created from a schema with nested NOT NULL, then rewritten with it
        lakehouse.write(df, "scores", partition_by=["event_date"], replace_where={"event_date": date(2025, 3, 1)})
    assert sorted((r.id, r.breakdown["recency"].points) for r in lakehouse.read("scores").collect()) == [
        (0, 1.5),
        (1, 1.5),
    ]
