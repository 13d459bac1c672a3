"""The data dictionary: table specs, their schemas, and the rendered docs/tables.md."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import types as T

from jobs.config import DEFAULT_CONF_DIR
from jobs.docs import DOC_PATH, configured_specs, render
from jobs.metrics import MetricRegistry, activity_spec, daily_activity
from jobs.tables import DAILY_ACTIVITY, EVENTS, LOYALTY_LEDGER, TABLES, Column, TableSpec, schema_of, spec_of

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_committed_data_dictionary_is_current():
    rendered = render(configured_specs(DEFAULT_CONF_DIR))
    committed = (REPO / DOC_PATH).read_text(encoding="utf-8")
    assert committed == rendered, "docs/tables.md is stale: run `gamify docs`"


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_is_documented(name):
    spec = TABLES[name]
    assert spec.name == name
    assert spec.grain and spec.description and spec.written_by
    names = [c.name for c in spec.columns]
    assert len(names) == len(set(names)), f"{name}: duplicate columns"
    assert set(spec.partition_by) <= set(names), f"{name}: partition column not declared"
    undocumented = [c.name for c in spec.columns if len(c.comment.split()) < 2]
    assert not undocumented, f"{name}: no meaning for {undocumented}"


def test_schema_follows_the_declared_columns(spark):
    spec = TableSpec(
        name="t",
        grain="one row",
        partition_by=("d",),
        written_by="test",
        description="a table",
        columns=(
            Column("id", "string", "an id"),
            Column("amount", "decimal(18,4)", "money, EUR"),
            Column("values", "map<string,double>", "name -> value"),
            Column("d", "date", "the day"),
        ),
    )
    assert spec.schema == T.StructType(
        [
            T.StructField("id", T.StringType()),
            T.StructField("amount", T.DecimalType(18, 4)),
            T.StructField("values", T.MapType(T.StringType(), T.DoubleType())),
            T.StructField("d", T.DateType()),
        ]
    )
    assert spec.comments() == {"id": "an id", "amount": "money, EUR", "values": "name -> value", "d": "the day"}


def test_schema_of_keeps_the_written_layout(spark):
    assert schema_of(LOYALTY_LEDGER).simpleString() == (
        "struct<entry_id:string,subscriber_id:string,entry_type:string,source_id:string,points:int,"
        "description:string,expires_ds:date,requested_points:int,status:string,status_reason:string,entry_ds:date>"
    )
    assert schema_of(EVENTS)["amount"].dataType == T.DecimalType(18, 4)
    with pytest.raises(KeyError, match="unknown table 'nope'"):
        spec_of("nope")


def test_activity_spec_matches_what_the_activity_job_writes(spark, tmp_path):
    metrics = tmp_path / "metrics.yaml"
    metrics.write_text(
        "daily_metrics:\n"
        "  voice_minutes: {when: \"event_type == 'cdr'\", value: quantity, description: 'Voice minutes'}\n"
        "  recharges: {when: \"event_type == 'billing'\"}\n"
        "derived_metrics:\n"
        "  active: 'voice_minutes + recharges > 0'\n"
    )
    registry = MetricRegistry.load(metrics)
    events = spark.createDataFrame(
        [("s1", "cdr", "voice_out", "cdr", "network", "minutes", 2.5, None, date(2025, 3, 1))],
        "subscriber_id string, event_type string, event_subtype string, source string, channel string, "
        "unit string, quantity double, amount decimal(18,4), event_date date",
    )
    written = daily_activity(events, registry)
    spec = activity_spec(registry)
    assert spec.name == DAILY_ACTIVITY
    assert [(f.name, f.dataType) for f in written.schema.fields] == [(f.name, f.dataType) for f in spec.schema.fields]
    comments = spec.comments()
    assert comments["voice_minutes"].startswith("Voice minutes (sum over the day's events: event_type == 'cdr')")
    assert comments["recharges"].startswith("recharges (sum")
    assert comments["active"] == "1 when voice_minutes + recharges > 0, else 0 (derived daily flag)"
