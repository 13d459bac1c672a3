"""Whole-frame known answers for `to_events`: classified raw records -> normalized events."""

from __future__ import annotations

import hashlib
from datetime import date, datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from jobs.ingest import IngestContext, classify, to_events
from jobs.privacy import pseudonymise_py
from jobs.sources import CORRUPT, SOURCE_FILE, Source, conform

pytestmark = pytest.mark.unit

KEY = "unit-test-key"
CTX = IngestContext(ds=date(2025, 3, 1), timezone="Europe/Paris", country_code="33", key=KEY, max_lateness_days=3)

CDR = Source.from_config(
    {
        "name": "cdr",
        "kind": "cdr",
        "format": "csv",
        "sync_frequency": "hourly",
        "connection": {"path": "{raw_root}/cdr/{ds}/*.csv"},
        "contract": {
            "record_id": "string",
            "msisdn": "string",
            "record_type": "string",
            "start_time": "string",
            "duration_s": "long",
            "bytes_down": "long",
            "other_party": {"type": "string", "nullable": True, "pii": True},
        },
        "natural_key": ["record_id"],
        "subscriber": {"column": "msisdn"},
        "event_time": {"column": "start_time", "format": "yyyyMMddHHmmss", "zone": "local"},
        "checks": [{"rule": "duration_s >= 0", "reason": "negative_duration"}],
        "attributes": {"counterpart_id": {"pseudonymise": "other_party"}},
        "mappings": [
            {
                "when": "record_type in ['MOC', 'MTC']",
                "event_type": "cdr",
                "event_subtype": {"map": "record_type", "values": {"MOC": "voice_out", "MTC": "voice_in"}},
                "quantity": {"expr": "duration_s / 60.0"},
                "unit": "minutes",
                "channel": "network",
            },
            {
                "when": "record_type == 'GPRS'",
                "event_type": "cdr",
                "event_subtype": "data_session",
                "quantity": {"expr": "bytes_down / 1048576.0"},
                "unit": "MB",
            },
            {"id": "any_call", "when": "record_type == 'MOC'", "event_type": "cdr", "event_subtype": "call_made"},
        ],
    }
)
RAW_COLUMNS = (
    "record_id string, msisdn string, record_type string, start_time string, duration_s string, "
    "bytes_down string, other_party string"
)
EVENTS_SCHEMA = (
    "event_id string, subscriber_id string, event_type string, event_subtype string, source string, "
    "event_ts timestamp, event_date date, quantity double, unit string, amount decimal(18,4), currency string, "
    "channel string, attributes map<string,string>, record_key string, ingest_batch_id string, "
    "ingest_date date, processing_status string"
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_to_events_whole_frame_one_event_per_matching_mapping(spark):
    rows = [
        # an outgoing call matches two mappings: voice_out and any_call
        ("C1", "0612345678", "MOC", "20250301103000", "90", "0", "+33 6 99 99 99 99"),
        # an incoming call one: voice_in
        ("C2", "+33612345678", "MTC", "20250301120000", "30", "0", None),
        # data 30 minutes before local midnight of the day before the run date: a late arrival
        ("C3", "33711111111", "GPRS", "20250228233000", "60", "2097152", None),
        # rejected by the negative_duration check: no event
        ("C4", "33612345678", "MOC", "20250301100000", "-5", "0", None),
    ]
    # as a CSV read delivers them: all strings, no corrupt record, and the file they came from
    raw = spark.createDataFrame([(*r, None) for r in rows], RAW_COLUMNS + f", {CORRUPT} string").withColumn(
        SOURCE_FILE, F.lit("file:/raw/cdr/2025-03-01/cdr_10.csv")
    )
    classified = classify(conform(raw, CDR), CDR, CTX, None)

    s1 = pseudonymise_py("+33612345678", KEY, "33")
    s2 = pseudonymise_py("+33711111111", KEY, "33")
    counterpart = pseudonymise_py("0699999999", KEY, "33")
    key1, key2, key3 = (sha(f"cdr|{r}") for r in ("C1", "C2", "C3"))  # source | natural key
    # the mapping without an id is named event_type/<what the subtype is read from>
    voice, data = "cdr/record_type", "cdr/data_session"
    at_1030 = datetime(2025, 3, 1, 9, 30)  # 10:30 Paris (UTC+1) in UTC
    at_1200 = datetime(2025, 3, 1, 11, 0)
    at_2330 = datetime(2025, 2, 28, 22, 30)
    expected = spark.createDataFrame(
        [
            (sha(f"{key1}|{voice}"), s1, "cdr", "voice_out", "cdr", at_1030, date(2025, 3, 1), 1.5, "minutes", None,
             None, "network", {"counterpart_id": counterpart}, key1, "cdr-20250301", CTX.ds, "normalized"),
            (sha(f"{key1}|any_call"), s1, "cdr", "call_made", "cdr", at_1030, date(2025, 3, 1), None, None, None,
             None, None, {"counterpart_id": counterpart}, key1, "cdr-20250301", CTX.ds, "normalized"),
            # no other party: the null attribute is left out of the map
            (sha(f"{key2}|{voice}"), s1, "cdr", "voice_in", "cdr", at_1200, date(2025, 3, 1), 0.5, "minutes", None,
             None, "network", {}, key2, "cdr-20250301", CTX.ds, "normalized"),
            # 2097152 bytes / 1048576 = 2 MB
            (sha(f"{key3}|{data}"), s2, "cdr", "data_session", "cdr", at_2330, date(2025, 2, 28), 2.0, "MB", None,
             None, None, {}, key3, "cdr-20250301", CTX.ds, "late_arrival"),
        ],
        EVENTS_SCHEMA,
    )  # fmt: skip
    actual = to_events(classified, CDR, CTX).withColumn("attributes", F.col("attributes").cast("map<string,string>"))
    # map columns cannot be sorted on: both sides in event_id order
    assert_df_equality(actual.orderBy("event_id"), expected.orderBy("event_id"), ignore_nullable=True)
