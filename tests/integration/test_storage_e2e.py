"""The lakehouse of the generated operator's nightly runs as delta-spark wrote it: every table
reads the same through Spark and through `deltalake`, every commit says which night and stage
wrote it, a day's partition is a handful of files, the largest tables keep file statistics on
the configured columns only, and a metric added in YAML evolves the table."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.config import DEFAULT_CONF_DIR, load_config
from jobs.context import RunContext, build_lakehouse
from jobs.pipeline import STAGES, run_stages
from jobs.tables import DAILY_ACTIVITY, EVENTS

pytestmark = pytest.mark.integration

NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)


def test_every_table_reads_the_same_through_spark_and_deltalake(pipeline):
    tables = pipeline.lakehouse.tables()
    assert {EVENTS, DAILY_ACTIVITY, "mission_progress", "loyalty_ledger", "quality_results"} <= set(tables)
    for table in tables:
        spark_df = pipeline.lakehouse.read(table)
        arrow = pa.table(DeltaTable(pipeline.lakehouse.uri(table)).to_pyarrow_table())
        assert sorted(arrow.column_names) == sorted(spark_df.columns), table
        numeric = [f.name for f in spark_df.schema.fields if isinstance(f.dataType, NUMERIC)]
        sums = spark_df.agg(F.count(F.lit(1)).alias("_rows"), *[F.sum(c).alias(c) for c in numeric]).first()
        assert arrow.num_rows == sums["_rows"], table
        for column in numeric:
            expected = sums[column]
            found = pc.sum(arrow.column(column)).as_py()
            assert (found is None) == (expected is None), (table, column)
            if expected is not None:
                assert float(found) == pytest.approx(float(expected), rel=1e-9), (table, column)


def test_every_write_records_the_run_date_and_stage(pipeline):
    tables = pipeline.lakehouse.tables()
    written = set()
    for table in tables:
        for commit in pipeline.lakehouse.history(table, 1000):
            if commit["operation"] != "WRITE":
                continue
            written.add(table)
            meta = commit["user_metadata"]
            assert date.fromisoformat(meta["ds"]) in pipeline.days, (table, commit["version"])
            assert set(meta["stage"].split(",")) <= set(STAGES), (table, commit["version"], meta["stage"])
            assert re.fullmatch(r"cli-[0-9a-f]{12}", meta["run_id"]), (table, commit["version"], meta["run_id"])
    assert written == set(tables)
    ingest_days = {
        h["user_metadata"]["ds"]
        for h in pipeline.lakehouse.history(EVENTS, 1000)
        if h["user_metadata"].get("stage") == "ingest"
    }
    assert ingest_days == {d.isoformat() for d in pipeline.days}


def test_the_listed_tables_keep_file_statistics_on_their_configured_columns_only(pipeline):
    listed = pipeline.config.get("lakehouse.stats_columns")
    assert {EVENTS, DAILY_ACTIVITY} <= set(listed)
    for table, columns in listed.items():
        log = DeltaTable(pipeline.lakehouse.uri(table))
        assert log.metadata().configuration["delta.dataSkippingStatsColumns"] == ",".join(columns), table
        commits = sorted(Path(pipeline.lakehouse.uri(table), "_delta_log").glob("*.json"), reverse=True)
        added = next(adds for commit in commits if (adds := _added_files(commit)))  # the newest that wrote files
        assert all(set(json.loads(a["stats"])["minValues"]) == set(columns) for a in added), table


def _added_files(commit: Path) -> list[dict]:
    return [json.loads(line)["add"] for line in commit.read_text().splitlines() if line.startswith('{"add"')]


def test_a_days_partition_is_a_handful_of_files(pipeline):
    """One file per table partition and writer: events of a day come from one write per source."""
    day = pipeline.last_day.isoformat()
    per_partition = {}
    for table in pipeline.lakehouse.tables():
        files = DeltaTable(pipeline.lakehouse.uri(table)).file_uris()
        per_partition[table] = Counter(f.rsplit("/", 2)[-2] for f in files if f"={day}" in f)
    sources = len([s for s in pipeline.config.sources.values() if s.get("active", True)])
    assert max(per_partition[EVENTS].values()) <= sources + 1  # + the late rows of the next writes
    for table in (DAILY_ACTIVITY, "behavior_scores", "mission_progress", "loyalty_tiers", "pipeline_runs"):
        assert max(per_partition[table].values()) <= 2, (table, per_partition[table])


def test_a_metric_added_in_yaml_becomes_a_column_and_older_rows_read_null(pipeline, spark, tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    shutil.copytree(DEFAULT_CONF_DIR.parent / "templates", tmp_path / "templates")  # beside conf/, as in a checkout
    metrics = yaml.safe_load((conf / "metrics.yaml").read_text())
    metrics["daily_metrics"]["sms_out_count"] = {
        "when": "event_type == 'cdr' and event_subtype == 'sms_out'",
        "sources": ["cdr"],
    }
    (conf / "metrics.yaml").write_text(yaml.safe_dump(metrics, sort_keys=False))
    lake = tmp_path / "lakehouse"
    shutil.copytree(pipeline.lakehouse.root, lake)  # the shared lakehouse stays as it was
    config = load_config(conf, "test", {"raw.root": str(pipeline.raw), "lakehouse.root": str(lake)}, environ={})
    lakehouse = build_lakehouse(spark, config)
    ds = pipeline.last_day
    run_stages(RunContext(spark, config, lakehouse, ds), ["activity"])

    activity = lakehouse.read(DAILY_ACTIVITY)
    assert "sms_out_count" in activity.columns
    expected = (
        lakehouse.read(EVENTS, partitions=[("event_date", "=", ds)])
        .filter((F.col("event_type") == "cdr") & (F.col("event_subtype") == "sms_out"))
        .count()
    )
    today = activity.filter(F.col("activity_date") == F.lit(ds))
    assert today.agg(F.sum("sms_out_count")).first()[0] == expected > 0
    by_day = {
        r.activity_date: (r.rows, r.filled)
        for r in activity.groupBy("activity_date")
        .agg(F.count(F.lit(1)).alias("rows"), F.count("sms_out_count").alias("filled"))
        .collect()
    }
    # the day rerun has the metric on every row; days written before the metric existed read null
    assert {day: filled == (rows if day == ds else 0) for day, (rows, filled) in by_day.items()} == dict.fromkeys(
        by_day, True
    )
    assert sorted(by_day) == pipeline.days
    arrow = pa.table(DeltaTable(str(lake / DAILY_ACTIVITY)).to_pyarrow_table(columns=["sms_out_count"]))
    assert arrow.column("sms_out_count").null_count == sum(rows for day, (rows, _) in by_day.items() if day != ds)


def test_tables_carry_the_data_dictionary(pipeline, spark):
    from jobs.docs import configured_specs

    specs = {s.name: s for s in configured_specs(pipeline.config.conf_dir)}
    for table in pipeline.lakehouse.tables():
        spec = specs[table]
        detail = spark.sql(f"describe detail delta.`{pipeline.lakehouse.uri(table)}`").first()
        assert detail["description"] == spec.description, table
        comments = {f.name: f.metadata.get("comment") for f in pipeline.lakehouse.read(table).schema.fields}
        assert comments == {c: spec.comments().get(c) for c in comments}, table
    data_mb = next(f for f in pipeline.lakehouse.read(DAILY_ACTIVITY).schema.fields if f.name == "data_mb")
    assert data_mb.metadata["comment"] == specs[DAILY_ACTIVITY].comments()["data_mb"]  # from conf/metrics.yaml
