"""The bad-input corpus ingested in one night: nothing crashes, every line is accounted for,
every problem has a clear reason, and no phone number appears in any table, message, log or
Spark plan."""

from __future__ import annotations

import logging
import re
import shutil
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs import ingest
from jobs.config import load_config
from jobs.ingest import ACCEPTED, IngestContext, classify, run_ingest
from jobs.lakehouse import Lakehouse
from jobs.pipeline import build_lakehouse
from jobs.sources import Source, conform, read_extract
from jobs.tables import EVENTS, EVENTS_REJECTED, PIPELINE_RUNS
from tests.integration.bad_input import corpus

pytestmark = pytest.mark.integration

KEY = "corpus-key-Xy7"


@pytest.fixture(scope="module")
def night(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    cases = corpus.write(root / "raw")
    (root / "raw" / "mandatory_feed" / corpus.DS.isoformat()).mkdir(parents=True)
    (root / "raw" / "mandatory_feed" / corpus.DS.isoformat() / "only.csv").write_bytes(b"")
    config = load_config(
        env="test", overrides={"raw.root": str(root / "raw"), "lakehouse.root": str(root / "lh")}, environ={}
    )
    lakehouse = build_lakehouse(spark, config)
    mandatory = {**corpus.CSV_SOURCE, "name": "mandatory_feed", "mandatory": True}
    mandatory["connection"] = {"path": "{raw_root}/mandatory_feed/{ds}/*.csv"}
    sources = [
        Source.from_config(corpus.CSV_SOURCE, "tests/calls.yaml"),
        Source.from_config(corpus.JSON_SOURCE, "tests/wallet.yaml"),
        Source.from_config(mandatory, "tests/mandatory_feed.yaml"),
    ]
    ctx = IngestContext(ds=corpus.DS, timezone="Europe/Paris", country_code="33", key=KEY, max_lateness_days=3)
    handler = _Capture()
    logging.getLogger().addHandler(handler)
    try:
        results = {r.source: r for r in run_ingest(lakehouse, sources, ctx, str(root / "raw"), 7)}
    finally:
        logging.getLogger().removeHandler(handler)
    return {
        "cases": cases,
        "results": results,
        "lakehouse": lakehouse,
        "sources": sources,
        "ctx": ctx,
        "raw": root / "raw",
        "logs": "\n".join(handler.lines),
    }


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.parametrize("source", ["calls", "wallet"])
def test_every_line_is_accounted_for(night, source):
    cases = night["cases"][source]
    result = night["results"][source]
    quarantined_lines = sum(c.lines_read for c in cases if c.file_reason)
    row_rejects = sum(n for c in cases for r, n in c.row_reasons.items() if r != "duplicate")
    duplicates = sum(c.row_reasons["duplicate"] for c in cases)
    assert result.status == "succeeded", result.message
    assert result.rows_read == sum(c.lines_read for c in cases)
    assert result.rows_accepted == sum(c.accepted for c in cases)
    assert result.rows_rejected == quarantined_lines + row_rejects
    assert result.rows_duplicate == duplicates
    assert result.rows_read == result.rows_accepted + result.rows_rejected + result.rows_duplicate


@pytest.mark.parametrize("source", ["calls", "wallet"])
def test_every_problem_has_its_reason(night, source):
    rejected = night["lakehouse"].read(EVENTS_REJECTED).filter(F.col("source") == source)
    got = Counter(
        (r.source_file.rsplit("/", 1)[-1], r.reject_reason)
        for r in rejected.select("source_file", "reject_reason").collect()
    )
    expected = Counter()
    for case in night["cases"][source]:
        if case.file_reason:
            expected[(case.name, case.file_reason)] += 1
        for reason, n in case.row_reasons.items():
            expected[(case.name, reason)] += n
    assert got == expected
    assert [
        (r.reject_reason, r.reject_message)
        for r in rejected.collect()
        if not r.reject_message or len(r.reject_message) < 10
    ] == []


def test_accepted_rows_keep_their_values(night):
    events = night["lakehouse"].read(EVENTS).filter(F.col("source") == "calls")
    by_record = {r.record_key: r for r in events.collect()}
    assert len(by_record) == sum(c.accepted for c in night["cases"]["calls"])
    quantities = sorted((r.quantity is None, round(r.quantity or 0, 6)) for r in by_record.values())
    # 3000 bytes per normal row; the overflowing sum gives no quantity instead of failing the night
    assert quantities.count((False, round(3000 / 1048576, 6))) == len(by_record) - 1
    assert quantities.count((True, 0)) == 1


def test_a_mandatory_source_with_no_usable_file_fails_with_a_clear_message(night):
    result = night["results"]["mandatory_feed"]
    assert result.status == "failed"
    assert "no usable file" in result.message and "only.csv: empty_file" in result.message
    runs = night["lakehouse"].read(PIPELINE_RUNS).filter(F.col("stage") == "ingest")
    assert sorted(r.source for r in runs.collect()) == ["calls", "mandatory_feed", "wallet"]


def test_quarantined_files_are_named_in_pipeline_runs(night):
    message = night["results"]["calls"].message
    assert message.startswith("7 of 17 file(s) quarantined")
    assert "05_gzip_named_csv.csv: compressed_mismatch" in message


def test_no_phone_number_anywhere(night):
    lakehouse = night["lakehouse"]
    texts = [night["logs"]]
    for table in (EVENTS, EVENTS_REJECTED, PIPELINE_RUNS):
        df = lakehouse.read(table)
        texts += [r[0] for r in df.select(F.to_json(F.struct(*df.columns))).collect()]
    for source in night["sources"][:2]:
        extract = read_extract(lakehouse.spark, source, corpus.DS, str(night["raw"]))
        classified = classify(conform(extract.rows, source), source, night["ctx"], None)
        texts.append(classified.filter(F.col("_status") == ACCEPTED)._jdf.queryExecution().toString())
    blob = "\n".join(texts)
    # numbers written with separators or other scripts' digits count too
    ascii_digits = "".join(str(unicodedata.digit(ch)) if ch.isdigit() else ch for ch in blob)
    squeezed = re.sub(r"(?<=[0-9])[ \-./()]{1,3}(?=[0-9])", "", ascii_digits)
    leaks = [n for n in corpus.digit_needles() if n in squeezed]
    assert leaks == []
    assert KEY not in blob and KEY.encode().hex() not in blob.lower()


def test_rerun_gives_the_same_tables(night):
    from tests.integration.helpers import table_content

    lakehouse = night["lakehouse"]
    before = {t: table_content(lakehouse, t) for t in (EVENTS, EVENTS_REJECTED)}
    run_ingest(lakehouse, night["sources"], night["ctx"], str(night["raw"]), 7)
    assert {t: table_content(lakehouse, t) for t in (EVENTS, EVENTS_REJECTED)} == before


def test_a_source_failing_at_write_time_fails_alone(night, tmp_path, monkeypatch):
    """The sources of a run are written together; when that write fails, each is written alone,
    so only the source whose rows broke it fails and the others' rows land."""
    from tests.integration.helpers import table_content

    lake = tmp_path / "lh"
    shutil.copytree(night["lakehouse"].root, lake)
    lakehouse = Lakehouse(night["lakehouse"].spark, str(lake))
    wallet_before = [r for r in table_content(lakehouse, EVENTS) if '"source":"wallet"' in r]
    calls_before = [r for r in table_content(lakehouse, EVENTS) if '"source":"calls"' in r]
    real_to_events = ingest.to_events

    def exploding_wallet(classified, source, ctx):
        events = real_to_events(classified, source, ctx)
        if source.name != "wallet":
            return events
        boom = F.when(F.lit(True), F.raise_error(F.lit("wallet mapping exploded"))).otherwise(F.col("event_type"))
        return events.withColumn("event_type", boom)

    monkeypatch.setattr(ingest, "to_events", exploding_wallet)
    results = {r.source: r for r in run_ingest(lakehouse, night["sources"], night["ctx"], str(night["raw"]), 7)}

    assert results["wallet"].status == "degraded" and "wallet mapping exploded" in results["wallet"].message
    assert results["calls"].status == "succeeded"
    calls = night["results"]["calls"]
    assert (results["calls"].rows_read, results["calls"].events_written) == (calls.rows_read, calls.events_written)
    events = table_content(lakehouse, EVENTS)
    assert [r for r in events if '"source":"calls"' in r] == calls_before  # written again, the same
    assert [r for r in events if '"source":"wallet"' in r] == wallet_before > []  # the earlier run's rows stay
    runs = {r.source: r.status for r in lakehouse.read(PIPELINE_RUNS).filter(F.col("stage") == "ingest").collect()}
    assert runs == {"calls": "succeeded", "wallet": "degraded", "mandatory_feed": "failed"}


def test_corpus_files_are_what_they_claim(night):
    raw: Path = night["raw"]
    gz = (raw / "calls" / corpus.DS.isoformat() / "05_gzip_named_csv.csv").read_bytes()
    assert gz[:2] == b"\x1f\x8b"
    ten_mb = raw / "calls" / corpus.DS.isoformat() / "16_ten_megabyte_line.csv"
    assert max(len(line) for line in ten_mb.read_bytes().split(b"\n")) > 10_000_000
