"""The benchmark's summary of repeated nights (medians, every run's seconds, agreement of all
runs), its peak-memory reset between nights, the lakehouse copies the repeats run on, and the
fixed-cost profile's job accounting."""

from __future__ import annotations

import json
from datetime import date

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from bench.bench_night import (
    Night,
    TableTraffic,
    bench_config,
    copy_lakehouse,
    median_stages,
    peak_rss_mb,
    report_references,
    reset_peak_rss,
)
from bench.fixed_cost import covered_seconds, job_intervals
from bench.reference_checks import Check, Reference, events_apart
from bench.write_cost import AS_CONFIGURED, TABLE, cycle, variants
from jobs.pipeline import build_lakehouse

pytestmark = pytest.mark.unit


def _stage(stage: str, seconds: float, **extra) -> dict:
    return {"stage": stage, "seconds": seconds, "rows_in": 1000, "rows_out": 500, "rows_per_s": None, **extra}


def _night(ingest: float, scores: float, reference: float, agree: bool, jvm: float) -> Night:
    return Night(
        [
            _stage("ingest", ingest, jvm_peak_rss_mb=jvm, driver_peak_rss_mb=300.0, spark_jobs=40),
            _stage("scores", scores, reference_seconds=reference, ratio=scores / reference, agree=agree),
        ],
        failure=None,
    )


def test_one_run_is_reported_as_it_ran():
    night = _night(10.0, 6.0, 2.0, True, 4000.0)
    assert median_stages([night]) == night.rows
    assert night.seconds == 16.0


def test_three_runs_give_the_median_of_each_stage_and_keep_every_run():
    runs = [
        _night(12.0, 9.0, 2.0, True, 4000.0),
        _night(10.0, 6.0, 3.0, True, 5000.0),
        _night(30.0, 7.0, 2.5, True, 4500.0),
    ]
    ingest, scores = median_stages(runs)

    assert ingest["seconds"] == 12.0 and ingest["seconds_runs"] == [12.0, 10.0, 30.0]
    assert ingest["rows_per_s"] == round(1000 / 12.0)
    assert ingest["jvm_peak_rss_mb"] == 5000.0 and ingest["driver_peak_rss_mb"] == 300.0
    assert ingest["spark_jobs"] == 40 and "agree" not in ingest and "ratio" not in ingest

    assert scores["seconds"] == 7.0 and scores["reference_seconds"] == 2.5
    assert scores["reference_seconds_runs"] == [2.0, 3.0, 2.5]
    assert scores["ratio"] == 2.8  # median over median, not the median of the runs' ratios
    assert scores["agree"] is True


def test_a_source_is_compared_with_the_reference_on_its_own_normalisation():
    """The CDR reference writes nothing: the ratio takes the source's read seconds, without the
    write every source of the night shares."""
    runs = [
        Night([_stage("ingest:cdr", whole, read_seconds=read, reference_seconds=ref, agree=True)], failure=None)
        for whole, read, ref in ((40.0, 24.0, 10.0), (44.0, 30.0, 12.0), (42.0, 26.0, 11.0))
    ]
    (cdr,) = median_stages(runs)
    assert cdr["seconds"] == 42.0 and cdr["read_seconds"] == 26.0
    assert cdr["read_seconds_runs"] == [24.0, 30.0, 26.0]
    assert cdr["ratio"] == round(26.0 / 11.0, 2)


def test_a_stage_agrees_only_when_every_run_agreed():
    runs = [_night(10.0, 6.0, 2.0, True, 4000.0), _night(10.0, 6.0, 2.0, False, 4000.0)]
    assert median_stages(runs)[1]["agree"] is False
    missing = _night(10.0, 6.0, 2.0, True, 4000.0)
    del missing.rows[1]["reference_seconds"], missing.rows[1]["agree"]  # its reference could not run
    assert median_stages([runs[0], missing])[1]["agree"] is False


def test_a_reference_that_could_not_run_counts_no_seconds_and_leaves_the_median_to_the_others():
    """A reference that failed (a full disk for DuckDB's spill) has no seconds: neither 0.0 in the
    median nor a ratio, and the stage does not agree."""
    runs, printed = [], []
    for read, reference in ((24.0, 10.0), (30.0, None), (26.0, 12.0)):
        night = Night([_stage("ingest:cdr", read + 16.0, read_seconds=read)], failure=None)
        check = Check("cdr_ingest", reference or 0.0, reference is not None)
        if reference is None:
            check.details["error"] = "IOException: No space left on device"
        night.checks["cdr_ingest"] = check
        report_references(night, printed.append)
        runs.append(night)
    assert runs[1].rows[0]["reference_seconds"] is None and runs[1].rows[0]["ratio"] is None
    assert "duckdb       - s  ratio      -  DISAGREE" in printed[1]
    (cdr,) = median_stages(runs)
    assert cdr["reference_seconds_runs"] == [10.0, 12.0] and cdr["reference_seconds"] == 11.0
    assert cdr["ratio"] == round(26.0 / 11.0, 2) and cdr["agree"] is False


def _cdr_events(rows: list[tuple], extra: dict | None = None) -> pa.Table:
    """CDR events as the comparison reads them: id, subscriber, subtype, date, quantity, attributes."""
    names = ["event_id", "subscriber_id", "event_subtype", "event_date", "quantity", "attributes"]
    columns = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    types = [pa.string(), pa.string(), pa.string(), pa.date32(), pa.float64(), pa.map_(pa.string(), pa.string())]
    table = pa.table({name: pa.array(columns[name], type) for name, type in zip(names, types, strict=True)})
    for name, values in (extra or {}).items():
        table = table.append_column(name, pa.array(values))
    return table


def test_events_apart_counts_each_sides_events_the_other_lacks_copies_included(tmp_path):
    ds = date(2025, 3, 2)
    cell = {"cell_id": "C1", "roaming": "N", "counterpart_id": "p9"}
    events = [
        ("e1", "s1", "voice_out", ds, 0.1 + 0.2, cell),  # 0.30000000000000004: equal to 0.3 within 9 decimals
        ("e2", "s1", "sms_out", ds, 1.0, {"cell_id": "C1", "roaming": "N"}),
        ("e3", "s2", "data_session", ds, 2.5, {"cell_id": "C2", "roaming": "N"}),
    ]
    reference = [("e1", "s1", "voice_out", ds, 0.3, cell), events[1], events[2]]
    ref = Reference(tmp_path)
    try:

        def apart(spark_rows: list[tuple], reference_rows: list[tuple]) -> tuple[int, int]:
            n, m = len(spark_rows), len(reference_rows)
            # rows the comparison leaves out: another source's, another ingest's, the reference's rejects
            spark_rows = [*spark_rows, ("x1", "s1", "topup", ds, 5.0, {}), ("x2", "s1", "voice_out", ds, 1.0, {})]
            spark = _cdr_events(
                spark_rows,
                {"ingest_date": [ds] * n + [ds, date(2025, 3, 1)], "source": ["cdr"] * n + ["billing", "cdr"]},
            )
            reference_rows = [*reference_rows, (None, "s3", None, None, None, None)]
            reference_table = _cdr_events(reference_rows, {"reject_reason": [None] * m + ["invalid_msisdn"]})
            ref.con.register("events", spark)
            ref.con.register("reference_rows", reference_table)
            ref.con.execute("create or replace temp table cdr_reference as from reference_rows")
            return events_apart(ref, ds)

        assert apart(events, reference) == (0, 0)
        moved = [*events[:2], ("e3", "s2", "data_session", ds, 2.5, {"cell_id": "C3", "roaming": "N"})]
        assert apart(moved, reference) == (1, 1)  # one attribute differs: one event each side
        assert apart([*events, events[1]], reference) == (1, 0)  # a copy in Spark's events
        assert apart(events[:2], reference) == (0, 1)  # an event Spark lacks
        late = [*events[:2], ("e3", "s2", "data_session", date(2025, 3, 1), 2.5, events[2][5])]
        assert apart(late, reference) == (1, 1)  # another event date
    finally:
        ref.close()


def test_job_seconds_count_overlapping_jobs_once():
    # two jobs overlap by 1 s, a third runs apart; an empty list covers nothing
    assert covered_seconds([(1000, 3000), (2000, 4000), (10000, 10500)]) == 3.5
    assert covered_seconds([(5000, 6000), (1000, 9000)]) == 8.0
    assert covered_seconds([]) == 0


def test_job_intervals_pair_starts_with_ends_from_the_event_log(tmp_path):
    log = tmp_path / "app-1" / "events_1"
    log.parent.mkdir()
    events = [
        {"Event": "SparkListenerApplicationStart", "Timestamp": 1},
        {"Event": "SparkListenerJobStart", "Job ID": 0, "Submission Time": 100},
        {"Event": "SparkListenerJobStart", "Job ID": 1, "Submission Time": 150},
        {"Event": "SparkListenerJobEnd", "Job ID": 1, "Completion Time": 400},
        {"Event": "SparkListenerJobEnd", "Job ID": 0, "Completion Time": 900},
        {"Event": "SparkListenerJobStart", "Job ID": 2, "Submission Time": 1000},  # still running
    ]
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert sorted(job_intervals(tmp_path)) == [(100, 900), (150, 400)]


def test_a_peak_read_after_a_reset_covers_only_what_ran_since():
    """Each night resets the peaks, so that what the process held before it (the history nights,
    an earlier size or repeat) is not counted as that night's."""
    assert reset_peak_rss("self")
    before = peak_rss_mb()  # the resident memory now, whatever the process held earlier
    block = b"x" * (256 * 2**20)  # every page written: resident
    during = peak_rss_mb()
    del block
    assert reset_peak_rss("self")
    after = peak_rss_mb()
    assert before is not None and during is not None and after is not None
    assert during - before > 200
    assert during - after > 200


def test_a_repeats_copy_shares_the_data_files_and_owns_its_delta_log(tmp_path):
    table = tmp_path / "lakehouse" / "events"
    (table / "_delta_log").mkdir(parents=True)
    (table / "event_date=2025-03-31").mkdir()
    data = table / "event_date=2025-03-31" / "part-00000.snappy.parquet"
    data.write_bytes(b"rows")
    commit = table / "_delta_log" / "00000000000000000000.json"
    commit.write_text('{"commitInfo": {}}')

    copy_lakehouse(tmp_path / "lakehouse", tmp_path / "copy")

    copied_data = tmp_path / "copy" / "events" / "event_date=2025-03-31" / "part-00000.snappy.parquet"
    copied_commit = tmp_path / "copy" / "events" / "_delta_log" / "00000000000000000000.json"
    assert copied_data.stat().st_ino == data.stat().st_ino  # one file on disk for both
    assert copied_commit.stat().st_ino != commit.stat().st_ino
    copied_commit.write_text("{}")  # what one copy's log does stays in that copy
    copied_data.unlink()  # VACUUM in the copy
    assert commit.read_text() == '{"commitInfo": {}}' and data.read_bytes() == b"rows"


def test_write_cost_variants_are_the_configured_settings_then_one_per_setting():
    assert variants([]) == {AS_CONFIGURED: {}}
    assert variants(["spark.databricks.delta.stats.collect=false", " spark.sql.shuffle.partitions = 1 "]) == {
        AS_CONFIGURED: {},
        "spark.databricks.delta.stats.collect=false": {"spark.databricks.delta.stats.collect": "false"},
        "spark.sql.shuffle.partitions=1": {"spark.sql.shuffle.partitions": "1"},
    }
    for wrong in ("spark.sql.shuffle.partitions", "=1", "spark.sql.shuffle.partitions="):
        with pytest.raises(ValueError, match=f"--set '{wrong}': expected KEY=VALUE"):
            variants([wrong])


def test_a_write_cost_cycle_replaces_its_date_and_times_each_step(spark, tmp_path):
    lakehouse = build_lakehouse(spark, bench_config(tmp_path, "test", {}))  # the benchmark's own configuration
    day, other = date(2025, 1, 1), date(2025, 1, 2)
    for ds, rows in ((day, 7), (other, 5), (day, 3)):
        seconds = cycle(spark, lakehouse, ds, rows)
        assert len(seconds) == 3 and all(s > 0 for s in seconds)
    counts = {r.ds: r["count"] for r in lakehouse.read(TABLE).groupBy("ds").count().collect()}
    assert counts == {day: 3, other: 5}  # the second write of `day` replaced its 7 rows
    assert lakehouse.version(TABLE) == 3  # the table's creation, then one commit per write


def test_rows_in_counts_each_partition_once_as_of_the_version_read(tmp_path):
    """A stage's rows in: a partition read twice counts once, a read pinned to a version counts
    that version's rows, and the same read unpinned the latest rows."""
    uri = str(tmp_path / "t")
    days = pa.table({"day": [date(2025, 3, 1)] * 3 + [date(2025, 3, 2)] * 2, "n": [1, 2, 3, 4, 5]})
    write_deltalake(uri, days, partition_by=["day"])  # version 0
    write_deltalake(uri, days.slice(0, 1), partition_by=["day"], mode="append")  # version 1: 4 rows on 03-01
    first = (("day", "=", "2025-03-01"),)

    pinned = TableTraffic(reads=[("t", first, 0), ("t", first, None), ("t", (("day", "=", "2025-03-02"),), None)])
    latest = TableTraffic(reads=[("t", first, None), ("t", first, 0)])

    assert pinned.rows_in(str(tmp_path)) == 3 + 2
    assert latest.rows_in(str(tmp_path)) == 4
