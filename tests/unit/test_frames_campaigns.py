"""Whole-frame known answers for campaign `triggers` and `audiences`."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from jobs.campaigns import CampaignSettings, ScoreCrossing, audiences, triggers

pytestmark = pytest.mark.unit

DS = date(2025, 5, 1)
SETTINGS = CampaignSettings(
    crossings=(
        ScoreCrossing("engaged", "engagement", 70.0, "up"),
        ScoreCrossing("risk_drop", "risk", 50.0, "down"),
    ),
    audiences=(("engaged", "engagement >= 70"), ("at_risk", "risk >= 60")),
    version="4",
)


def trigger(kind: str, sub: str, source: str, payload: dict[str, str]):
    return (
        hashlib.sha256(f"{kind}|{sub}|{source}|{DS.isoformat()}".encode()).hexdigest(),
        sub,
        kind,
        source,
        payload,
        DS,
    )


def test_triggers_whole_frame_every_kind_holdout_excluded(spark):
    assigned = spark.createDataFrame(
        [
            ("as1", "s1", False, "m1", "engagement", "Use 1 GB", "OFF1", 100, date(2025, 5, 7)),
            ("as2", "s2", True, "m1", "engagement", "Use 1 GB", "OFF1", 100, date(2025, 5, 7)),  # holdout
            ("as3", "s3", False, "m2", "digital", "Log in 3 days", None, 20, date(2025, 5, 7)),  # no offer
        ],
        "assignment_id string, subscriber_id string, holdout boolean, mission_id string, category string, "
        "description string, offer_id string, reward_points int, period_end date",
    )
    completed = spark.createDataFrame(
        [
            ("as1", "s1", True, False, "m1", "engagement", 100, DS),
            ("as4", "s1", False, False, "m3", "engagement", 100, date(2025, 4, 28)),  # completed on an earlier day
            ("as5", "s2", True, True, "m1", "engagement", 100, DS),  # holdout
        ],
        "assignment_id string, subscriber_id string, newly_completed boolean, holdout boolean, mission_id string, "
        "category string, reward_points int, completed_ds date",
    )
    awards = spark.createDataFrame(
        [("w1", "s1", False, "data.bronze", "bronze", 1), ("w2", "s2", True, "data.bronze", "bronze", 1)],
        "award_id string, subscriber_id string, holdout boolean, badge_id string, level string, points int",
    )
    tier_rows = spark.createDataFrame(
        [
            ("s1", "up", False, "bronze", "silver", 150),
            ("s3", None, False, "silver", "silver", 150),  # no change
            ("s4", "down", False, "gold", "bronze", 50),
            ("s2", "up", True, "bronze", "silver", 150),  # holdout
        ],
        "subscriber_id string, tier_change string, holdout boolean, previous_tier string, tier string, "
        "points_balance long",
    )
    score_pairs = spark.createDataFrame(
        [
            ("s1", False, 70.0, 69.994, 40.0, 50.0),  # engagement reaches 70 exactly; risk falls below 50
            ("s2", True, 80.0, 60.0, 10.0, 90.0),  # holdout
            ("s3", False, 70.0, 70.0, 49.9, None),  # already at 70; no previous risk: no crossing
            ("s4", False, 90.0, None, 80.0, 40.0),  # no previous engagement: no crossing; risk went up
        ],
        "subscriber_id string, holdout boolean, engagement double, prev_engagement double, risk double, "
        "prev_risk double",
    )
    expected = spark.createDataFrame(
        [
            trigger("mission_assigned", "s1", "as1", {"mission_id": "m1", "category": "engagement", "text": "Use 1 GB",
                    "offer_id": "OFF1", "reward_points": "100", "period_end": "2025-05-07"}),
            # a null offer is left out of the payload
            trigger("mission_assigned", "s3", "as3", {"mission_id": "m2", "category": "digital",
                    "text": "Log in 3 days", "reward_points": "20", "period_end": "2025-05-07"}),
            trigger("mission_completed", "s1", "as1", {"mission_id": "m1", "category": "engagement",
                    "reward_points": "100", "completed_ds": "2025-05-01"}),
            trigger("badge_awarded", "s1", "w1", {"badge_id": "data.bronze", "level": "bronze", "points": "1"}),
            trigger("tier_changed", "s1", "bronze>silver", {"from_tier": "bronze", "to_tier": "silver",
                    "direction": "up", "points_balance": "150"}),
            trigger("tier_changed", "s4", "gold>bronze", {"from_tier": "gold", "to_tier": "bronze",
                    "direction": "down", "points_balance": "50"}),
            # previous and current rounded to 2 places: 69.994 -> 69.99
            trigger("score_crossed", "s1", "engaged", {"crossing": "engaged", "score": "engagement",
                    "threshold": "70.0", "previous": "69.99", "current": "70.0"}),
            trigger("score_crossed", "s1", "risk_drop", {"crossing": "risk_drop", "score": "risk",
                    "threshold": "50.0", "previous": "50.0", "current": "40.0"}),
        ],
        "trigger_id string, subscriber_id string, trigger_type string, source_id string, "
        "payload map<string,string>, trigger_ds date",
    )  # fmt: skip
    actual = triggers(assigned, completed, awards, tier_rows, score_pairs, SETTINGS, DS)
    actual = actual.withColumn("payload", F.col("payload").cast("map<string,string>"))
    # map columns cannot be sorted on: both sides in trigger_id order
    assert_df_equality(actual.orderBy("trigger_id"), expected.orderBy("trigger_id"), ignore_nullable=True)


def test_audiences_whole_frame_one_row_per_matching_audience(spark):
    subjects = spark.createDataFrame(
        [
            ("s1", 75.0, 65.0, False),  # both audiences
            ("s2", 90.0, 90.0, True),  # holdout: never in an audience
            ("s3", None, 10.0, False),  # unknown engagement matches nothing
            ("s4", 70.0, 59.99, False),  # engaged at the boundary; risk just below
        ],
        "subscriber_id string, engagement double, risk double, holdout boolean",
    )
    expected = spark.createDataFrame(
        [("engaged", "s1", "4", DS), ("at_risk", "s1", "4", DS), ("engaged", "s4", "4", DS)],
        "audience string, subscriber_id string, audience_version string, audience_ds date",
    )
    actual = audiences(subjects, SETTINGS, DS)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
