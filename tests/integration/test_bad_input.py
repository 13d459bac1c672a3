"""The bad-input corpus ingested in one night: nothing crashes, every line is accounted for,
every problem has a clear reason, and no phone number appears in any table, message, log or
Spark plan."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import shutil
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.config import load_config
from jobs.ingest import ACCEPTED, IngestContext, classify
from jobs.lakehouse import Lakehouse
from jobs.pipeline import build_lakehouse
from jobs.sources import Source, conform, read_extract
from jobs.stages import ingest as ingest_run
from jobs.stages.ingest import run_ingest
from jobs.tables import EVENTS, EVENTS_REJECTED, PIPELINE_RUNS
from tests.integration.bad_input import corpus, corpus2

pytestmark = pytest.mark.integration

KEY = "corpus-key-Xy7"


def _ingest(spark, root: Path, cases: dict, sources: list[Source], ds) -> dict:
    """One night over a corpus written under root / "raw", logs captured."""
    config = load_config(
        env="test", overrides={"raw.root": str(root / "raw"), "lakehouse.root": str(root / "lh")}, environ={}
    )
    lakehouse = build_lakehouse(spark, config)
    ctx = IngestContext(ds=ds, timezone="Europe/Paris", country_code="33", key=KEY, max_lateness_days=3)
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


@pytest.fixture(scope="module")
def night(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    cases = corpus.write(root / "raw")
    (root / "raw" / "mandatory_feed" / corpus.DS.isoformat()).mkdir(parents=True)
    (root / "raw" / "mandatory_feed" / corpus.DS.isoformat() / "only.csv").write_bytes(b"")
    mandatory = {**corpus.CSV_SOURCE, "name": "mandatory_feed", "mandatory": True}
    mandatory["connection"] = {"path": "{raw_root}/mandatory_feed/{ds}/*.csv"}
    sources = [
        Source.from_config(corpus.CSV_SOURCE, "tests/calls.yaml"),
        Source.from_config(corpus.JSON_SOURCE, "tests/wallet.yaml"),
        Source.from_config(mandatory, "tests/mandatory_feed.yaml"),
    ]
    return _ingest(spark, root, cases, sources, corpus.DS)


@pytest.fixture(scope="module")
def night2(spark, tmp_path_factory):
    """The second, independently written corpus: other layouts, encodings and faults."""
    root = tmp_path_factory.mktemp("bad_input_2")
    cases = corpus2.write(root / "raw")
    sources = [
        Source.from_config(corpus2.VOICE_SOURCE, "tests/voice.yaml"),
        Source.from_config(corpus2.PAYMENTS_SOURCE, "tests/payments.yaml"),
    ]
    return _ingest(spark, root, cases, sources, corpus2.DS)


CORPUS_SOURCES = [("night", "calls"), ("night", "wallet"), ("night2", "voice"), ("night2", "payments")]
NEEDLES = {"night": corpus.digit_needles(), "night2": corpus2.digit_needles()}


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.parametrize(("corpus_night", "source"), CORPUS_SOURCES)
def test_every_line_is_accounted_for(request, corpus_night, source):
    night = request.getfixturevalue(corpus_night)
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


@pytest.mark.parametrize(("corpus_night", "source"), CORPUS_SOURCES)
def test_every_problem_has_its_reason(request, corpus_night, source):
    night = request.getfixturevalue(corpus_night)
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
    quarantined = night["lakehouse"].read(EVENTS_REJECTED).filter(F.col("source") == "mandatory_feed").collect()
    assert [(r.source_file.rsplit("/", 1)[-1], r.reject_reason) for r in quarantined] == [("only.csv", "empty_file")]
    runs = night["lakehouse"].read(PIPELINE_RUNS).filter(F.col("stage") == "ingest")
    assert sorted(r.source for r in runs.collect()) == ["calls", "mandatory_feed", "wallet"]


def test_an_extract_with_no_usable_file_is_quarantined_and_replaces_what_the_date_held(spark, tmp_path):
    """An optional source's only file cannot be read: its lines are read and rejected, the file
    is quarantined with its reason, and the rows an earlier run of the date wrote from a good
    delivery are replaced by none, as any rerun replaces them by its extract's rows."""
    day = tmp_path / "raw" / "calls" / corpus.DS.isoformat()
    day.mkdir(parents=True)
    rows = [corpus._row(f"G{i}", m) for i, m in enumerate(corpus.FORMATS[:8])]
    (day / "calls.csv").write_bytes(corpus._csv([corpus.HEADER, *rows]))
    source = Source.from_config(corpus.CSV_SOURCE, "tests/calls.yaml")
    first = _ingest(spark, tmp_path, {}, [source], corpus.DS)["results"]["calls"]
    assert (first.status, first.events_written) == ("succeeded", 8)

    redelivered = [corpus.HEADER, *rows[:-1], rows[-1].replace("CELL1", "Sèvres")]
    (day / "calls.csv").write_bytes(corpus._csv(redelivered, encoding="latin-1"))
    rerun = _ingest(spark, tmp_path, {}, [source], corpus.DS)
    result, lakehouse = rerun["results"]["calls"], rerun["lakehouse"]

    assert result.status == "degraded" and "no usable file" in result.message
    assert (result.rows_read, result.rows_accepted, result.rows_rejected) == (9, 0, 9)  # the header line too
    assert result.rows_duplicate == 0  # with the line above: every line read is rejected
    assert lakehouse.read(EVENTS).filter(F.col("source") == "calls").count() == 0
    rejected = lakehouse.read(EVENTS_REJECTED).filter(F.col("source") == "calls").collect()
    assert [(r.source_file.rsplit("/", 1)[-1], r.reject_reason) for r in rejected] == [("calls.csv", "encoding_error")]
    assert "9 line(s) were not read" in rejected[0].reject_message
    runs = lakehouse.read(PIPELINE_RUNS).filter((F.col("stage") == "ingest") & (F.col("source") == "calls"))
    assert [(r.status, r.rows_read, r.rows_rejected) for r in runs.collect()] == [("degraded", 9, 9)]


def test_quarantined_files_are_named_in_pipeline_runs(night):
    message = night["results"]["calls"].message
    assert message.startswith("7 of 17 file(s) quarantined")
    assert "05_gzip_named_csv.csv: compressed_mismatch" in message


@pytest.mark.parametrize("corpus_night", ["night", "night2"])
def test_no_phone_number_anywhere(request, corpus_night):
    night = request.getfixturevalue(corpus_night)
    lakehouse = night["lakehouse"]
    texts = [night["logs"]]
    for table in (EVENTS, EVENTS_REJECTED, PIPELINE_RUNS):
        df = lakehouse.read(table)
        texts += [r[0] for r in df.select(F.to_json(F.struct(*df.columns))).collect()]
    for source in night["sources"][:2]:
        extract = read_extract(lakehouse.spark, source, night["ctx"].ds, str(night["raw"]))
        classified = classify(conform(extract.rows, source), source, night["ctx"], None)
        texts.append(classified.filter(F.col("_status") == ACCEPTED)._jdf.queryExecution().toString())
    blob = "\n".join(texts)
    # numbers written with separators (no-break spaces and tabs too) or other scripts' digits count too
    ascii_digits = "".join(str(unicodedata.digit(ch)) if ch.isdigit() else ch for ch in blob)
    squeezed = re.sub(r"(?<=[0-9])[\s\-./()]{1,3}(?=[0-9])", "", ascii_digits)
    leaks = [n for n in NEEDLES[corpus_night] if n in squeezed]
    assert leaks == []
    assert KEY not in blob and KEY.encode().hex() not in blob.lower()


@pytest.mark.parametrize("corpus_night", ["night", "night2"])
def test_rerun_gives_the_same_tables(request, corpus_night, tmp_path):
    from tests.integration.helpers import table_content

    night = request.getfixturevalue(corpus_night)
    shutil.copytree(night["lakehouse"].root, tmp_path / "lh")  # the module's night stays as it ran
    lakehouse = Lakehouse(night["lakehouse"].spark, str(tmp_path / "lh"))
    before = {t: table_content(lakehouse, t) for t in (EVENTS, EVENTS_REJECTED)}
    results = run_ingest(lakehouse, night["sources"], night["ctx"], str(night["raw"]), 7)
    assert {t: table_content(lakehouse, t) for t in (EVENTS, EVENTS_REJECTED)} == before
    counts = ("status", "rows_read", "rows_accepted", "rows_rejected", "rows_duplicate", "events_written", "message")
    assert [[getattr(r, c) for c in counts] for r in results] == [
        [getattr(night["results"][r.source], c) for c in counts] for r in results
    ]


def test_a_source_failing_at_write_time_fails_alone(night, tmp_path, monkeypatch):
    """The sources of a run are written together; when that write fails, each is written alone,
    so only the source whose rows broke it fails and the others' rows land."""
    from tests.integration.helpers import table_content

    lake = tmp_path / "lh"
    shutil.copytree(night["lakehouse"].root, lake)
    lakehouse = Lakehouse(night["lakehouse"].spark, str(lake))
    wallet_before = [r for r in table_content(lakehouse, EVENTS) if '"source":"wallet"' in r]
    calls_before = [r for r in table_content(lakehouse, EVENTS) if '"source":"calls"' in r]
    real_to_events = ingest_run.to_events

    def exploding_wallet(classified, source, ctx):
        events = real_to_events(classified, source, ctx)
        if source.name != "wallet":
            return events
        boom = F.when(F.lit(True), F.raise_error(F.lit("wallet mapping exploded"))).otherwise(F.col("event_type"))
        return events.withColumn("event_type", boom)

    monkeypatch.setattr(ingest_run, "to_events", exploding_wallet)
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


def _pseudonym(e164: str) -> str:
    return hmac.new(KEY.encode(), e164.encode(), hashlib.sha256).hexdigest()


def test_every_msisdn_spelling_is_the_same_subscriber(night2):
    """Each spelling of the second corpus gives the pseudonym of the E.164 number it stands for."""
    events = night2["lakehouse"].read(EVENTS).filter(F.col("source") == "voice")
    spelled = {f"S{i:02d}": e164 for i, e164 in enumerate(corpus2.MSISDNS.values())}
    keys = {_record_key("voice", call_id): call_id for call_id in spelled}
    got = {keys[r.record_key]: r.subscriber_id for r in events.collect() if r.record_key in keys}
    assert got == {call_id: _pseudonym(e164) for call_id, e164 in spelled.items()}


def _record_key(source: str, *natural_key: str) -> str:
    return hashlib.sha256("|".join([source, *natural_key]).encode()).hexdigest()


def test_accepted_rows_of_the_second_corpus_keep_their_values(night2):
    events = night2["lakehouse"].read(EVENTS)
    voice = events.filter(F.col("source") == "voice").collect()
    # cells as written: no carriage return left from CRLF lines, the quoted delimiter kept
    assert Counter(r.attributes["cell"] for r in voice) == Counter(
        {"C1": 12 + 3 + 2 + 2 + 2 + 1 + 1 + 1, "Paris; 1er": 1, 'a "quoted" cell': 1, "first line": 1}
    )
    assert Counter((r.quantity, str(r.amount)) for r in voice) == Counter(
        {(1.0, "1500.0000"): 26, (1.0, "-12.0000"): 1}
    )
    assert sorted(str(r.event_date) for r in voice) == ["2025-03-01"] + ["2025-03-04"] * 26
    payments = events.filter(F.col("source") == "payments").collect()
    assert sorted((r.subscriber_id, str(r.amount), r.attributes["note"]) for r in payments) == sorted(
        (_pseudonym(e164), "12.5000", "ok")
        for e164 in ["33612345712", "33612345714", "33612345718", "33612345719", "33612345720", "33612345715"]
    )


def test_the_second_corpus_names_its_quarantined_files(night2):
    assert night2["results"]["voice"].message == (
        "6 of 16 file(s) quarantined: a02_utf16_bom.csv: encoding_error; a03_cp1252.csv: encoding_error; "
        "a05_truncated.csv.gz: unreadable_file; a06_plain_text.csv.gz: compressed_mismatch; "
        "a08_zero_bytes.csv: empty_file; a12_header_case_duplicate.csv: duplicate_header"
    )
    assert night2["results"]["payments"].message == (
        "4 of 9 file(s) quarantined: b03_utf16_be.jsonl: encoding_error; b04_cp1252.jsonl: encoding_error; "
        "b08_zero_bytes.jsonl: empty_file; b09_truncated.jsonl.gz: unreadable_file"
    )
    messages = {
        r.source_file.rsplit("/", 1)[-1]: r.reject_message
        for r in night2["lakehouse"].read(EVENTS_REJECTED).filter(F.col("raw_record").isNull()).collect()
    }
    assert messages["a02_utf16_bom.csv"].startswith("the file starts with a UTF-16 byte-order mark")
    assert messages["b03_utf16_be.jsonl"].startswith("the file starts with a UTF-16 byte-order mark")
    assert messages["a05_truncated.csv.gz"].startswith("the gzip stream ends before its end marker")
    assert messages["a06_plain_text.csv.gz"].startswith("the file is named 'a06_plain_text.csv.gz' but is plain text")
    assert "appear more than once in the header" in messages["a12_header_case_duplicate.csv"]


def test_a_rerun_after_a_later_day_keeps_records_that_day_already_wrote_once(night, tmp_path):
    """A record the day's first run missed may reach the events with a later day's extract (a
    late copy); when the day is rerun with it, it is a duplicate of that later run's record."""
    from datetime import timedelta

    from jobs.tables import schema_of

    lake = tmp_path / "lh"
    shutil.copytree(night["lakehouse"].root, lake)
    lakehouse = Lakehouse(night["lakehouse"].spark, str(lake))
    ds, later = corpus.DS, corpus.DS + timedelta(days=1)
    calls = lakehouse.read(EVENTS).filter((F.col("source") == "calls") & (F.col("ingest_date") == F.lit(ds)))
    key = calls.select("record_key").orderBy("record_key").first().record_key
    moved = calls.filter(F.col("record_key") == key).withColumn("ingest_date", F.lit(later)).localCheckpoint()
    event_dates = sorted({r.event_date for r in moved.select("event_date").collect()})
    # as if the later day's run had written this record, and the day's own run had not
    lakehouse.write(moved, EVENTS, partition_by=["event_date"], replace_where={"ingest_date": later})
    kept = lakehouse.read(EVENTS).filter((F.col("ingest_date") == F.lit(ds)) & (F.col("record_key") != key))
    lakehouse.write(kept.localCheckpoint(), EVENTS, partition_by=["event_date"], replace_where={"ingest_date": ds})
    runs = lakehouse.spark.createDataFrame([], schema_of(PIPELINE_RUNS)).unionByName(
        lakehouse.read(PIPELINE_RUNS).limit(1).withColumn("run_ds", F.lit(later))
    )
    lakehouse.write(runs.localCheckpoint(), PIPELINE_RUNS, partition_by=["run_ds"], replace_where={"run_ds": later})

    results = {r.source: r for r in run_ingest(lakehouse, night["sources"], night["ctx"], str(night["raw"]), 7)}
    mine = lakehouse.read(EVENTS).filter(F.col("record_key") == key)
    assert {r.ingest_date for r in mine.collect()} == {later} and event_dates
    assert results["calls"].rows_duplicate == night["results"]["calls"].rows_duplicate + 1
    assert results["calls"].rows_accepted == night["results"]["calls"].rows_accepted - 1
    message = f"record already ingested by the run of {later}"
    quarantined = lakehouse.read(EVENTS_REJECTED).filter(
        (F.col("ingest_date") == F.lit(ds)) & (F.col("reject_message") == message)
    )
    assert quarantined.count() == 1
