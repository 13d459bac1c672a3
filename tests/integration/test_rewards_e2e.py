"""Progress, badges, loyalty and campaigns on the generated operator (the mission days)."""

from __future__ import annotations

import pytest
from pyspark.sql import Window
from pyspark.sql import functions as F

from jobs.settings import load_settings
from jobs.tables import (
    BADGE_AWARDS,
    BADGE_CATALOG,
    CAMPAIGN_AUDIENCES,
    CAMPAIGN_TRIGGERS,
    LOYALTY_LEDGER,
    LOYALTY_TIERS,
    MISSION_ASSIGNMENTS,
    MISSION_PROGRESS,
    SUBSCRIBER_LIFETIME,
)
from tests.integration.helpers import table_content

pytestmark = pytest.mark.integration


def read(pipeline, table):
    return pipeline.lakehouse.read(table)


def test_48_catalog_badges_every_mission_day(pipeline):
    catalog = read(pipeline, BADGE_CATALOG)
    per_day = {r.catalog_date: r.n for r in catalog.groupBy("catalog_date").agg(F.count("*").alias("n")).collect()}
    assert per_day == dict.fromkeys(pipeline.mission_days, 48)


def test_badges_are_awarded_once_in_level_order(pipeline):
    awards = read(pipeline, BADGE_AWARDS)
    assert awards.count() > 0
    assert awards.groupBy("subscriber_id", "badge_id").count().filter("count > 1").count() == 0
    # every level held has all lower levels held, awarded no later
    by_badge = Window.partitionBy("subscriber_id", "badge_type").orderBy("level_rank")
    ranked = awards.withColumn("expected_rank", F.row_number().over(by_badge)).withColumn(
        "previous_ds", F.lag("awarded_ds").over(by_badge)
    )
    assert ranked.filter(F.col("level_rank") != F.col("expected_rank")).count() == 0
    assert ranked.filter(F.col("previous_ds") > F.col("awarded_ds")).count() == 0
    catalog = read(pipeline, BADGE_CATALOG).select("badge_id").distinct()
    assert awards.join(catalog, "badge_id", "left_anti").count() == 0


def test_ledger_entries_unique_and_balances_are_their_sum(pipeline):
    ledger = read(pipeline, LOYALTY_LEDGER)
    assert ledger.count() == ledger.select("entry_id").distinct().count() > 0
    last = pipeline.last_day
    sums = ledger.groupBy("subscriber_id").agg(F.sum("points").alias("entries"))
    tiers = read(pipeline, LOYALTY_TIERS).filter(F.col("tier_ds") == F.lit(last))
    mismatched = tiers.join(sums, "subscriber_id", "left").filter(
        F.coalesce(F.col("entries"), F.lit(0)) != F.col("points_balance")
    )
    assert mismatched.count() == 0
    # points for completions match the completed missions' rewards, holdout excluded
    completed = read(pipeline, MISSION_PROGRESS).filter("newly_completed and not holdout and reward_points > 0")
    credited = ledger.filter(F.col("entry_type") == "mission_completion")
    assert credited.count() == completed.count()
    assert credited.agg(F.sum("points")).first()[0] == completed.agg(F.sum("reward_points")).first()[0]


def test_every_live_assignment_has_one_progress_row_a_day(pipeline):
    progress = read(pipeline, MISSION_PROGRESS)
    assert progress.groupBy("assignment_id", "progress_ds").count().filter("count > 1").count() == 0
    assignments = read(pipeline, MISSION_ASSIGNMENTS)
    settle_days = load_settings(pipeline.config).missions.settle_days  # live while it settles, after its period
    assert settle_days > 0
    settled = F.date_add(F.col("period_end"), settle_days)
    for ds in pipeline.mission_days:
        live = assignments.filter((F.col("assigned_ds") <= F.lit(ds)) & (settled >= F.lit(ds)))
        tracked = progress.filter(F.col("progress_ds") == F.lit(ds))
        assert live.count() == tracked.count()
    # a completion is never undone on a later day
    completed = (
        progress.filter(F.col("status") == "completed")
        .groupBy("assignment_id")
        .agg(F.min("progress_ds").alias("first"))
    )
    undone = progress.join(completed, "assignment_id").filter(
        (F.col("progress_ds") > F.col("first")) & (F.col("status") != "completed")
    )
    assert undone.count() == 0
    assert progress.filter("newly_completed").groupBy("assignment_id").count().filter("count > 1").count() == 0


def test_holdout_gets_no_triggers_points_or_audiences(pipeline):
    held = read(pipeline, MISSION_ASSIGNMENTS).filter("holdout").select("subscriber_id").distinct()
    assert held.count() > 0
    for table in (CAMPAIGN_TRIGGERS, LOYALTY_LEDGER, CAMPAIGN_AUDIENCES):
        assert read(pipeline, table).join(held, "subscriber_id").count() == 0, table


def test_triggers_cover_every_kind_with_a_payload(pipeline):
    triggers = read(pipeline, CAMPAIGN_TRIGGERS)
    kinds = {r.trigger_type for r in triggers.select("trigger_type").distinct().collect()}
    assert {"mission_assigned", "mission_completed", "badge_awarded", "tier_changed"} <= kinds
    assert triggers.count() == triggers.select("trigger_id").distinct().count()
    assigned = triggers.filter(F.col("trigger_type") == "mission_assigned")
    missions = read(pipeline, MISSION_ASSIGNMENTS).filter("not holdout")
    assert assigned.count() == missions.count()
    assert assigned.filter(F.col("payload")["text"].isNull() | F.col("payload")["text"].contains("{")).count() == 0


def test_lifetime_snapshot_covers_every_active_subscriber(pipeline):
    last = pipeline.last_day
    snapshot = read(pipeline, SUBSCRIBER_LIFETIME).filter(F.col("stats_date") == F.lit(last))
    active_days = (
        pipeline.lakehouse.read("daily_activity")
        .filter((F.col("activity_date") <= F.lit(last)) & (F.col("active") > 0))
        .groupBy("subscriber_id")
        .agg(F.count("*").alias("days"))
    )
    joined = active_days.join(snapshot, "subscriber_id", "left")
    assert joined.filter(F.col("metrics")["total_active_days"] != F.col("days")).count() == 0
    assert joined.filter(F.col("metrics").isNull()).count() == 0


def test_rewards_rerun_is_identical(pipeline, tmp_path):
    night = pipeline.copy(tmp_path)  # the shared lakehouse stays as the nightly runs left it
    tables = [MISSION_PROGRESS, BADGE_AWARDS, LOYALTY_LEDGER, LOYALTY_TIERS, CAMPAIGN_TRIGGERS, SUBSCRIBER_LIFETIME]
    before = {t: table_content(night.lakehouse, t) for t in tables}
    night.run(night.mission_days[1], stages=["progress", "badges", "loyalty", "campaigns"])
    assert {t: table_content(night.lakehouse, t) for t in tables} == before


def test_every_stage_is_recorded_in_pipeline_runs(pipeline):
    from jobs.pipeline import STAGES
    from jobs.tables import PIPELINE_RUNS

    runs = pipeline.lakehouse.read(PIPELINE_RUNS, partitions=[("run_ds", "=", pipeline.last_day)])
    stages = {r.stage: r.status for r in runs.filter(F.col("stage") != "ingest").collect()}
    assert stages == {s: "succeeded" for s in STAGES if s != "ingest"}
