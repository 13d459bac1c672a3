"""The activity stage over crafted events: a rerun of a day replaces every daily_activity day
its first run wrote, also an earlier day whose late events the rerun's (corrected) ingest no
longer holds.

Two subscribers, two days, the activity stage alone:
  ON_TIME  one call on day 1, ingested on day 1.
  MOVED    one call ingested on day 2, first dated day 1 (a late arrival: day 2's activity
           rewrites day 1), then redelivered in a corrected day-2 extract dated day 2 (the
           extract's time zone was wrong): day 2 is rerun, and day 1 must lose the call.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from jobs.config import load_config
from jobs.pipeline import RunContext, build_lakehouse, run_stages
from jobs.tables import DAILY_ACTIVITY, EVENTS, schema_of

pytestmark = pytest.mark.integration

D1 = date(2025, 7, 1)
D2 = D1 + timedelta(days=1)
ON_TIME, MOVED = "sub-on-time-0001", "sub-moved-0002"


def call(event_id: str, subscriber: str, event_date: date, ingest_date: date) -> dict:
    return {
        "event_id": event_id,
        "subscriber_id": subscriber,
        "event_type": "cdr",
        "event_subtype": "voice_out",
        "source": "cdr",
        "event_ts": datetime(event_date.year, event_date.month, event_date.day, 10),
        "event_date": event_date,
        "quantity": 2.0,
        "unit": "minutes",
        "channel": "network",
        "attributes": {},
        "record_key": event_id,
        "ingest_batch_id": f"cdr-{ingest_date:%Y%m%d}",
        "ingest_date": ingest_date,
        "processing_status": "late_arrival" if event_date < ingest_date else "normalized",
    }


@pytest.fixture(scope="module")
def rerun_days(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("activity_reruns")
    config = load_config(env="test", overrides={"lakehouse.root": str(root / "lakehouse")}, environ={})
    lakehouse = build_lakehouse(spark, config)
    schema = schema_of(EVENTS)

    def ingest(ds: date, rows: list[dict]) -> None:  # what ingest writes: its run date's rows of the source
        frame = spark.createDataFrame([tuple(r.get(f.name) for f in schema.fields) for r in rows], schema)
        lakehouse.write(
            frame, EVENTS, partition_by=["event_date"], replace_where={"ingest_date": ds, "source": ["cdr"]}
        )

    def activity(ds: date) -> None:
        run_stages(RunContext(spark, config, lakehouse, ds), ["activity"])

    def day(d: date) -> dict[str, float]:
        rows = lakehouse.read(DAILY_ACTIVITY, partitions=[("activity_date", "=", d)]).collect()
        return {r.subscriber_id: r.voice_minutes for r in rows}

    ingest(D1, [call("e1", ON_TIME, D1, D1)])
    activity(D1)
    ingest(D2, [call("e2", MOVED, D1, D2)])  # late for day 1
    activity(D2)
    first = {D1: day(D1), D2: day(D2)}
    ingest(D2, [call("e2", MOVED, D2, D2)])  # the corrected extract: the call is day 2's
    activity(D2)
    return first, {D1: day(D1), D2: day(D2)}


def test_a_late_day_is_rewritten_by_the_first_run(rerun_days):
    first, _ = rerun_days
    assert first == {D1: {ON_TIME: 2.0, MOVED: 2.0}, D2: {}}


def test_a_rerun_replaces_the_late_day_its_first_run_wrote(rerun_days):
    _, rerun = rerun_days
    assert rerun == {D1: {ON_TIME: 2.0}, D2: {MOVED: 2.0}}


def test_a_rerun_retried_after_a_failure_still_replaces_the_late_day(spark, tmp_path, monkeypatch):
    """The corrected day 2 is rerun, its activity fails once (a lost executor), and the retry
    succeeds: the failed attempt changed no table, so day 1 must still lose the call."""
    config = load_config(env="test", overrides={"lakehouse.root": str(tmp_path / "lakehouse")}, environ={})
    lakehouse = build_lakehouse(spark, config)
    schema = schema_of(EVENTS)

    def ingest(ds: date, rows: list[dict]) -> None:
        frame = spark.createDataFrame([tuple(r.get(f.name) for f in schema.fields) for r in rows], schema)
        lakehouse.write(
            frame, EVENTS, partition_by=["event_date"], replace_where={"ingest_date": ds, "source": ["cdr"]}
        )

    def activity(ds: date) -> None:
        run_stages(RunContext(spark, config, lakehouse, ds), ["activity"])

    ingest(D1, [call("e1", ON_TIME, D1, D1)])
    activity(D1)
    ingest(D2, [call("e2", MOVED, D1, D2)])
    activity(D2)
    ingest(D2, [call("e2", MOVED, D2, D2)])
    with monkeypatch.context() as patched:

        def lost_executor(*args, **kwargs):
            raise RuntimeError("executor lost")

        patched.setattr("jobs.stages.activity.daily_activity", lost_executor)
        with pytest.raises(RuntimeError, match="executor lost"):
            activity(D2)
    activity(D2)  # the retry
    rows = lakehouse.read(DAILY_ACTIVITY, partitions=[("activity_date", "=", D1)]).collect()
    assert {r.subscriber_id: r.voice_minutes for r in rows} == {ON_TIME: 2.0}
