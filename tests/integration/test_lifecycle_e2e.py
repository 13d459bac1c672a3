"""One subscriber followed through the whole reward chain, day by day, with every day rerun.

Crafted history (daily_activity and a CRM snapshot) for three subscribers; one weekly data
mission template. The followed subscriber uses 900 MB the day before the first run, nothing on
day 1, 150 MB on days 2-5 and 9,500 MB on day 6, so:
  day 1  mission assigned (easy: 500 MB over days 2-8)
  day 2  lifetime data passes 1,024 MB: Data Explorer bronze (50 points)
  day 5  mission completed (600 MB, 100 points), Mission Master bronze (75 points);
         balance 225 passes the 200-point silver tier: tier up
  day 6  lifetime data passes 10,240 MB: Data Explorer silver (100 points)
"""

from __future__ import annotations

import shutil
import textwrap
from datetime import date, timedelta

import pytest
from pyspark.sql import functions as F

from jobs.config import DEFAULT_CONF_DIR, load_config
from jobs.missions import MissionSettings, with_holdout
from jobs.pipeline import STAGES, RunContext, build_lakehouse, run_stages
from jobs.settings import load_settings
from jobs.tables import (
    BADGE_AWARDS,
    BADGE_CATALOG,
    CAMPAIGN_TRIGGERS,
    DAILY_ACTIVITY,
    LOYALTY_LEDGER,
    LOYALTY_TIERS,
    MISSION_ASSIGNMENTS,
    MISSION_PROGRESS,
    SUBSCRIBER_PROFILE,
    schema_of,
)
from tests.integration.helpers import table_content

pytestmark = pytest.mark.integration

D1 = date(2025, 6, 2)
DAYS = [D1 + timedelta(days=i) for i in range(6)]
FOLLOWED, BUSY, QUIET = "sub-followed-0001", "sub-busy-0002", "sub-quiet-0003"
FIRST_RUN = ["scores", "segments", "missions", "progress", "badges", "loyalty", "campaigns"]
STATEFUL = ["missions", "progress", "badges", "loyalty", "campaigns"]
OUTPUTS = [MISSION_ASSIGNMENTS, MISSION_PROGRESS, BADGE_AWARDS, LOYALTY_LEDGER, LOYALTY_TIERS, CAMPAIGN_TRIGGERS]

TEMPLATE = """\
id: weekly_data_test
name: Weekly data
version: 1
kind: mission_template
spec:
  category: engagement
  description: "Use {target} {unit} of data this {period} and earn {points} points."
  metric: data_mb
  aggregation: sum
  thresholds: {easy: 500, medium: 1000, hard: 2000}
  periods: [weekly]
  segments: all
  eligibility: "true"
  reward:
    points: {easy: 100, medium: 150, hard: 250}
    offer_id: null
  badge: data_explorer
  priority: 50
  cooldown_days: 7
  active_from: null
  active_to: null
"""


def _config(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "weekly_data_test.yaml").write_text(TEMPLATE)
    missions = (conf / "missions.yaml").read_text()
    missions = missions.replace("templates_dir: templates/missions", f"templates_dir: {templates}")
    missions = missions.replace(
        "badges_dir: templates/badges", f"badges_dir: {DEFAULT_CONF_DIR.parent}/templates/badges"
    )
    (conf / "missions.yaml").write_text(missions)
    (conf / "loyalty.yaml").write_text(
        textwrap.dedent(
            """\
            points_expiry_days: 365
            downgrade_grace_days: 30
            tiers:
              - {id: member, name: Member, version: 1, kind: tier, spec: {rule: "true"}}
              - {id: silver, name: Silver, version: 1, kind: tier, spec: {rule: "points_balance >= 200"}}
              - {id: gold, name: Gold, version: 1, kind: tier, spec: {rule: "points_balance >= 5000"}}
            """
        )
    )
    return load_config(
        conf_dir=conf,
        env="test",
        overrides={"lakehouse.root": str(tmp_path / "lakehouse"), "raw.root": str(tmp_path / "raw")},
        environ={},
    )


def _activity_rows(config):
    names = load_settings(config).metrics.names
    usage = {FOLLOWED: {D1 - timedelta(days=1): 900.0, **dict.fromkeys(DAYS[1:5], 150.0), DAYS[5]: 9500.0}}
    usage[BUSY] = {d: 20.0 for d in [D1 - timedelta(days=1), *DAYS]}
    rows = []
    for subscriber, days in usage.items():
        for day, mb in days.items():
            values = dict.fromkeys(names, 0.0)
            values |= {"data_mb": mb, "data_sessions": 1.0, "usage_events": 1.0, "active": 1.0, "used_data": 1.0}
            rows.append((subscriber, *[values[n] for n in names], day))
    return names, rows


@pytest.fixture(scope="module")
def lifecycle(spark, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("lifecycle")
    config = _config(tmp_path)
    lakehouse = build_lakehouse(spark, config)
    names, rows = _activity_rows(config)
    schema = ", ".join(["subscriber_id string", *[f"{n} double" for n in names], "activity_date date"])
    activity = spark.createDataFrame(rows, schema)
    lakehouse.write(
        activity,
        DAILY_ACTIVITY,
        partition_by=["activity_date"],
        replace_where={"activity_date": sorted({r[-1] for r in rows})},
    )
    snapshot = D1 - timedelta(days=1)
    profile = spark.createDataFrame(
        [
            (s, "PRE_S", "PREPAID", D1 - timedelta(days=20), "ACTIVE", "25-34", "North", snapshot)
            for s in (FOLLOWED, BUSY, QUIET)
        ],
        schema_of(SUBSCRIBER_PROFILE),
    )
    lakehouse.write(
        profile, SUBSCRIBER_PROFILE, partition_by=["snapshot_date"], replace_where={"snapshot_date": snapshot}
    )
    settings = MissionSettings.load(config.conf_dir / "missions.yaml")
    held_out = with_holdout(spark.createDataFrame([(s,) for s in (FOLLOWED, BUSY)], "subscriber_id string"), settings)
    assert held_out.filter("holdout").count() == 0, "pick subscriber ids outside the holdout"

    per_day = {}
    for ds in DAYS:
        ctx = RunContext(spark, config, lakehouse, ds)
        per_day[ds] = run_stages(ctx, FIRST_RUN)
        before = {t: table_content(lakehouse, t) for t in OUTPUTS}
        run_stages(RunContext(spark, config, lakehouse, ds), STATEFUL)  # a rerun of the same night
        per_day[ds]["rerun_identical"] = before == {t: table_content(lakehouse, t) for t in OUTPUTS}
    return lakehouse, config, per_day


def followed(lakehouse, table):
    return lakehouse.read(table).filter(F.col("subscriber_id") == FOLLOWED)


def test_the_whole_chain_is_in_pipeline_order():
    names = list(STAGES)
    assert names[names.index("missions") :] == [
        *("missions", "progress", "badges", "loyalty", "campaigns", "subscriber_state", "quality", "exports")
    ]


def test_rerunning_a_night_changes_nothing(lifecycle):
    _, _, per_day = lifecycle
    assert {ds: r["rerun_identical"] for ds, r in per_day.items()} == dict.fromkeys(DAYS, True)


def test_mission_assigned_day_1_and_completed_day_5(lifecycle):
    lakehouse, _, _ = lifecycle
    (assignment,) = followed(lakehouse, MISSION_ASSIGNMENTS).collect()
    assert (assignment.assigned_ds, assignment.level, assignment.target_value) == (D1, "easy", 500.0)
    assert (assignment.period_start, assignment.period_end) == (DAYS[1], D1 + timedelta(days=7))
    progress = {
        r.progress_ds: (r.status, r.progress_value, r.progress_pct, r.completed_ds, r.newly_completed)
        for r in followed(lakehouse, MISSION_PROGRESS).collect()
    }
    assert progress == {
        DAYS[0]: ("assigned", 0.0, 0.0, None, False),
        DAYS[1]: ("active", 150.0, 30.0, None, False),
        DAYS[2]: ("active", 300.0, 60.0, None, False),
        DAYS[3]: ("active", 450.0, 90.0, None, False),
        DAYS[4]: ("completed", 600.0, 100.0, DAYS[4], True),
        DAYS[5]: ("completed", 10100.0, 100.0, DAYS[4], False),
    }


def test_no_new_mission_while_the_template_cools_down(lifecycle):
    lakehouse, _, _ = lifecycle
    assert followed(lakehouse, MISSION_ASSIGNMENTS).count() == 1


def test_badges_bronze_then_silver_each_once(lifecycle):
    lakehouse, _, _ = lifecycle
    awards = sorted((r.awarded_ds, r.badge_id, r.points) for r in followed(lakehouse, BADGE_AWARDS).collect())
    assert awards == [
        (DAYS[1], "data_explorer.bronze", 50),
        (DAYS[4], "mission_master.bronze", 75),
        (DAYS[5], "data_explorer.silver", 100),
    ]
    (silver,) = followed(lakehouse, BADGE_AWARDS).filter(F.col("level") == "silver").collect()
    assert silver.rule == "total_data_mb >= 10240 or badge_missions >= 5"  # or missions linked to the badge
    assert silver.qualifying_values == "badge_missions=1.0, total_data_mb=11000.0"  # day 5's mission names the badge


def test_points_credited_once_and_balance_is_the_sum(lifecycle):
    lakehouse, _, _ = lifecycle
    entries = sorted((r.entry_ds, r.entry_type, r.points) for r in followed(lakehouse, LOYALTY_LEDGER).collect())
    assert entries == [
        (DAYS[1], "badge_award", 50),
        (DAYS[4], "badge_award", 75),
        (DAYS[4], "mission_completion", 100),
        (DAYS[5], "badge_award", 100),
    ]
    ledger = lakehouse.read(LOYALTY_LEDGER)
    assert ledger.count() == ledger.select("entry_id").distinct().count()
    tiers = {r.tier_ds: (r.points_balance, r.tier, r.tier_change) for r in followed(lakehouse, LOYALTY_TIERS).collect()}
    assert tiers == {
        DAYS[0]: (0, "member", None),
        DAYS[1]: (50, "member", None),
        DAYS[2]: (50, "member", None),
        DAYS[3]: (50, "member", None),
        DAYS[4]: (225, "silver", "up"),
        DAYS[5]: (325, "silver", None),
    }


def test_campaign_triggers_follow_the_story(lifecycle):
    lakehouse, _, _ = lifecycle
    triggers = sorted(
        (
            r.trigger_ds,
            r.trigger_type,
            r.payload.get("badge_id") or r.payload.get("to_tier") or r.payload.get("mission_id"),
        )
        for r in followed(lakehouse, CAMPAIGN_TRIGGERS).filter(F.col("trigger_type") != "score_crossed").collect()
    )
    assert triggers == [
        (DAYS[0], "mission_assigned", "weekly_data_test.v1.new_joiners.easy.weekly"),
        (DAYS[1], "badge_awarded", "data_explorer.bronze"),
        (DAYS[4], "badge_awarded", "mission_master.bronze"),
        (DAYS[4], "mission_completed", "weekly_data_test.v1.new_joiners.easy.weekly"),
        (DAYS[4], "tier_changed", "silver"),
        (DAYS[5], "badge_awarded", "data_explorer.silver"),
    ]
    (assigned,) = followed(lakehouse, CAMPAIGN_TRIGGERS).filter(F.col("trigger_type") == "mission_assigned").collect()
    assert assigned.payload["text"] == "Use 500 MB of data this week and earn 100 points."


def test_badge_catalog_has_48_levels(lifecycle):
    lakehouse, _, _ = lifecycle
    catalog = lakehouse.read(BADGE_CATALOG, partitions=[("catalog_date", "=", DAYS[-1])])
    assert catalog.count() == 48
    assert catalog.select("badge_type").distinct().count() == 12


def test_rerunning_a_past_day_leaves_every_table_unchanged(lifecycle, spark):
    lakehouse, config, _ = lifecycle
    before = {t: table_content(lakehouse, t) for t in OUTPUTS}
    run_stages(RunContext(spark, config, lakehouse, DAYS[2]), FIRST_RUN)
    assert {t: table_content(lakehouse, t) for t in OUTPUTS} == before
