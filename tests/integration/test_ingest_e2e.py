"""Generated operator data through the ingest stage, several nights, end to end."""

from __future__ import annotations

import csv
import re
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from jobs.pipeline import PipelineError
from jobs.privacy import normalise_msisdn
from jobs.sources import Source
from jobs.tables import EVENTS, EVENTS_REJECTED, PIPELINE_RUNS, SUBSCRIBER_PROFILE
from tests.integration.helpers import table_content

pytestmark = pytest.mark.integration

# generator defect kind -> quarantine reason code
DEFECT_REASONS = {
    "bad_line": "malformed_record",
    "duplicate": "duplicate",
    "malformed_timestamp": "invalid_timestamp",
    "missing_msisdn": "missing_field",
    "negative_duration": "negative_duration",
    "unknown_subscriber": "unknown_subscriber",
}


def test_every_source_kind_produces_events(pipeline):
    kinds = {name: spec["kind"] for name, spec in pipeline.config.sources.items()}
    sources = {r.source for r in pipeline.lakehouse.read(EVENTS).select("source").distinct().collect()}
    assert {kinds[s] for s in sources} == {"cdr", "billing", "crm", "app", "network", "dwh", "xiva"}


def test_accounting_balances_and_matches_the_tables(pipeline):
    runs = pipeline.lakehouse.read(PIPELINE_RUNS).filter(
        (F.col("status") == "succeeded") & (F.col("stage") == "ingest")
    )
    runs = runs.collect()
    delivered = {(source, day) for source, days in pipeline.manifest["rows"].items() for day in days}
    delivered |= {("ml_predictions", day) for day in pipeline.manifest["ml_predictions"]}
    assert sorted((r.source, str(r.run_ds)) for r in runs) == sorted(delivered)  # one row per extract delivered
    events = {
        (r.source, r.ingest_date): r["count"]
        for r in pipeline.lakehouse.read(EVENTS).groupBy("source", "ingest_date").count().collect()
    }
    rejected = {
        (r.source, r.ingest_date): r["count"]
        for r in pipeline.lakehouse.read(EVENTS_REJECTED).groupBy("source", "ingest_date").count().collect()
    }
    for run in runs:
        assert run.rows_read == run.rows_accepted + run.rows_rejected + run.rows_duplicate > 0
        assert events.get((run.source, run.run_ds), 0) == run.events_written
        assert rejected.get((run.source, run.run_ds), 0) == run.rows_rejected + run.rows_duplicate


def test_each_injected_defect_is_quarantined_with_its_reason(pipeline):
    expected: dict[tuple[str, str, str], int] = {}
    for source, days in pipeline.manifest["defects"].items():
        for day, kinds in days.items():
            for kind, count in kinds.items():
                key = (source, day, DEFECT_REASONS[kind])
                expected[key] = expected.get(key, 0) + count
    got = {
        (r.source, str(r.ingest_date), r.reject_reason): r["count"]
        for r in pipeline.lakehouse.read(EVENTS_REJECTED)
        .groupBy("source", "ingest_date", "reject_reason")
        .count()
        .collect()
    }
    for day, delivery in pipeline.manifest["ml_predictions"].items():  # an unknown offer or a probability > 1
        for reason in ("unknown_offer", "out_of_range"):
            key = ("ml_predictions", day, reason)
            expected[key] = got.get(key, 0)
        assert sum(n for (s, d, _), n in got.items() if s == "ml_predictions" and d == day) == delivery["defects"]
    assert got == {k: v for k, v in expected.items() if v}


def test_rows_read_equal_the_raw_rows_in_the_extracts(pipeline):
    read = {
        (r.source, str(r.run_ds)): r.rows_read for r in pipeline.lakehouse.read(PIPELINE_RUNS).collect() if r.rows_read
    }
    raw = {(source, day): n for source, days in pipeline.manifest["rows"].items() for day, n in days.items()}
    raw |= {("ml_predictions", day): d["rows"] for day, d in pipeline.manifest["ml_predictions"].items()}
    assert read == raw


def test_rerunning_a_day_gives_identical_tables(pipeline, tmp_path):
    night = pipeline.copy(tmp_path)  # the shared lakehouse stays as the nightly runs left it
    tables = (EVENTS, EVENTS_REJECTED, SUBSCRIBER_PROFILE)
    before = {t: _content(night, t) for t in tables}
    versions = {t: night.lakehouse.version(t) for t in tables}
    night.run(date(2025, 3, 2), stages=["ingest"])
    commits = {t: _commits_after(night, t, versions[t]) for t in tables}
    written = {t: {(h["user_metadata"]["ds"], h["user_metadata"]["stage"]) for h in commits[t]} for t in tables}
    assert written == {t: {("2025-03-02", "ingest")} for t in tables}  # it did write, that day only
    # the CRM snapshot first, then every source's events and quarantine rows together
    assert {t: len(commits[t]) for t in tables} == dict.fromkeys(tables, 1)
    assert {t: _content(night, t) for t in tables} == before


def _commits_after(pipeline, table: str, version: int) -> list[dict]:
    return [h for h in pipeline.lakehouse.history(table, 50) if h["version"] > version]


def _content(pipeline, table: str) -> list[str]:
    return table_content(pipeline.lakehouse, table)


def test_no_phone_number_from_the_extracts_reaches_any_table(pipeline):
    spark, config = pipeline.spark, pipeline.config
    numbers = None
    for spec in config.sources.values():
        source = Source.from_config(spec)
        columns = [c.path for c in source.contract if c.path == spec["subscriber"]["column"] or c.pii]
        path = source.path_for(date(2025, 3, 1), str(pipeline.raw)).rsplit("/", 2)[0] + "/*/*"
        reader = {
            "csv": lambda p, s=source: spark.read.options(**s.options).csv(p),
            "json": spark.read.json,
            "parquet": spark.read.parquet,
        }
        raw = reader[source.format](path)
        for column in columns:
            if source.format == "csv" or "." not in column or column.split(".")[0] in raw.columns:
                digits = raw.select(normalise_msisdn(F.col(column), "33").alias("n")).where(F.length("n") >= 8)
                numbers = digits if numbers is None else numbers.union(digits)
    numbers = numbers.distinct()
    assert numbers.count() > 300  # subscribers, unknown numbers and counterparts
    for table in (EVENTS, EVENTS_REJECTED, SUBSCRIBER_PROFILE, PIPELINE_RUNS):
        df = pipeline.lakehouse.read(table)
        # 64-hex ids and pseudonyms can hold digit runs by chance: blank them out first
        hashes_removed = F.regexp_replace(F.to_json(F.struct(*df.columns)), r"[0-9a-f]{64}", "#")
        text = F.regexp_replace(hashes_removed, r"[ +\-]", "")
        runs = df.select(F.explode(F.regexp_extract_all(text, F.lit(r"(\d{8,16})"), 1)).alias("run"))
        found = runs.select(normalise_msisdn(F.col("run"), "33").alias("n")).join(numbers, "n")
        assert found.count() == 0, f"{table} holds raw phone numbers: {found.limit(3).collect()}"


def test_tables_are_readable_by_the_deltalake_package(pipeline):
    for table in (EVENTS, EVENTS_REJECTED, SUBSCRIBER_PROFILE, PIPELINE_RUNS):
        arrow = pa.table(DeltaTable(pipeline.lakehouse.uri(table)).to_pyarrow_table())
        assert arrow.num_rows == pipeline.lakehouse.read(table).count() > 0
    events = pa.table(
        DeltaTable(pipeline.lakehouse.uri(EVENTS)).to_pyarrow_table(columns=["event_date", "ingest_date"])
    )
    assert {str(d) for d in events.column("event_date").to_pylist()} == {d.isoformat() for d in pipeline.days}


def _crm_snapshot_msisdns(raw: Path) -> set[str]:
    """The last nine digits of every MSISDN on a well-formed CRM snapshot line of any day, read
    with plain Python: nine fields, a known payment type, the folder's day as snapshot date."""
    numbers = set()
    for day in sorted((raw / "crm_subscribers").iterdir()):
        for path in sorted(day.glob("*.csv")):
            with path.open(newline="", encoding="utf-8") as fh:
                for row in list(csv.reader(fh))[1:]:
                    if len(row) != 9 or row[3] not in ("PREPAID", "POSTPAID") or row[8] != day.name:
                        continue
                    digits = re.sub(r"[^0-9]", "", row[0])
                    if 8 <= len(digits) <= 15:
                        numbers.add(digits[-9:])
    return numbers


def test_subscriber_ids_match_the_truth_file(pipeline):
    """Every subscriber of a usable CRM snapshot line has a profile under the id the truth file
    gives for the number, and nobody else has one."""
    truth = {}
    for line in (pipeline.raw / "_truth" / "personas.csv").read_text().splitlines()[1:]:
        msisdn, subscriber_id, _ = line.split(",")
        truth[re.sub(r"[^0-9]", "", msisdn)[-9:]] = subscriber_id
    in_snapshots = _crm_snapshot_msisdns(pipeline.raw)
    assert in_snapshots <= set(truth)  # the snapshots hold the operator's own numbers only
    profile = {
        r.subscriber_id
        for r in pipeline.lakehouse.read(SUBSCRIBER_PROFILE).select("subscriber_id").distinct().collect()
    }
    assert sorted(profile) == sorted(truth[n] for n in in_snapshots)


def test_a_missing_mandatory_extract_fails_with_the_expected_path(pipeline, tmp_path):
    night = pipeline.copy(tmp_path)  # a day the generator never delivered, on a copy of the lakehouse
    with pytest.raises(PipelineError) as error:
        night.run(date(2025, 3, 9), sources=["crm_subscribers", "app"])
    assert f"{night.raw}/crm_subscribers/2025-03-09/*.csv" in str(error.value)
    runs = {
        r.source: (r.status, r.message)
        for r in night.lakehouse.read(PIPELINE_RUNS, partitions=[("run_ds", "=", date(2025, 3, 9))]).collect()
    }
    assert set(runs) == {"crm_subscribers", "app"}
    assert runs["crm_subscribers"][0] == "failed"
    assert runs["crm_subscribers"][1].startswith("source crm_subscribers: no extract for 2025-03-09")
    assert runs["app"][0] == "missing" and "app/2025-03-09" in runs["app"][1]
    assert all("\n" not in message and "Traceback" not in message for _, message in runs.values())
