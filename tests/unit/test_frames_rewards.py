"""Whole-frame known answers for rewards: badge `award`, loyalty earnings, ledger, balances and tiers."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

import pytest
from chispa import assert_df_equality

from jobs.badges import award, held_levels, load_badges, not_awarded_later
from jobs.loyalty import (
    Budget,
    Budgets,
    LoyaltySettings,
    balances,
    earnings,
    expiries,
    ledger_entries,
    tiers,
    with_budgets,
)

pytestmark = pytest.mark.unit

D = date(2025, 5, 1)


def day(n: int) -> date:
    return D + timedelta(days=n)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- badge awards ---------------------------------------------------------------------------------

BADGE = """\
id: {id}
name: {id} badge
version: {version}
kind: badge
spec:
  description: "A test badge."
  unlock_order: {order}
  auto_award_rules:
{rules}
  points: {{bronze: 1, silver: 2, gold: 3, platinum: 4}}
"""
DATA_RULES = """\
    bronze:   "total_data_mb >= 10"
    silver:   "total_data_mb >= 20"
    gold:     "total_data_mb >= 30 and loyalty >= 50"
    platinum: "total_data_mb >= 40"
"""
LOYAL_RULES = """\
    bronze:   "loyalty >= 50"
    silver:   "loyalty >= 70"
    gold:     "loyalty >= 80"
    platinum: "loyalty >= 95"
"""
AWARD_SCHEMA = (
    "award_id string, subscriber_id string, badge_id string, badge_type string, level string, level_rank int, "
    "badge_version int, rule string, qualifying_values string, points int, holdout boolean, awarded_ds date"
)


def awarded(sub, badge, version, level, rank, rule, values, holdout=False):
    badge_id = f"{badge}.{level}"
    return (sha(f"{sub}|{badge_id}"), sub, badge_id, badge, level, rank, version, rule, values, rank, holdout, day(0))


def test_badge_award_whole_frame_progressive_levels_and_unlock_order(spark, tmp_path):
    (tmp_path / "data.yaml").write_text(BADGE.format(id="data", version=2, order=1, rules=DATA_RULES))
    (tmp_path / "loyal.yaml").write_text(BADGE.format(id="loyal", version=1, order=2, rules=LOYAL_RULES))
    types = load_badges(tmp_path, ["total_data_mb", "loyalty"])
    subjects = spark.createDataFrame(
        [
            ("new", 35.0, 60.0, False),  # bronze, silver and gold at once; loyal stays locked (nothing held before)
            ("gap", 35.0, 10.0, False),  # gold blocked by loyalty: bronze, silver only
            ("held", 45.0, 10.0, False),  # holds data silver; gold blocked, so platinum cannot follow
            ("holds_all", 45.0, 60.0, False),  # holds data bronze: data silver..platinum, and loyal unlocked
            ("none", 5.0, 90.0, False),  # qualifies for loyal but holds no badge of a lower order
            ("ctl", 12.345, 0.0, True),  # holdout subscribers are awarded too (the flag travels with the row)
        ],
        "subscriber_id string, total_data_mb double, loyalty double, holdout boolean",
    )
    held = spark.createDataFrame(
        [("held", "data", 2), ("holds_all", "data", 1)], "subscriber_id string, badge_type string, held_rank int"
    )
    gold_rule = "total_data_mb >= 30 and loyalty >= 50"
    expected = spark.createDataFrame(
        [
            awarded("new", "data", 2, "bronze", 1, "total_data_mb >= 10", "total_data_mb=35.0"),
            awarded("new", "data", 2, "silver", 2, "total_data_mb >= 20", "total_data_mb=35.0"),
            awarded("new", "data", 2, "gold", 3, gold_rule, "loyalty=60.0, total_data_mb=35.0"),
            awarded("gap", "data", 2, "bronze", 1, "total_data_mb >= 10", "total_data_mb=35.0"),
            awarded("gap", "data", 2, "silver", 2, "total_data_mb >= 20", "total_data_mb=35.0"),
            awarded("holds_all", "data", 2, "silver", 2, "total_data_mb >= 20", "total_data_mb=45.0"),
            awarded("holds_all", "data", 2, "gold", 3, gold_rule, "loyalty=60.0, total_data_mb=45.0"),
            awarded("holds_all", "data", 2, "platinum", 4, "total_data_mb >= 40", "total_data_mb=45.0"),
            awarded("holds_all", "loyal", 1, "bronze", 1, "loyalty >= 50", "loyalty=60.0"),
            # shown values are rounded to 2 places
            awarded("ctl", "data", 2, "bronze", 1, "total_data_mb >= 10", "total_data_mb=12.35", holdout=True),
        ],
        AWARD_SCHEMA,
    )
    assert_df_equality(award(subjects, held, types, day(0)), expected, ignore_row_order=True, ignore_nullable=True)


def test_held_levels_whole_frame_highest_rank_before_the_run_date(spark):
    awards = spark.createDataFrame(
        [
            ("s1", "data", 1, day(-3)),
            ("s1", "data", 2, day(-1)),
            ("s1", "loyal", 1, day(0)),  # awarded on the day being (re)run: not held before it
            ("s2", "data", 4, day(1)),  # awarded after it
            ("s3", "data", 1, day(-10)),
        ],
        "subscriber_id string, badge_type string, level_rank int, awarded_ds date",
    )
    expected = spark.createDataFrame(
        [("s1", "data", 2), ("s3", "data", 1)], "subscriber_id string, badge_type string, held_rank int"
    )
    assert_df_equality(held_levels(awards, day(0)), expected, ignore_row_order=True, ignore_nullable=True)


def test_not_awarded_later_whole_frame_a_rerun_never_repeats_a_later_award(spark):
    new = spark.createDataFrame(
        [("s1", "data.bronze", "bronze"), ("s1", "data.silver", "silver"), ("s2", "data.bronze", "bronze")],
        "subscriber_id string, badge_id string, level string",
    )
    awards = spark.createDataFrame(
        [
            ("s1", "data.silver", day(1)),  # awarded after the rerun day: dropped
            ("s2", "data.bronze", day(0)),  # awarded on the rerun day itself: rewritten
            ("s1", "data.bronze", day(-1)),  # earlier days are held_levels' business, not this filter's
        ],
        "subscriber_id string, badge_id string, awarded_ds date",
    )
    expected = spark.createDataFrame(
        [("s1", "data.bronze", "bronze"), ("s2", "data.bronze", "bronze")],
        "subscriber_id string, badge_id string, level string",
    )
    actual = not_awarded_later(new, awards, day(0))
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


# -- loyalty ----------------------------------------------------------------------------------------

SETTINGS = LoyaltySettings(
    tiers=(
        ("bronze", "true"),
        ("silver", "points_balance >= 100"),
        ("gold", "points_balance >= 500 and engagement >= 50"),
    ),
    downgrade_grace_days=30,
    points_expiry_days=365,
)
ENTRY_SCHEMA = (
    "entry_id string, subscriber_id string, entry_type string, source_id string, points int, description string, "
    "expires_ds date, earned_ds date"
)


def test_earnings_whole_frame_completed_non_holdout_positive_rewards(spark):
    completions = spark.createDataFrame(
        [
            ("a1", "s1", "m.a1", False, 100, day(0)),
            # completed on an earlier day: earned again here, ledger_entries keeps it only if no
            # other day recorded it (a rerun of that day may have moved the completion there)
            ("a2", "s1", "m.a2", False, 100, day(-3)),
            ("a3", "s2", "m.a3", True, 100, day(0)),  # holdout
            ("a4", "s2", "m.a4", False, 0, day(0)),  # no reward
            ("a5", "s2", "m.a5", False, 100, None),  # not completed
        ],
        "assignment_id string, subscriber_id string, mission_id string, holdout boolean, reward_points int, "
        "completed_ds date",
    )
    awards = spark.createDataFrame(
        [
            ("w1", "s1", "data.bronze", 50, False, day(0)),
            ("w2", "s3", "data.silver", 60, True, day(0)),  # holdout
            ("w3", "s3", "free.bronze", 0, False, day(0)),  # worth nothing
        ],
        "award_id string, subscriber_id string, badge_id string, points int, holdout boolean, awarded_ds date",
    )
    expires = day(365)  # points_expiry_days after the day they were earned
    expected = spark.createDataFrame(
        [
            (sha("mission_completion|a1"), "s1", "mission_completion", "a1", 100, "mission completed: m.a1", expires,
             day(0)),
            (sha("mission_completion|a2"), "s1", "mission_completion", "a2", 100, "mission completed: m.a2", day(362),
             day(-3)),
            (sha("badge_award|w1"), "s1", "badge_award", "w1", 50, "badge awarded: data.bronze", expires, day(0)),
        ],
        ENTRY_SCHEMA,
    )  # fmt: skip
    actual = earnings(completions, awards, SETTINGS, day(0))
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_ledger_whole_frame_dedup_then_segment_and_daily_budgets(spark):
    def entry(eid, sub, kind, source, points, earned=0):
        return (eid, sub, kind, source, points, f"{kind} {source}", None, day(earned))

    new = spark.createDataFrame(
        [
            entry("e1", "s1", "mission_completion", "a0", 100),  # already recorded on another day
            entry("e2", "s1", "badge_award", "w1", 50),
            entry("e3", "s2", "mission_completion", "a2", 100),
            entry("e3", "s2", "mission_completion", "a2", 100),  # the same entry twice: recorded once
            entry("e4", "s3", "mission_completion", "a3", 100, earned=-1),  # earned yesterday: granted first
            entry("e5", "s4", "badge_award", "w5", 200),
            entry("e6", "s1", "expiry", "x", -40),  # a take-back is never capped
        ],
        ENTRY_SCHEMA,
    )
    recorded = spark.createDataFrame(
        [("e1", day(-1)), ("e2", day(0))],  # e2 by an earlier run of the same day: written again
        "entry_id string, entry_ds date",
    )
    segments = spark.createDataFrame(
        [("s1", "mass"), ("s2", "mass"), ("s3", "vip"), ("s4", "vip")], "subscriber_id string, segment string"
    )
    budgets = Budgets(daily_points=250, segments={"mass": Budget(daily_points=120), "vip": Budget()})
    # grant order (earned_ds, entry_type, source_id): e4, e2 (badge w1), e5 (badge w5), e6 (expiry), e3 (mission)
    # mass: e2 50 <= 120; e3 50 + 100 = 150 > 120 -> capped by the segment
    # day (segment-credited only): e4 100, e2 150, e5 350 > 250 -> capped by the day
    expected = spark.createDataFrame(
        [
            ("e2", "s1", "badge_award", "w1", 50, "badge_award w1", None, 50, "credited", None, day(0)),
            ("e3", "s2", "mission_completion", "a2", 0, "mission_completion a2", None, 100, "capped",
             "segment mass daily_points budget of 120 reached", day(0)),
            ("e4", "s3", "mission_completion", "a3", 100, "mission_completion a3", None, 100, "credited", None, day(0)),
            ("e5", "s4", "badge_award", "w5", 0, "badge_award w5", None, 200, "capped",
             "daily_points budget of 250 reached", day(0)),
            ("e6", "s1", "expiry", "x", -40, "expiry x", None, -40, "credited", None, day(0)),
        ],
        "entry_id string, subscriber_id string, entry_type string, source_id string, points int, "
        "description string, expires_ds date, requested_points int, status string, status_reason string, "
        "entry_ds date",
    )  # fmt: skip
    actual = with_budgets(ledger_entries(new, recorded, day(0)), segments, budgets)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_balances_whole_frame_carry_previous_and_add_movements(spark):
    previous = spark.createDataFrame(
        [("s1", 100, 300), ("s9", 5, 5)], "subscriber_id string, points_balance long, lifetime_points long"
    )
    entries = spark.createDataFrame(
        [("s1", 50), ("s1", -40), ("s2", 0), ("s3", 100)], "subscriber_id string, points int"
    )
    expected = spark.createDataFrame(
        [
            ("s1", 110, 350),  # 100 + 50 - 40; lifetime counts earnings only: 300 + 50
            ("s2", 0, 0),  # a capped (0-point) entry moves nothing
            ("s3", 100, 100),
            ("s9", 5, 5),  # no movement: carried
        ],
        "subscriber_id string, points_balance long, lifetime_points long",
    )
    assert_df_equality(balances(previous, entries), expected, ignore_row_order=True, ignore_nullable=True)


def test_tiers_whole_frame_upgrade_at_once_downgrade_after_grace(spark):
    subjects = spark.createDataFrame(
        [
            ("n", 60.0, False),
            ("u", 10.0, False),
            ("s", 10.0, False),
            ("g", 10.0, False),
            ("g2", 90.0, False),
            ("d", 90.0, False),
            ("r", 10.0, False),
            ("z", 99.0, True),
        ],
        "subscriber_id string, engagement double, holdout boolean",
    )
    balance = spark.createDataFrame(
        [("n", 600, 900), ("u", 150, 150), ("s", 150, 200), ("g", 50, 500), ("g2", 50, 900), ("d", 50, 900),
         ("r", 150, 150), ("c", 230, 400), ("cg", 0, 0), ("x", 0, 0), ("e", 40, 40)],
        "subscriber_id string, points_balance long, lifetime_points long",
    )  # fmt: skip
    previous = spark.createDataFrame(
        [
            ("u", 1, "bronze", day(-40), None, False),
            ("s", 2, "silver", day(-10), None, False),
            ("g", 2, "silver", day(-60), None, False),
            ("g2", 3, "gold", day(-90), day(-29), False),
            ("d", 3, "gold", day(-90), day(-30), False),
            ("r", 2, "silver", day(-20), day(-5), False),
            # not scored today:
            ("c", 2, "silver", day(-50), None, False),  # holds points: carried
            ("cg", 3, "gold", day(-70), day(-10), True),  # no points but a tier: carried, grace clock kept
            ("x", 1, "bronze", day(-9), None, False),  # nothing to carry: no row
        ],
        "subscriber_id string, tier_rank int, tier string, tier_since date, below_since date, holdout boolean",
    )
    rows = [
        # new: 600 points and engagement 60 -> gold at once
        ("n", 600, 900, "gold", 3, "gold", None, None, day(0), None, False),
        ("u", 150, 150, "silver", 2, "silver", "bronze", "up", day(0), None, False),
        ("s", 150, 200, "silver", 2, "silver", "silver", None, day(-10), None, False),
        # first day below silver: the grace period starts today, the tier is kept
        ("g", 50, 500, "silver", 2, "bronze", "silver", None, day(-60), day(0), False),
        # 29 days below gold < 30 days of grace: kept
        ("g2", 50, 900, "gold", 3, "bronze", "gold", None, day(-90), day(-29), False),
        # 30 days below gold: down to the tier it qualifies for
        ("d", 50, 900, "bronze", 1, "bronze", "gold", "down", day(0), None, False),
        # qualifies again for the tier it holds: the grace clock is cleared
        ("r", 150, 150, "silver", 2, "silver", "silver", None, day(-20), None, False),
        # no balance row: 0 points
        ("z", 0, 0, "bronze", 1, "bronze", None, None, day(0), None, True),
        # not scored today (absent from the CRM snapshot): balance carried, tier held, not judged
        ("c", 230, 400, "silver", 2, None, "silver", None, day(-50), None, False),
        ("cg", 0, 0, "gold", 3, None, "gold", None, day(-70), day(-10), True),
        # points moved (a completion) while not scored, no earlier tier: the first tier from today
        ("e", 40, 40, "bronze", 1, None, None, None, day(0), None, False),
    ]
    expected = spark.createDataFrame(
        [(*row, day(0)) for row in rows],
        "subscriber_id string, points_balance long, lifetime_points long, tier string, tier_rank int, "
        "qualified_tier string, previous_tier string, tier_change string, tier_since date, below_since date, "
        "holdout boolean, tier_ds date",
    )
    actual = tiers(subjects, balance, previous, SETTINGS, day(0))
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_expiries_whole_frame_take_back_what_expires_today(spark):
    earned = spark.createDataFrame(
        [
            ("E1", "s1", "mission_completion", "a1", 100, "mission completed: m1", day(0), day(-365)),
            ("E2", "s1", "badge_award", "w1", 50, "badge awarded: b1", day(1), day(-364)),  # tomorrow
            ("E3", "s2", "mission_completion", "a3", 0, "mission completed: m3", day(0), day(-365)),  # capped to 0
            ("E4", "s2", "expiry", "E0", -40, "points expired: x", None, day(-2)),  # a take-back expires never
            ("E5", "s3", "badge_award", "w5", 30, "badge awarded: b5", day(0), day(-365)),
        ],
        ENTRY_SCHEMA,
    )
    expected = spark.createDataFrame(
        [
            (sha("expiry|E1"), "s1", "expiry", "E1", -100, "points expired: mission completed: m1", None, day(0)),
            (sha("expiry|E5"), "s3", "expiry", "E5", -30, "points expired: badge awarded: b5", None, day(0)),
        ],
        ENTRY_SCHEMA,
    )
    assert_df_equality(expiries(earned, day(0)), expected, ignore_row_order=True, ignore_nullable=True)
