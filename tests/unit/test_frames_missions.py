"""Whole-frame known answers for missions: `assign` (new assignments) and `track` (progress)."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

import pytest
from chispa import assert_df_equality

from jobs.missions import MissionSettings, assign, baselines
from jobs.progress import track
from jobs.templates import MissionMetric

pytestmark = pytest.mark.unit

DS = date(2025, 3, 10)
SETTINGS = MissionSettings(
    templates_dir="templates/missions",
    badges_dir="templates/badges",
    max_active=3,
    baseline_days=28,
    period_days={"daily": 1, "weekly": 7, "monthly": 30},
    holdout_share=0.0,
    holdout_salt="",
    dynamic_levels=(),
)

CANDIDATE_SCHEMA = (
    "subscriber_id string, segment string, holdout boolean, mission_id string, template_id string, "
    "template_version int, category string, metric string, aggregation string, level string, "
    "target_value double, period string, period_days int, reward_points int, offer_id string, badge string, "
    "priority int, cooldown_days int, is_dynamic boolean, reason string, description string"
)
ASSIGNMENT_SCHEMA = (
    "assignment_id string, subscriber_id string, mission_id string, template_id string, template_version int, "
    "segment string, category string, metric string, aggregation string, level string, target_value double, "
    "period string, period_start date, period_end date, reward_points int, offer_id string, badge string, "
    "priority int, cooldown_days int, is_dynamic boolean, generated_for string, holdout boolean, reason string, "
    "description string, assigned_ds date"
)


def candidate(sub, template, priority, *, holdout=False, monthly=False, dynamic=False):
    period, days = ("monthly", 30) if monthly else ("weekly", 7)
    return (
        sub, "mass", holdout, f"{template}.v1.mass.easy.{period}", template, 1, "engagement", "active_days",
        "days", "easy", 3.0, period, days, 10, "OFF" if dynamic else None, "b1", priority, 5, dynamic,
        f"why {template}", f"do {template}",
    )  # fmt: skip


def assigned(sub, template, priority, *, holdout=False, monthly=False, dynamic=False):
    """The expected mission_assignments row for a chosen candidate."""
    period, days = ("monthly", 30) if monthly else ("weekly", 7)
    mission = f"{template}.v1.mass.easy.{period}"
    start = DS + timedelta(days=1)  # a mission starts the day after it is assigned
    return (
        hashlib.sha256(f"{sub}|{mission}|{DS.isoformat()}".encode()).hexdigest(),
        sub, mission, template, 1, "mass", "engagement", "active_days", "days", "easy", 3.0, period,
        start, start + timedelta(days=days - 1), 10, "OFF" if dynamic else None, "b1", priority, 5, dynamic,
        sub if dynamic else None, holdout, f"why {template}", f"do {template}", DS,
    )  # fmt: skip


def test_assign_whole_frame_active_cooldown_cap_and_ties(spark):
    candidates = spark.createDataFrame(
        [
            candidate("a", "t1", 90),
            candidate("a", "t2", 80),
            candidate("a", "t5", 80),  # same priority as t2: template_id breaks the tie
            candidate("a", "t3", 70),
            candidate("a", "t9", 95),
            candidate("b", "t1", 90),
            candidate("b", "t2", 10),
            candidate("b", "t3", 50, monthly=True, dynamic=True),
            candidate("c", "t1", 90, holdout=True),
        ],
        CANDIDATE_SCHEMA,
    )
    previous = spark.createDataFrame(
        [
            ("a", "t1", DS + timedelta(days=3), 5, False),  # active: blocks t1 and takes one of a's 3 slots
            ("a", "t9", DS + timedelta(days=2), 5, True),  # completed: no slot, but t9 cools down until DS+7
            ("b", "t1", DS - timedelta(days=2), 5, None),  # ended, cooling down until DS+3
            ("b", "t2", DS - timedelta(days=9), 5, None),  # free since DS-4
            ("b", "t3", DS - timedelta(days=5), 5, None),  # free from DS exactly
        ],
        "subscriber_id string, template_id string, period_end date, cooldown_days int, completed boolean",
    )
    expected = spark.createDataFrame(
        [
            # a: open t2(80), t5(80), t3(70); 3 - 1 active = 2 slots -> t2, t5
            assigned("a", "t2", 80),
            assigned("a", "t5", 80),
            assigned("b", "t2", 10),
            assigned("b", "t3", 50, monthly=True, dynamic=True),
            assigned("c", "t1", 90, holdout=True),  # the holdout flag is carried, not filtered here
        ],
        ASSIGNMENT_SCHEMA,
    )
    actual = assign(candidates, previous, SETTINGS, DS)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


D = date(2025, 5, 1)


def day(n: int) -> date:
    return D + timedelta(days=n)


METRICS = {
    "data_mb": MissionMetric("data_mb", "data_mb", "sum"),
    "active_days": MissionMetric("active_days", "active", "days"),
    "usage_streak_days": MissionMetric("usage_streak_days", "active", "streak"),
    "best_day": MissionMetric("best_day", "data_mb", "max"),
}


def live_assignment(aid, sub, metric, aggregation, target, start, end):
    return (aid, sub, f"m.{aid}", "t", "engagement", metric, aggregation, day(start), day(end), float(target), 10,
            aid == "idle", day(0))  # fmt: skip


def test_track_whole_frame_every_aggregation_and_state(spark):
    assignments = spark.createDataFrame(
        [
            live_assignment("sum", "s1", "data_mb", "sum", 400, 1, 7),
            live_assignment("days", "s1", "active_days", "days", 5, 1, 7),
            live_assignment("streak", "s1", "usage_streak_days", "streak", 3, 1, 7),
            live_assignment("max", "s1", "best_day", "max", 1000, 1, 7),
            live_assignment("future", "s1", "data_mb", "sum", 100, 7, 9),
            live_assignment("expired", "s1", "data_mb", "sum", 2000, 1, 6),
            live_assignment("gone", "s1", "data_mb", "sum", 100, 1, 5),  # ended before the run date: no row
            live_assignment("prior", "s1", "data_mb", "sum", 5000, 1, 7),
            live_assignment("idle", "s2", "data_mb", "sum", 100, 1, 7),
        ],
        "assignment_id string, subscriber_id string, mission_id string, template_id string, category string, "
        "metric string, aggregation string, period_start date, period_end date, target_value double, "
        "reward_points int, holdout boolean, assigned_ds date",
    )
    # s1 is active on days 1, 2, 3, 5, 6 (gap on 4); day 0 is before every period, day 7 after the run date
    activity = spark.createDataFrame(
        [("s1", float(mb), 1.0, day(n)) for n, mb in {0: 1000, 1: 100, 2: 0, 3: 300, 5: 50, 6: 500, 7: 999}.items()],
        "subscriber_id string, data_mb double, active double, activity_date date",
    )
    recorded = spark.createDataFrame(
        [("prior", day(2), None)], "assignment_id string, _completed_before date, _completed_same_day date"
    )
    expected = spark.createDataFrame(
        [
            # data 100+0+300 reaches 400 on day 3; total 100+0+300+50+500 = 950
            ("sum", "s1", "m.sum", "t", "engagement", "data_mb", "sum", day(1), day(7), 400.0,
             950.0, 100.0, "completed", day(3), True, 10, False, day(6)),
            ("days", "s1", "m.days", "t", "engagement", "active_days", "days", day(1), day(7), 5.0,
             5.0, 100.0, "completed", day(6), True, 10, False, day(6)),
            # runs 1-2-3 then 5-6: longest 3, reached on day 3
            ("streak", "s1", "m.streak", "t", "engagement", "usage_streak_days", "streak", day(1), day(7), 3.0,
             3.0, 100.0, "completed", day(3), True, 10, False, day(6)),
            ("max", "s1", "m.max", "t", "engagement", "best_day", "max", day(1), day(7), 1000.0,
             500.0, 50.0, "active", None, False, 10, False, day(6)),
            ("future", "s1", "m.future", "t", "engagement", "data_mb", "sum", day(7), day(9), 100.0,
             0.0, 0.0, "assigned", None, False, 10, False, day(6)),
            # last day of the period below target: 950 / 2000 = 47.5 %
            ("expired", "s1", "m.expired", "t", "engagement", "data_mb", "sum", day(1), day(6), 2000.0,
             950.0, 47.5, "expired", None, False, 10, False, day(6)),
            # completed on day 2 by an earlier run: stays completed, not new; 950 / 5000 = 19 %
            ("prior", "s1", "m.prior", "t", "engagement", "data_mb", "sum", day(1), day(7), 5000.0,
             950.0, 19.0, "completed", day(2), False, 10, False, day(6)),
            ("idle", "s2", "m.idle", "t", "engagement", "data_mb", "sum", day(1), day(7), 100.0,
             0.0, 0.0, "active", None, False, 10, True, day(6)),
        ],
        "assignment_id string, subscriber_id string, mission_id string, template_id string, category string, "
        "metric string, aggregation string, period_start date, period_end date, target_value double, "
        "progress_value double, progress_pct double, status string, completed_ds date, newly_completed boolean, "
        "reward_points int, holdout boolean, progress_ds date",
    )  # fmt: skip
    actual = track(assignments, activity, recorded, METRICS, day(6))
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_baselines_whole_frame_usual_level_over_the_last_days(spark):
    activity = spark.createDataFrame(
        [
            ("a", DS, 70.0, 1.0),
            ("a", DS - timedelta(days=1), 0.0, 1.0),
            ("a", DS - timedelta(days=2), 14.0, 1.0),
            ("a", DS - timedelta(days=4), 7.0, 0.0),
            ("a", DS - timedelta(days=7), 1000.0, 1.0),  # 8th day back: outside a 7-day baseline
            ("a", DS + timedelta(days=1), 500.0, 1.0),  # after the run date: ignored
            ("b", DS - timedelta(days=10), 5.0, 1.0),
        ],
        "subscriber_id string, activity_date date, data_mb double, active double",
    )
    expected = spark.createDataFrame(
        [
            # sum: (70 + 0 + 14 + 7) / 7 = 13 a day; days: 3 active of 7; streak: DS-2..DS = 3; max: best day 70
            ("a", 13.0, 3.0 / 7, 3.0, 70.0),
            # nothing in the window: 0 a day, 0 days, no streak, no best day
            ("b", 0.0, 0.0, 0.0, None),
        ],
        "subscriber_id string, _baseline_data_mb double, _baseline_active_days double, "
        "_baseline_usage_streak_days double, _baseline_best_day double",
    )
    actual = baselines(activity, list(METRICS.values()), DS, 7)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
