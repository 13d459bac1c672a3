"""A tiny CDR source and its raw rows as a CSV read delivers them, shared by the ingest tests."""

from __future__ import annotations

from datetime import date

from pyspark.sql import functions as F

from jobs.ingest import IngestContext
from jobs.privacy import pseudonymise_py
from jobs.sources import CORRUPT, SOURCE_FILE, Source

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

RAW_COLUMNS = "record_id string, msisdn string, record_type string, start_time string, duration_s string, bytes_down string, other_party string"


def raw_cdr(spark, rows):
    """Rows as a CSV read would deliver them: all strings, plus file and corrupt-record columns."""
    df = spark.createDataFrame([(*r, None) for r in rows], RAW_COLUMNS + f", {CORRUPT} string")
    return df.withColumn(SOURCE_FILE, F.lit("file:/raw/cdr/2025-03-01/cdr_10.csv"))


def known(spark, *msisdns):
    return spark.createDataFrame([(pseudonymise_py(m, KEY, "33"),) for m in msisdns], "subscriber_id string")
