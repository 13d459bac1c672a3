"""Event mapping and quarantine rules on tiny inline extracts."""

from __future__ import annotations

import dataclasses
import gzip
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from jobs.ingest import accounting, classify, to_events, to_profile, to_rejects, with_prior_duplicates
from jobs.privacy import pseudonymise_py
from jobs.sources import (
    CORRUPT,
    SOURCE_FILE,
    Source,
    SourceError,
    _csv_header_problem,
    conform,
    read_extract,
    screen_text_file,
)
from tests.unit.cdr_extract import CDR, CTX, KEY, RAW_COLUMNS, known, raw_cdr

pytestmark = pytest.mark.unit


def classified_cdr(spark, rows, known_df=None):
    return classify(conform(raw_cdr(spark, rows), CDR), CDR, CTX, known_df)


def test_voice_call_becomes_two_events_with_pseudonymised_ids(spark):
    rows = [("C1", "0612345678", "MOC", "20250301103000", "90", "0", "+33 6 99 99 99 99")]
    events = to_events(classified_cdr(spark, rows, known(spark, "+33612345678")), CDR, CTX)
    got = sorted(
        events.select(
            "event_subtype", "quantity", "unit", "channel", "subscriber_id", "event_ts", "event_date", "attributes"
        ).collect()
    )
    subscriber = pseudonymise_py("+33612345678", KEY, "33")
    counterpart = pseudonymise_py("0699999999", KEY, "33")
    when = datetime(2025, 3, 1, 9, 30, tzinfo=UTC).replace(tzinfo=None)  # 10:30 Paris = 09:30 UTC
    assert [tuple(r) for r in got] == [
        ("call_made", None, None, None, subscriber, when, date(2025, 3, 1), {"counterpart_id": counterpart}),
        ("voice_out", 1.5, "minutes", "network", subscriber, when, date(2025, 3, 1), {"counterpart_id": counterpart}),
    ]
    ids = [r.event_id for r in events.collect()]
    assert len(set(ids)) == 2 and all(len(i) == 64 for i in ids)


def test_classified_rows_carry_no_key_material_but_their_outputs_still_pseudonymise(spark):
    """The classified rows are persisted (memory and disk) and shuffled: the HMAC pads are
    dropped from them, and each output that pseudonymises a value joins them back."""
    rows = [
        ("C1", "0612345678", "MOC", "20250301103000", "90", "0", "+33 6 99 99 99 99"),
        ("C1", "0612345678", "MOC", "20250301103000", "90", "0", "+33 6 99 99 99 99"),
    ]
    classified = classified_cdr(spark, rows, known(spark, "+33612345678"))
    assert not [c for c in classified.columns if "hmac" in c]
    counterpart = pseudonymise_py("0699999999", KEY, "33")
    assert {r.attributes["counterpart_id"] for r in to_events(classified, CDR, CTX).collect()} == {counterpart}
    (duplicate,) = to_rejects(classified, CDR, CTX).collect()
    assert (duplicate.reject_reason, f'"{counterpart}"' in duplicate.raw_record) == ("duplicate", True)


def test_a_mapping_s_attributes_override_the_source_s_for_its_events_only(spark):
    mappings = (
        {**CDR.mappings[0], "attributes": {"counterpart_id": "hidden", "leg": "caller"}},
        *CDR.mappings[1:],
    )
    source = dataclasses.replace(
        CDR, attributes={**CDR.attributes, "raw_type": {"column": "record_type"}}, mappings=mappings
    )
    rows = [
        ("C1", "0612345678", "MOC", "20250301103000", "90", "0", "+33 6 99 99 99 99"),
        ("D1", "0612345678", "GPRS", "20250301110000", "0", "1048576", None),
    ]
    events = to_events(classify(conform(raw_cdr(spark, rows), source), source, CTX, None), source, CTX)
    got = sorted((r.event_subtype, r.quantity, r.attributes) for r in events.collect())
    counterpart = pseudonymise_py("0699999999", KEY, "33")
    assert got == [
        ("call_made", None, {"counterpart_id": counterpart, "raw_type": "MOC"}),
        ("data_session", 1.0, {"raw_type": "GPRS"}),
        ("voice_out", 1.5, {"counterpart_id": "hidden", "leg": "caller", "raw_type": "MOC"}),
    ]


def test_local_midnight_belongs_to_the_local_day(spark):
    rows = [("C1", "33612345678", "GPRS", "20250301003000", "60", "2097152", None)]
    event = to_events(classified_cdr(spark, rows, known(spark, "33612345678")), CDR, CTX).first()
    assert (event.event_date, event.event_ts.hour, event.quantity) == (date(2025, 3, 1), 23, 2.0)


@pytest.mark.parametrize(
    ("row", "corrupt", "reason", "message_part"),
    [
        (("C1", "33612345678", "MOC", "N/A", "30", "0", None), None, "invalid_timestamp", "'start_time' value 'N/A'"),
        (("C1", "33612345678", "MOC", "20250301100000", "-5", "0", None), None, "negative_duration", "duration_s=-5"),
        (
            ("C1", "33612345678", "MOC", "20250301100000", "abc", "0", None),
            None,
            "invalid_type",
            "'duration_s' value 'abc' is not a valid long",
        ),
        (("C1", None, "MOC", "20250301100000", "30", "0", None), None, "missing_field", "'msisdn' is missing"),
        (("C1", "12", "MOC", "20250301100000", "30", "0", None), None, "invalid_msisdn", "not a valid MSISDN"),
        (("C1", "33799999999", "MOC", "20250301100000", "30", "0", None), None, "unknown_subscriber", "CRM snapshot"),
        (("C1", "33612345678", "FAX", "20250301100000", "30", "0", None), None, "unmapped_record", "no event mapping"),
        (("C1", "33612345678", "MOC", "20250302100000", "30", "0", None), None, "future_event", "2025-03-02 is after"),
        (("C1", "33612345678", "MOC", "20250220100000", "30", "0", None), None, "too_late", "more than 3 days"),
        (
            (None, None, None, None, None, None, None),
            "garbage 33612345678 line",
            "malformed_record",
            "could not be parsed",
        ),
    ],
)
def test_each_defect_is_quarantined_with_its_reason(spark, row, corrupt, reason, message_part):
    df = spark.createDataFrame([(*row, corrupt)], RAW_COLUMNS + f", {CORRUPT} string").withColumn(
        SOURCE_FILE, F.lit("f.csv")
    )
    classified = classify(conform(df, CDR), CDR, CTX, known(spark, "33612345678"))
    rejects = to_rejects(classified, CDR, CTX).collect()
    assert [(r.reject_reason, r.source, r.source_file) for r in rejects] == [(reason, "cdr", "f.csv")]
    assert message_part in rejects[0].reject_message
    assert "33612345678" not in rejects[0].raw_record  # raw numbers never reach the quarantine
    assert to_events(classified, CDR, CTX).count() == 0


def test_duplicates_are_kept_once_and_counted(spark):
    row = ("C1", "33612345678", "MTC", "20250301100000", "60", "0", None)
    classified = classified_cdr(spark, [row, row, row], known(spark, "33612345678"))
    assert accounting(classified) == {"read": 3, "accepted": 1, "rejected": 0, "duplicate": 2, "events": 1}
    assert [r.reject_reason for r in to_rejects(classified, CDR, CTX).collect()] == ["duplicate", "duplicate"]
    assert to_events(classified, CDR, CTX).count() == 1


def test_records_written_by_an_earlier_run_are_duplicates(spark):
    late = ("C1", "33612345678", "MTC", "20250227100000", "60", "0", None)
    classified = classified_cdr(spark, [late], known(spark, "33612345678"))
    first = to_events(classified, CDR, CTX).select("record_key", F.lit(date(2025, 2, 28)).alias("ingest_date"))
    again = with_prior_duplicates(classified, first)
    assert accounting(again)["duplicate"] == 1
    assert "run of 2025-02-28" in to_rejects(again, CDR, CTX).first().reject_message


def test_accounting_balances_on_a_mixed_extract(spark):
    rows = [
        ("C1", "33612345678", "MOC", "20250301100000", "60", "0", None),
        ("C2", "33612345678", "GPRS", "20250301100000", "60", "1048576", None),
        ("C2", "33612345678", "GPRS", "20250301100000", "60", "1048576", None),
        ("C3", "33612345678", "MOC", "bad", "60", "0", None),
    ]
    counts = accounting(classified_cdr(spark, rows, known(spark, "33612345678")))
    assert counts == {"read": 4, "accepted": 2, "rejected": 1, "duplicate": 1, "events": 3}
    assert counts["read"] == counts["accepted"] + counts["rejected"] + counts["duplicate"]


def test_billing_mapping_types_amounts_and_days_late(spark):
    billing = Source.from_config(
        {
            "name": "billing",
            "kind": "billing",
            "format": "parquet",
            "sync_frequency": "daily",
            "connection": {"path": "x/{ds}"},
            "contract": {
                "transaction_id": "string",
                "msisdn": "string",
                "txn_time": "timestamp",
                "amount": "decimal(12,2)",
                "due_date": {"type": "date", "nullable": True},
            },
            "natural_key": ["transaction_id"],
            "subscriber": {"column": "msisdn"},
            "event_time": {"column": "txn_time"},
            "check_known_subscriber": False,
            "mappings": [
                {
                    "event_type": "billing",
                    "event_subtype": "payment",
                    "amount": {"column": "amount"},
                    "currency": "EUR",
                    "quantity": {"days_late": ["txn_time", "due_date"]},
                    "unit": "days_late",
                }
            ],
        }
    )
    df = spark.createDataFrame(
        [("T1", "0612345678", datetime(2025, 3, 1, 8, 0), Decimal("49.90"), date(2025, 2, 25))],
        "transaction_id string, msisdn string, txn_time timestamp, amount decimal(12,2), due_date date",
    ).withColumn(SOURCE_FILE, F.lit("b.parquet"))
    event = to_events(classify(conform(df, billing), billing, CTX, None), billing, CTX).first()
    assert (event.amount, event.currency, event.quantity, event.unit) == (Decimal("49.9000"), "EUR", 4.0, "days_late")


def test_crm_snapshot_feeds_profile_even_without_events(spark):
    crm = Source.from_config(
        {
            "name": "crm_subscribers",
            "kind": "crm",
            "format": "csv",
            "sync_frequency": "daily",
            "connection": {"path": "x/{ds}"},
            "contract": {"msisdn": "string", "plan_code": "string", "activation_date": "date", "snapshot_date": "date"},
            "natural_key": ["msisdn", "snapshot_date"],
            "subscriber": {"column": "msisdn"},
            "check_known_subscriber": False,
            "profile": {
                "table": "subscriber_profile",
                "columns": {"plan_code": {"column": "plan_code"}, "activation_date": {"column": "activation_date"}},
            },
            "mappings": [{"when": "activation_date == ds", "event_type": "crm", "event_subtype": "activation"}],
        }
    )
    df = spark.createDataFrame(
        [
            ("+33600000001", "PRE_S", "2019-05-01", "2025-03-01", None),
            ("+33600000002", "POST_M", "2025-03-01", "2025-03-01", None),
        ],
        f"msisdn string, plan_code string, activation_date string, snapshot_date string, {CORRUPT} string",
    ).withColumn(SOURCE_FILE, F.lit("crm.csv"))
    classified = classify(conform(df, crm), crm, CTX, None)
    profile = {
        r.subscriber_id: (r.plan_code, r.activation_date, r.snapshot_date)
        for r in to_profile(classified, crm, CTX).collect()
    }
    assert profile == {
        pseudonymise_py("+33600000001", KEY, "33"): ("PRE_S", date(2019, 5, 1), date(2025, 3, 1)),
        pseudonymise_py("+33600000002", KEY, "33"): ("POST_M", date(2025, 3, 1), date(2025, 3, 1)),
    }
    assert [r.event_subtype for r in to_events(classified, crm, CTX).collect()] == ["activation"]


def test_rules_on_int_counters_compute_in_64_bits(spark):
    """A product of two `int` contract columns past 2^31 is a number, not an overflow to null
    that would fail the check and quarantine a good row."""
    network = Source.from_config(
        {
            "name": "network_kpis",
            "kind": "network",
            "format": "csv",
            "sync_frequency": "daily",
            "connection": {"path": "x/{ds}"},
            "contract": {"msisdn": "string", "day": "date", "call_attempts": "int", "dropped_calls": "int"},
            "natural_key": ["msisdn", "day"],
            "subscriber": {"column": "msisdn"},
            "event_time": {"column": "day"},
            "check_known_subscriber": False,
            "checks": [{"rule": "dropped_calls * call_attempts < 9000000000", "reason": "implausible_counters"}],
            "mappings": [
                {"event_type": "network", "event_subtype": "calls", "quantity": {"expr": "call_attempts * 100000"}}
            ],
        }
    )
    df = spark.createDataFrame(
        [
            ("+33600000001", "2025-03-01", "100000", "50000", None),  # 5e9: accepted
            ("+33600000002", "2025-03-01", "100000", "90000", None),  # 9e9: fails the check
        ],
        f"msisdn string, day string, call_attempts string, dropped_calls string, {CORRUPT} string",
    ).withColumn(SOURCE_FILE, F.lit("kpi.csv"))
    classified = classify(conform(df, network), network, CTX, None)
    outcome = {r.subscriber_id: r.reject_reason for r in classified.collect()}
    one, two = (pseudonymise_py(f"+3360000000{i}", KEY, "33") for i in (1, 2))
    assert outcome == {one: None, two: "implausible_counters"}
    assert [r.quantity for r in to_events(classified, network, CTX).collect()] == [1e10]


# -- file screening ---------------------------------------------------------------------------

HEADER_AND_TWO = "record_id,msisdn\n1,0612345678\n2,0612345679\n"
WHOLE_GZIP = gzip.compress(HEADER_AND_TWO.encode(), mtime=0)


@pytest.mark.parametrize(
    ("name", "data", "options", "expected"),
    [
        ("bom16.csv", HEADER_AND_TWO.replace("\n", "\r\n").encode("utf-16"), {}, ("encoding_error", 3)),
        ("bom16_no_last_newline.csv", HEADER_AND_TWO.rstrip("\n").encode("utf-16"), {}, ("encoding_error", 3)),
        ("bom32.csv", HEADER_AND_TWO.encode("utf-32"), {}, ("encoding_error", 3)),
        ("declared16.csv", HEADER_AND_TWO.encode("utf-16"), {"encoding": "utf-16"}, None),
        ("cp1252.csv", "record_id,msisdn\n1,Sèvres\n2,x".encode("cp1252"), {}, ("encoding_error", 3)),
        ("declared_cp1252.csv", "record_id,msisdn\n1,Sèvres\n".encode("cp1252"), {"encoding": "cp1252"}, None),
        ("plain.csv.gz", HEADER_AND_TWO.encode(), {}, ("compressed_mismatch", 3)),
        ("good.csv.gz", WHOLE_GZIP, {}, None),
        ("two_members.csv.gz", WHOLE_GZIP + gzip.compress(b"3,0612345670\n", mtime=0), {}, None),
        ("no_trailer.csv.gz", WHOLE_GZIP[:-8], {}, ("unreadable_file", 3)),  # every line there, no end marker
        ("corrupt.csv.gz", WHOLE_GZIP[:10] + b"\xff" * 40, {}, ("unreadable_file", 0)),
        ("zero.csv.gz", b"", {}, ("empty_file", 0)),
        ("nothing_inside.csv.gz", gzip.compress(b"", mtime=0), {}, ("empty_file", 0)),
        ("gzip_named_plain.csv", WHOLE_GZIP, {}, ("compressed_mismatch", 0)),
    ],
)
def test_a_file_is_screened_with_its_reason_and_lines(tmp_path, name, data, options, expected):
    path = tmp_path / name
    path.write_bytes(data)
    source = dataclasses.replace(CDR, options=options)
    problem = screen_text_file(str(path), source)
    assert (problem and (problem.reason, problem.lines)) == expected
    if problem is not None:
        assert len(problem.message) > 20 and "0612345678" not in problem.message


def test_a_byte_order_mark_is_named_in_the_message(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(HEADER_AND_TWO.encode("utf-16"))
    message = screen_text_file(str(path), CDR).message
    assert message == "the file starts with a UTF-16 byte-order mark; the source reads utf-8"


@pytest.mark.parametrize(
    ("header", "duplicates"),
    [("record_id,msisdn,MSISDN", ["MSISDN", "msisdn"]), ("record_id,msisdn,Record_Id", ["Record_Id", "record_id"])],
)
def test_header_names_differing_only_in_case_are_duplicates(tmp_path, header, duplicates):
    path = tmp_path / "case.csv.gz"
    path.write_bytes(gzip.compress(f"{header}\n1,0612345678,x\n".encode(), mtime=0))
    source = dataclasses.replace(CDR, contract=CDR.contract[:2])
    _, problem = _csv_header_problem(str(path), ",", source)
    assert (problem.reason, problem.lines) == ("duplicate_header", 2)
    assert problem.message.startswith(f"column(s) {duplicates} appear more than once")


PARQUET_COLUMNS = (
    "record_id string, msisdn string, record_type string, start_time string, duration_s long, bytes_down long, "
    "other_party string"
)
CDR_HEADER = "record_id,msisdn,record_type,start_time,duration_s,bytes_down,other_party\n"


def test_files_spark_would_skip_as_hidden_are_quarantined_with_their_lines(spark, tmp_path):
    day = tmp_path / "cdr" / "2025-03-01"
    day.mkdir(parents=True)
    row = "{},0612345678,MOC,20250301101500,60,0,\n"
    (day / "cdr_00.csv").write_text(CDR_HEADER + row.format("R1"))
    (day / "_cdr_01.csv").write_text(CDR_HEADER + row.format("R2") + row.format("R3"))  # Spark reads none of it
    (day / ".cdr_02.csv").write_text(CDR_HEADER + row.format("R4"))
    extract = read_extract(spark, CDR, date(2025, 3, 1), str(tmp_path))
    assert [r.record_id for r in extract.rows.collect()] == ["R1"]
    assert [(r.path.rsplit("/", 1)[1], r.reason, r.lines) for r in extract.rejected_files] == [
        (".cdr_02.csv", "hidden_file", 2),
        ("_cdr_01.csv", "hidden_file", 3),
    ]
    assert extract.rejected_files[0].message.startswith("the file name starts with '_' or '.', which Spark skips")
    (day / "cdr_00.csv").unlink()
    with pytest.raises(
        SourceError, match=r"no usable file .*\.cdr_02\.csv: hidden_file \(.*\); _cdr_01\.csv: hidden_file"
    ):
        read_extract(spark, CDR, date(2025, 3, 1), str(tmp_path))


def test_a_hidden_parquet_file_is_quarantined_with_its_rows(spark, tmp_path):
    day = tmp_path / "preds" / "2025-03-01"
    day.mkdir(parents=True)
    source = dataclasses.replace(CDR, format="parquet", connection={"path": "{raw_root}/preds/{ds}/*.parquet"})
    for name, rows in (("preds_00.parquet", 2), ("_preds_01.parquet", 3)):
        values = [(f"R{i}", "0612345678", "MOC", "20250301101500", 60, 0, None) for i in range(rows)]
        frame = spark.createDataFrame(values, PARQUET_COLUMNS)
        frame.coalesce(1).write.parquet(str(tmp_path / name))
        next((tmp_path / name).glob("part-*.parquet")).rename(day / name)
    extract = read_extract(spark, source, date(2025, 3, 1), str(tmp_path))
    assert extract.rows.count() == 2
    assert [(r.path.rsplit("/", 1)[1], r.reason, r.lines) for r in extract.rejected_files] == [
        ("_preds_01.parquet", "hidden_file", 3)
    ]
    (day / "preds_00.parquet").unlink()
    with pytest.raises(SourceError, match=r"no usable file .*_preds_01\.parquet: hidden_file"):
        read_extract(spark, source, date(2025, 3, 1), str(tmp_path))


def test_a_json_line_is_one_object_and_blank_lines_are_no_records(spark, tmp_path):
    day = tmp_path / "app" / "2025-03-01"
    day.mkdir(parents=True)
    source = dataclasses.replace(
        CDR, format="json", connection={"path": "{raw_root}/app/{ds}/*.jsonl"}, contract=CDR.contract[:2]
    )
    lines = [
        '{"record_id": "A", "msisdn": "0612345678"}',
        '{"record_id": "B", "msisdn": "0612345678"}{"record_id": "C", "msisdn": "0612345679"}',  # two objects
        '{"record_id": "D", "msisdn": "0612345678"}, {"record_id": "E", "msisdn": "0612345679"}',
        '{"record_id": "F", "msisdn": "0612345678"} junk }',
        "\t ",  # blank
        "",  # blank
        '{"record_id": "G", "msisdn": "0612345678", "note": "a }{ in a string"}',
    ]
    (day / "app_00.jsonl").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    rows = read_extract(spark, source, date(2025, 3, 1), str(tmp_path)).rows.collect()
    # each line a record but the blank ones; those that are not one object are corrupt, whole
    assert [(r[CORRUPT] or "").rstrip("\r") for r in rows] == ["", lines[1], lines[2], lines[3], ""]
    assert [r.record_id for r in rows if r[CORRUPT] is None] == ["A", "G"]


def test_a_phone_number_in_another_column_is_masked_in_the_quarantine(spark):
    # the subscriber and the time swapped: the number sits in start_time, the time in msisdn
    swapped = ("C1", "20250301101500", "MOC", "0612345678", "60", "0", None)
    typed = ("C2", "33612345678", "MOC", "20250301100000", "06 12 34 56 78", "0", None)  # in a numeric column
    df = spark.createDataFrame([(*swapped, None), (*typed, None)], RAW_COLUMNS + f", {CORRUPT} string")
    df = df.withColumn(SOURCE_FILE, F.lit("cdr_00.csv"))
    classified = classify(conform(df, CDR), CDR, CTX, known(spark, "33612345678"))
    rejects = {r.reject_reason: r for r in to_rejects(classified, CDR, CTX).collect()}
    assert set(rejects) == {"invalid_timestamp", "invalid_type"}
    for row in rejects.values():
        for text in (row.reject_message, row.raw_record):
            assert "0612345678" not in text.replace(" ", "") and "<msisdn>" in text, text
    assert (
        rejects["invalid_timestamp"].reject_message
        == "field 'start_time' value '<msisdn>' does not match yyyyMMddHHmmss"
    )
    assert rejects["invalid_type"].reject_message == "field 'duration_s' value '<msisdn>' is not a valid long"


def test_copies_differing_in_which_field_is_empty_keep_the_same_one_in_any_order(spark):
    contract = tuple(
        dataclasses.replace(c, nullable=True) if c.path == "bytes_down" else c for c in CDR.contract
    )  # two nullable fields: bytes_down and other_party
    source = dataclasses.replace(CDR, contract=contract)
    first = ("C1", "33612345678", "GPRS", "20250301100000", "60", "7", None)
    second = ("C1", "33612345678", "GPRS", "20250301100000", "60", None, "7")  # the same raw text once joined
    kept = set()
    for rows in ([first, second], [second, first]):
        df = spark.createDataFrame([(*r, None) for r in rows], RAW_COLUMNS + f", {CORRUPT} string")
        known_df = known(spark, "33612345678")
        classified = classify(conform(df.withColumn(SOURCE_FILE, F.lit("f.csv")), source), source, CTX, known_df)
        accepted = classified.filter(F.col("reject_reason").isNull()).collect()
        assert len(accepted) == 1
        kept.add((accepted[0]._raw_bytes_down, accepted[0]._raw_other_party))
    assert kept == {(None, "7")}  # a null ranks before any value, whatever the input order
