"""Whole-frame known answers for `to_events`: classified raw records -> normalized events."""

from __future__ import annotations

import hashlib
from datetime import date, datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from jobs.ingest import classify, to_events
from jobs.privacy import pseudonymise_py
from jobs.sources import conform
from tests.unit.cdr_extract import CDR, CTX, KEY, raw_cdr

pytestmark = pytest.mark.unit

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
    raw = raw_cdr(spark, rows)  # as a CSV read delivers them, from file:/raw/cdr/2025-03-01/cdr_10.csv
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
