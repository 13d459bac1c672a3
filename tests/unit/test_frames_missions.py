"""Whole-frame known answers for missions: `assign` (new assignments) and `track` (progress)."""

from __future__ import annotations

import hashlib
import textwrap
from datetime import date, timedelta

import pytest
from chispa import assert_df_equality

from jobs.config import DEFAULT_CONF_DIR
from jobs.missions import MissionSettings, assign, baselines
from jobs.progress import track
from jobs.templates import MissionMetric, catalog_rows, load_mission_metrics, load_templates
from tests.unit.test_missions import MORE_DATA

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

ASSIGNMENT_SCHEMA = (
    "assignment_id string, subscriber_id string, mission_id string, template_id string, template_version int, "
    "segment string, category string, metric string, aggregation string, level string, target_value double, "
    "period string, period_start date, period_end date, reward_points int, offer_id string, badge string, "
    "priority int, cooldown_days int, is_dynamic boolean, generated_for string, holdout boolean, reason string, "
    "description string, assigned_ds date"
)
CONF_METRICS = load_mission_metrics(DEFAULT_CONF_DIR / "metrics.yaml")
SEGMENTS = ["at_risk", "mass_prepaid", "young_digital"]
DAYS_TEMPLATE = """\
id: {id}
name: {id}
version: 1
kind: mission_template
spec:
  category: engagement
  description: "Be active {{target}} {{unit}} this {{period}} for {{points}} points."
  metric: active_days
  aggregation: days
  thresholds: {{weekly: {{easy: 3, medium: 5, hard: 7}}}}
  periods: [weekly]
  segments: {segments}
  eligibility: "true"
  reward: {{points: {{easy: 10, medium: 20, hard: 40}}, offer_id: null}}
  badge: b1
  priority: {priority}
  cooldown_days: 5
  active_from: 2025-01-01
  active_to: null
"""
# the personalised data template of the template tests, for the at_risk segment, monthly
DATA_TEMPLATE = (
    textwrap.dedent(MORE_DATA)
    .replace("id: more_data", "id: t6")
    .replace("periods: [weekly]", "periods: [monthly]")
    .replace("segments: [mass_prepaid, young_digital]", "segments: [at_risk]")
    .replace('eligibility: "data_mb_30 > 0"', 'eligibility: "risk >= 50"')
    .replace("badge: data_explorer", "badge: b1")
    .replace("priority: 40", "priority: 50")
    .replace("cooldown_days: 3", "cooldown_days: 5")
)


def days_mission(sub, template, segment, priority, *, level="easy", usual=0.0, holdout=False):
    """The expected mission_assignments row of a weekly active-days template."""
    target, points = {"easy": (3, 10), "medium": (5, 20)}[level]
    mission = f"{template}.v1.{segment}.{level}.weekly"
    start = DS + timedelta(days=1)  # a mission starts the day after it is assigned
    return (
        hashlib.sha256(f"{sub}|{mission}|{DS.isoformat()}".encode()).hexdigest(),
        sub, mission, template, 1, segment, "engagement", "active_days", "days", level, float(target), "weekly",
        start, start + timedelta(days=6), points, None, "b1", priority, 5, False, None, holdout,
        f"eligibility: true; segment={segment}; level {level}: usual {usual:.1f} days a week",
        f"Be active {target} days this week for {points} points.", DS,
    )  # fmt: skip


def test_assign_whole_frame_active_cooldown_cap_and_ties(spark, tmp_path):
    for template, segments, priority in [
        ("t1", "all", 90),
        ("t2", "[mass_prepaid, at_risk]", 80),
        ("t5", "[mass_prepaid]", 80),  # same priority as t2: template_id breaks the tie
        ("t3", "[mass_prepaid, young_digital]", 70),
        ("t9", "[mass_prepaid]", 95),
    ]:
        (tmp_path / f"{template}.yaml").write_text(
            DAYS_TEMPLATE.format(id=template, segments=segments, priority=priority)
        )
    (tmp_path / "t6.yaml").write_text(DATA_TEMPLATE)
    templates = load_templates(tmp_path, CONF_METRICS, SEGMENTS, ["risk", "segment"], ["b1"]).templates
    subjects = spark.createDataFrame(
        [
            # usual 0.5 active days a day: 3.5 a week, above easy's 3, so medium
            ("a", "mass_prepaid", 10.0, None, False, 0.5, None),
            ("b", "at_risk", 60.0, "OFF7", False, None, 30.0),  # t6: usual 30 MB a day -> 900 a month
            ("c", "young_digital", 10.0, None, True, None, None),
            ("d", "mass_prepaid", 10.0, None, False, None, None),
            ("e", None, 60.0, None, False, None, None),  # no segment: no template applies
        ],
        "subscriber_id string, segment string, risk double, nbo_offer_id string, holdout boolean, "
        "_baseline_active_days double, _baseline_data_mb double",
    )
    previous = spark.createDataFrame(
        [
            ("a", "t1", DS + timedelta(days=3), 5, False),  # active: blocks t1 and takes one of a's 3 slots
            ("a", "t9", DS + timedelta(days=2), 5, True),  # completed: no slot, but t9 cools down until DS+7
            ("b", "t1", DS - timedelta(days=2), 5, None),  # ended, cooling down until DS+3
            ("b", "t2", DS - timedelta(days=9), 5, None),  # free since DS-4
            ("b", "t6", DS - timedelta(days=5), 5, None),  # free from DS exactly
            *[("d", t, DS + timedelta(days=1), 5, None) for t in ("t1", "t2", "t3", "t5")],  # 4 active, over the cap
        ],
        "subscriber_id string, template_id string, period_end date, cooldown_days int, completed boolean",
    )
    start, t6 = DS + timedelta(days=1), f"t6.v1.dyn.medium.monthly.b.{DS.isoformat()}"
    # b's personalised t6: medium (no level rules), 1.2 x 900 = 1080 MB, rounded up to 1100
    t6_row = (
        hashlib.sha256(f"b|{t6}|{DS.isoformat()}".encode()).hexdigest(),
        "b", t6, "t6", 1, "at_risk", "revenue", "data_mb", "sum", "medium", 1100.0, "monthly",
        start, start + timedelta(days=29), 80, "OFF7", "b1", 50, 5, True, "b", False,
        "eligibility: risk >= 50 [risk=60.0]; segment=at_risk; level medium: usual 900.0 MB a month",
        "Use 1100 MB of data this month.", DS,
    )  # fmt: skip
    expected = spark.createDataFrame(
        [
            # a: offered t9, t1, t2, t5, t3; open t2, t5, t3; 3 - 1 active = 2 slots -> t2, t5
            days_mission("a", "t2", "mass_prepaid", 80, level="medium", usual=3.5),
            days_mission("a", "t5", "mass_prepaid", 80, level="medium", usual=3.5),
            # b: offered t1, t2, t6; t1 cools down
            days_mission("b", "t2", "at_risk", 80),
            t6_row,
            # c: the holdout flag is carried, not filtered here
            days_mission("c", "t1", "young_digital", 90, holdout=True),
            days_mission("c", "t3", "young_digital", 70, holdout=True),
            # d: t9 is open, but 4 active missions leave no slot
        ],
        ASSIGNMENT_SCHEMA,
    )
    actual = assign(subjects, previous, templates, CONF_METRICS, SETTINGS, DS)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_template_with_absolute_and_relative_periods_gives_catalog_and_personal_missions(spark, tmp_path):
    mixed = (
        textwrap.dedent(MORE_DATA)
        .replace("id: more_data", "id: mixed")
        .replace(
            "thresholds: {easy: {relative: 1.1, min: 50}, medium: {relative: 1.2, min: 100}, hard: "
            "{relative: 1.5, min: 200}}",
            "thresholds: {weekly: {easy: 300, medium: 600, hard: 900}, monthly: {easy: {relative: 1.1, min: 50}, "
            "medium: {relative: 1.2, min: 100}, hard: {relative: 1.5, min: 200}}}",
        )
        .replace("periods: [weekly]", "periods: [weekly, monthly]")
        .replace("segments: [mass_prepaid, young_digital]", "segments: [mass_prepaid]")
        .replace('eligibility: "data_mb_30 > 0"', 'eligibility: "true"')
        .replace("badge: data_explorer", "badge: b1")
    )
    assert "monthly: {easy: {relative" in mixed
    (tmp_path / "mixed.yaml").write_text(mixed)
    (template,) = load_templates(tmp_path, CONF_METRICS, SEGMENTS, ["segment"], ["b1"]).templates
    catalog = {r["mission_id"]: r["is_dynamic"] for r in catalog_rows([template], CONF_METRICS)}
    subjects = spark.createDataFrame(
        [(f"s{i:02d}", "mass_prepaid", None, False, 20.0) for i in range(24)],
        "subscriber_id string, segment string, nbo_offer_id string, holdout boolean, _baseline_data_mb double",
    )
    previous = spark.createDataFrame([], "subscriber_id string, template_id string, period_end date, cooldown_days int")
    rows = assign(subjects, previous, [template], CONF_METRICS, SETTINGS, DS).collect()
    assert len(rows) == 24 and {r.period for r in rows} == {"weekly", "monthly"}
    for r in rows:
        if r.period == "weekly":  # absolute targets: the catalog's mission, for everyone alike
            assert (r.mission_id, r.is_dynamic, r.generated_for) == (
                f"mixed.v1.mass_prepaid.{r.level}.weekly",
                False,
                None,
            )
            assert catalog[r.mission_id] is False
        else:  # relative targets: a personal mission, outside the catalog
            personal = f"mixed.v1.dyn.{r.level}.monthly.{r.subscriber_id}.{DS.isoformat()}"
            assert (r.mission_id, r.is_dynamic, r.generated_for) == (personal, True, r.subscriber_id)
            assert r.mission_id not in catalog


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
