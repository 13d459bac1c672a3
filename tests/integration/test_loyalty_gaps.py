"""The loyalty stage over crafted days: a balance survives a day without scores, and a completion
moved to an earlier day by a rerun (late events) is credited once.

Three subscribers over three days, the loyalty stage alone (conf/loyalty.yaml: silver from 200 points):
  GAP   completes a 300-point mission on day 0, is missing from day 1's scores (not in that
        CRM snapshot), and is scored again on day 2: silver with 300 points throughout.
  LATE  completes a 100-point mission on day 1, but its events reach day 2's ingest: day 2's
        progress records the completion (completed on day 1). Day 1 is then rerun with the late
        events (its progress now completes the mission), and day 2 after it (no longer new there).
  KEPT  was credited 50 points long before, stamped to expire on day 2 (under an expiry setting
        since changed): they expire on day 2.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pyspark.sql import functions as F

from jobs.config import load_config
from jobs.missions import MissionSettings, with_holdout
from jobs.pipeline import RunContext, build_lakehouse, run_stages
from jobs.tables import BEHAVIOR_SCORES, LOYALTY_LEDGER, LOYALTY_TIERS, MISSION_PROGRESS, schema_of

pytestmark = pytest.mark.integration

D0 = date(2025, 7, 1)
D1, D2 = D0 + timedelta(days=1), D0 + timedelta(days=2)
GAP, LATE, KEPT = "sub-gap-0001", "sub-late-0002", "sub-kept-0003"


def frame(spark, table, rows):
    """Rows given as dicts, the table's other columns null."""
    schema = schema_of(table)
    return spark.createDataFrame([tuple(row.get(f.name) for f in schema.fields) for row in rows], schema)


def progress(assignment, subscriber, points, ds, completed=None, new=False):
    return {
        "assignment_id": assignment,
        "subscriber_id": subscriber,
        "mission_id": f"m.{assignment}",
        "status": "completed" if completed else "active",
        "completed_ds": completed,
        "newly_completed": new,
        "reward_points": points,
        "holdout": False,
        "progress_ds": ds,
    }


@pytest.fixture(scope="module")
def loyalty_days(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("loyalty_gaps")
    config = load_config(env="test", overrides={"lakehouse.root": str(root / "lakehouse")}, environ={})
    lakehouse = build_lakehouse(spark, config)
    settings = MissionSettings.load(config.conf_dir / "missions.yaml")
    ids = spark.createDataFrame([(GAP,), (LATE,), (KEPT,)], "subscriber_id string")
    assert with_holdout(ids, settings).filter("holdout").count() == 0, "pick subscriber ids outside the holdout"

    def write(table, column, ds, rows):
        lakehouse.write(frame(spark, table, rows), table, partition_by=[column], replace_where={column: ds})

    def loyalty(ds):
        run_stages(RunContext(spark, config, lakehouse, ds), ["loyalty"])

    scores = {D0: [GAP, LATE], D1: [LATE], D2: [GAP, LATE]}
    for ds, subscribers in scores.items():
        rows = [{"subscriber_id": s, "engagement": 50.0, "revenue": 50.0, "loyalty": 50.0, "risk": 10.0,
                 "digital": 50.0, "score_date": ds} for s in subscribers]  # fmt: skip
        write(BEHAVIOR_SCORES, "score_date", ds, rows)
    long_before = D0 - timedelta(days=40)
    credit = {"entry_id": "e-kept", "subscriber_id": KEPT, "entry_type": "badge_award", "source_id": "w-kept",
              "points": 50, "description": "badge awarded: x", "expires_ds": D2, "requested_points": 50,
              "status": "credited", "entry_ds": long_before}  # fmt: skip
    write(LOYALTY_LEDGER, "entry_ds", long_before, [credit])
    write(MISSION_PROGRESS, "progress_ds", D0, [progress("a1", GAP, 300, D0, completed=D0, new=True)])
    write(MISSION_PROGRESS, "progress_ds", D1, [progress("a2", LATE, 100, D1)])
    write(MISSION_PROGRESS, "progress_ds", D2, [progress("a2", LATE, 100, D2, completed=D1, new=True)])
    for ds in (D0, D1, D2):
        loyalty(ds)
    first_tiers = {ds: tiers_on(lakehouse, ds) for ds in (D1, D2)}

    # the rerun of day 1 with its late events, then the recomputation of day 2
    write(MISSION_PROGRESS, "progress_ds", D1, [progress("a2", LATE, 100, D1, completed=D1, new=True)])
    loyalty(D1)
    write(MISSION_PROGRESS, "progress_ds", D2, [progress("a2", LATE, 100, D2, completed=D1)])
    loyalty(D2)
    return lakehouse, first_tiers


def tiers_on(lakehouse, ds):
    rows = lakehouse.read(LOYALTY_TIERS, partitions=[("tier_ds", "=", ds)]).collect()
    return {r.subscriber_id: (r.points_balance, r.tier, r.qualified_tier, r.previous_tier, r.tier_change) for r in rows}


def test_a_day_without_scores_keeps_the_balance_and_the_tier(loyalty_days):
    _, first = loyalty_days
    assert first[D1][GAP] == (300, "silver", None, "silver", None)  # carried, not judged
    assert first[D2][GAP] == (300, "silver", "silver", "silver", None)  # scored again: no change, no points lost


def test_a_completion_moved_to_an_earlier_day_by_a_rerun_is_credited_once(loyalty_days):
    lakehouse, first = loyalty_days
    assert first[D2][LATE][0] == 100  # credited on day 2 by the first runs
    ledger = lakehouse.read(LOYALTY_LEDGER).filter(F.col("subscriber_id") == LATE)
    entries = sorted((r.entry_ds, r.source_id, r.points) for r in ledger.collect())
    assert entries == [(D2, "a2", 100)]  # once, on day 2, after the reruns of days 1 and 2
    after = tiers_on(lakehouse, D2)
    assert after[LATE][0] == 100 and after[GAP] == first[D2][GAP]


def test_points_expire_on_the_day_stamped_when_earned(loyalty_days):
    lakehouse, first = loyalty_days
    assert first[D1][KEPT][:3] == (50, "member", None)  # not scored: carried
    ledger = lakehouse.read(LOYALTY_LEDGER).filter(F.col("subscriber_id") == KEPT)
    assert sorted((r.entry_ds, r.entry_type, r.points) for r in ledger.collect()) == [
        (D0 - timedelta(days=40), "badge_award", 50),
        (D2, "expiry", -50),
    ]
    assert tiers_on(lakehouse, D2)[KEPT][0] == 0


def test_every_balance_is_the_sum_of_the_ledger(loyalty_days):
    lakehouse, _ = loyalty_days
    ledger = lakehouse.read(LOYALTY_LEDGER).filter(F.col("entry_ds") <= F.lit(D2))
    sums = {
        r.subscriber_id: r.total for r in ledger.groupBy("subscriber_id").agg(F.sum("points").alias("total")).collect()
    }
    assert {s: v[0] for s, v in tiers_on(lakehouse, D2).items()} == sums == {GAP: 300, LATE: 100, KEPT: 0}
