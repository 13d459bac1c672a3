"""Known-answer tests of mission progress, lifetime metrics, badges, loyalty and campaigns."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest
from pyspark.sql import functions as F

from jobs import badges, campaigns, lifetime, loyalty, progress
from jobs.config import DEFAULT_CONF_DIR, ConfigError
from jobs.tables import BADGE_AWARDS, schema_of
from jobs.templates import MissionMetric, TemplateError

pytestmark = pytest.mark.unit

D = date(2025, 5, 1)


def day(n: int) -> date:
    return D + timedelta(days=n)


# -- mission progress ---------------------------------------------------------------------------

METRICS = {
    "data_mb": MissionMetric("data_mb", "data_mb", "sum"),
    "active_days": MissionMetric("active_days", "active", "days"),
    "usage_streak_days": MissionMetric("usage_streak_days", "active", "streak"),
    "best_day": MissionMetric("best_day", "data_mb", "max"),
}
ASSIGNMENT_SCHEMA = (
    "assignment_id string, subscriber_id string, mission_id string, template_id string, category string, "
    "metric string, aggregation string, period_start date, period_end date, target_value double, "
    "reward_points int, holdout boolean, assigned_ds date"
)


def _assignment(aid, metric, aggregation, target, start=1, end=7):
    return (
        aid,
        "s1",
        f"m.{aid}",
        "t",
        "engagement",
        metric,
        aggregation,
        day(start),
        day(end),
        float(target),
        10,
        False,
        day(0),
    )


def _activity(spark, values):
    """values: {day offset: (data_mb, active)} for subscriber s1."""
    rows = [("s1", float(mb), float(active), day(n)) for n, (mb, active) in values.items()]
    return spark.createDataFrame(rows, "subscriber_id string, data_mb double, active double, activity_date date")


def _no_completions(spark):
    return spark.createDataFrame([], "assignment_id string, _completed_before date, _completed_same_day date")


def _track(spark, assignments, activity, ds, recorded=None, settle_days=0):
    df = spark.createDataFrame(assignments, ASSIGNMENT_SCHEMA)
    rows = progress.track(df, activity, recorded or _no_completions(spark), METRICS, ds, settle_days).collect()
    return {r.assignment_id: r for r in rows}


def test_progress_measures_each_aggregation_and_the_first_day_reached(spark):
    # active on days 1, 2, 3, 5, 6 (a gap on day 4); data 100, 0, 300, -, 50, 500
    activity = _activity(spark, {1: (100, 1), 2: (0, 1), 3: (300, 1), 5: (50, 1), 6: (500, 1)})
    rows = _track(
        spark,
        [
            _assignment("sum", "data_mb", "sum", 400),
            _assignment("days", "active_days", "days", 5),
            _assignment("streak", "usage_streak_days", "streak", 3),
            _assignment("max", "best_day", "max", 1000),
        ],
        activity,
        day(6),
    )
    assert (rows["sum"].progress_value, rows["sum"].completed_ds, rows["sum"].status) == (950.0, day(3), "completed")
    assert (rows["days"].progress_value, rows["days"].completed_ds) == (5.0, day(6))
    assert (rows["streak"].progress_value, rows["streak"].completed_ds) == (3.0, day(3))
    assert (rows["max"].progress_value, rows["max"].status, rows["max"].progress_pct) == (500.0, "active", 50.0)
    assert all(r.newly_completed == (r.completed_ds is not None) for r in rows.values())


def test_progress_only_counts_days_inside_the_period_up_to_the_run_date(spark):
    activity = _activity(spark, {0: (1000, 1), 2: (100, 1), 4: (100, 1)})
    rows = _track(spark, [_assignment("a", "data_mb", "sum", 1000, start=1, end=7)], activity, day(3))
    assert (rows["a"].progress_value, rows["a"].status) == (100.0, "active")


def test_a_target_met_exactly_by_decimal_amounts_completes(spark):
    # 2.80 + 5.60 + 1.60 is exactly a 10.00 target, though its double sum is 9.999999999999998
    activity = _activity(spark, {1: (2.8, 1), 2: (5.6, 1), 3: (1.6, 1)})
    rows = _track(spark, [_assignment("a", "data_mb", "sum", 10, start=1, end=3)], activity, day(3))
    assert (rows["a"].status, rows["a"].completed_ds, rows["a"].newly_completed) == ("completed", day(3), True)
    assert rows["a"].progress_pct == 100.0


def test_progress_lifecycle_assigned_then_expired(spark):
    activity = _activity(spark, {1: (10, 1)})
    assigned = _track(spark, [_assignment("a", "data_mb", "sum", 100, start=1, end=3)], activity, day(0))
    assert (assigned["a"].status, assigned["a"].progress_value) == ("assigned", 0.0)
    expired = _track(spark, [_assignment("a", "data_mb", "sum", 100, start=1, end=3)], activity, day(3))
    assert (expired["a"].status, expired["a"].completed_ds) == ("expired", None)
    after = _track(spark, [_assignment("a", "data_mb", "sum", 100, start=1, end=3)], activity, day(4))
    assert after == {}  # no rows once the period is over


def test_a_late_event_of_the_period_s_last_day_completes_it_while_it_settles(spark):
    """Day 3 is the period's last day; its run sees 60 MB of the 100 MB target. The next day's
    extract brings a late 50 MB session dated day 3: within the settling days the mission is
    completed on day 3, and the night that saw it credits it; after them it has no row."""
    mission = [_assignment("a", "data_mb", "sum", 100, start=1, end=3)]
    on_time = _activity(spark, {1: (30, 1), 3: (30, 1)})
    last_day = _track(spark, mission, on_time, day(3), settle_days=2)
    assert (last_day["a"].status, last_day["a"].progress_value) == ("expired", 60.0)

    with_late = _activity(spark, {1: (30, 1), 3: (80, 1), 4: (500, 1)})  # day 4's use is outside the period
    next_day = _track(spark, mission, with_late, day(4), settle_days=2)
    row = next_day["a"]
    assert (row.status, row.progress_value, row.completed_ds, row.newly_completed) == ("completed", 110.0, day(3), True)
    assert row.progress_ds == day(4)

    assert _track(spark, mission, with_late, day(5), settle_days=2)["a"].status == "completed"
    assert _track(spark, mission, with_late, day(6), settle_days=2) == {}  # settled
    assert _track(spark, mission, with_late, day(4)) == {}  # with no settling days the late event never counts


def test_a_recorded_completion_is_final(spark):
    # the data no longer reaches the target (say, a corrected extract), but day 2's completion stands
    activity = _activity(spark, {1: (10, 1)})
    earlier = spark.createDataFrame(
        [("a", "completed", day(2), day(2))], "assignment_id string, status string, completed_ds date, progress_ds date"
    )
    recorded = progress.prior_completions(earlier, day(3))
    rows = _track(spark, [_assignment("a", "data_mb", "sum", 100)], activity, day(3), recorded)
    assert (rows["a"].status, rows["a"].completed_ds, rows["a"].newly_completed) == ("completed", day(2), False)
    # a rerun of the completion day keeps it, and still counts it as new that day
    rerun = _track(
        spark, [_assignment("a", "data_mb", "sum", 100)], activity, day(2), progress.prior_completions(earlier, day(2))
    )
    assert (rerun["a"].completed_ds, rerun["a"].newly_completed) == (day(2), True)


# -- lifetime metrics ---------------------------------------------------------------------------

LIFETIME = {
    "total_data_mb": lifetime.LifetimeMetric("total_data_mb", "data_mb", "sum"),
    "total_active_days": lifetime.LifetimeMetric("total_active_days", "active", "days"),
    "longest_streak_days": lifetime.LifetimeMetric("longest_streak_days", "active", "streak"),
    "comeback_days": lifetime.LifetimeMetric("comeback_days", "active", "return_gap", window=30),
}


def _values(spark, state_df, ds):
    row = state_df.select(lifetime.values(F.col("state"), LIFETIME, ["loyalty"], ds).alias("m")).first()
    return dict(row.m)


def test_folding_in_two_spans_equals_one_fold_over_everything(spark):
    # active days 0-2, 5-9 (run of 5), gap of 15 days, then 25-26
    days = {n: (100, 1) for n in [0, 1, 2, 5, 6, 7, 8, 9, 25, 26]}
    activity = _activity(spark, days)
    once = lifetime.advance(None, activity, None, LIFETIME, ["loyalty"], span=(day(0), day(26)))
    first = lifetime.advance(None, activity, None, LIFETIME, ["loyalty"], span=(day(0), day(6)))
    both = lifetime.advance(first, activity, None, LIFETIME, ["loyalty"], span=(day(7), day(26)))
    expected = {
        "total_data_mb": 1000.0,
        "total_active_days": 10.0,
        "longest_streak_days": 5.0,
        "comeback_days": 15.0,
        "missions_completed": 0.0,
        "missions_completed_loyalty": 0.0,
    }
    assert _values(spark, once, day(30)) == expected
    assert _values(spark, both, day(30)) == expected
    assert _values(spark, both, day(60))["comeback_days"] == 0.0  # the return is too long ago


def _walked_one_day_at_a_time(active: list[int], today: int) -> dict[str, float]:
    """The longest streak and the comeback (gap before the latest return, if within 30 days)."""
    best = run = gap = 0
    last = returned = None
    for d in sorted(active):
        run = run + 1 if last == d - 1 else 1
        best = max(best, run)
        if last is not None and d - last > 1:
            gap, returned = d - last - 1, d
        last = d
    return {
        "longest_streak_days": float(best),
        "comeback_days": float(gap if returned is not None and today - returned < 30 else 0),
    }


@pytest.mark.parametrize(
    "cuts",
    [
        [(0, 30), (31, 61), (62, 69)],  # lifetime.fold_spans
        [(0, 9), (10, 10), (11, 12), (13, 43), (44, 69)],
    ],
)
def test_streaks_and_returns_folded_over_any_spans_equal_a_walk_one_day_at_a_time(spark, cuts):
    pick = random.Random(7)
    active = {f"s{i}": sorted(pick.sample(range(70), pick.randint(1, 60))) for i in range(12)}
    active["s_every_day"] = list(range(70))
    active["s_edges"] = [0, 30, 31, 61, 62, 69]  # runs across the cuts
    rows = [(s, 1.0, 1.0, day(n)) for s, days in active.items() for n in days]
    activity = spark.createDataFrame(rows, "subscriber_id string, data_mb double, active double, activity_date date")
    state = None
    for first, last in cuts:
        state = lifetime.advance(state, activity, None, LIFETIME, ["loyalty"], span=(day(first), day(last)))
    got = {
        r.subscriber_id: {k: r.m[k] for k in ("longest_streak_days", "comeback_days")}
        for r in state.select(
            "subscriber_id", lifetime.values(F.col("state"), LIFETIME, ["loyalty"], day(75)).alias("m")
        ).collect()
    }
    assert got == {s: _walked_one_day_at_a_time(days, 75) for s, days in active.items()}


def test_long_spans_are_folded_in_spans_of_at_most_31_days(spark):
    assert lifetime.fold_spans(day(0), day(69)) == [(day(0), day(30)), (day(31), day(61)), (day(62), day(69))]
    assert lifetime.fold_spans(day(5), day(35)) == [(day(5), day(35))]
    assert lifetime.fold_spans(day(5), day(4)) == [(day(5), day(4))]  # no day: one empty span still folds
    with pytest.raises(ValueError, match=r"at most 31 days, not 32 \(2025-05-01 to 2025-06-01\)"):
        lifetime.advance(None, _activity(spark, {}), None, LIFETIME, ["loyalty"], span=(day(0), day(31)))


def test_lifetime_totals_are_kept_at_six_decimals(spark):
    """A badge rule `total_data_mb >= 0.3` holds after 0.1 MB and 0.2 MB, on one fold or two."""
    activity = _activity(spark, {0: (0.1, 1), 1: (0.2, 1)})
    once = lifetime.advance(None, activity, None, LIFETIME, ["loyalty"], span=(day(0), day(1)))
    first = lifetime.advance(None, activity, None, LIFETIME, ["loyalty"], span=(day(0), day(0)))
    both = lifetime.advance(first, activity, None, LIFETIME, ["loyalty"], span=(day(1), day(1)))
    assert _values(spark, once, day(1))["total_data_mb"] == _values(spark, both, day(1))["total_data_mb"] == 0.3


def test_completions_are_counted_by_category(spark):
    completions = spark.createDataFrame(
        [("s1", "loyalty"), ("s1", "revenue"), ("s1", "loyalty")], "subscriber_id string, category string"
    )
    state = lifetime.advance(None, _activity(spark, {}), completions, LIFETIME, ["loyalty", "revenue"], span=(D, D))
    values = dict(
        state.select(lifetime.values(F.col("state"), LIFETIME, ["loyalty", "revenue"], D).alias("m")).first().m
    )
    assert (
        values["missions_completed"],
        values["missions_completed_loyalty"],
        values["missions_completed_revenue"],
    ) == (
        3.0,
        2.0,
        1.0,
    )


# -- badges -------------------------------------------------------------------------------------

BADGE = """\
id: {id}
name: Test badge
version: 1
kind: badge
spec:
  description: "A test badge."
  unlock_order: {order}
  auto_award_rules:
    bronze:   "total_data_mb >= 10"
    silver:   "total_data_mb >= 20"
    gold:     "total_data_mb >= 30 and loyalty >= 50"
    platinum: "{platinum}"
  points: {{bronze: 1, silver: 2, gold: 3, platinum: 4}}
"""


def tier(name: str, rule: str) -> str:
    """One tier definition as a flow-style list item of conf/loyalty.yaml."""
    return f'  - {{id: {name}, name: {name.title()}, version: 1, kind: tier, spec: {{rule: "{rule}"}}}}\n'


def test_default_badges_are_12_types_of_4_levels():
    from jobs.config import load_config
    from jobs.settings import load_settings

    types = load_settings(load_config(env="test", environ={})).badges
    rows = badges.catalog_rows(types)
    assert (len(types), len(rows)) == (12, 48)
    assert len({r["badge_id"] for r in rows}) == 48
    assert [t.unlock_order for t in types] == sorted(t.unlock_order for t in types)


def test_badge_validation_names_file_line_and_column(tmp_path):
    (tmp_path / "a.yaml").write_text(BADGE.format(id="a", order=1, platinum="total_data_mbb >= 40"))
    (tmp_path / "b.yaml").write_text(BADGE.format(id="b", order=2, platinum="true").replace("gold: 3", "gold: 0"))
    (tmp_path / "c.yaml").write_text(BADGE.format(id="c", order=3, platinum="true"))
    (tmp_path / "d.yaml").write_text(BADGE.format(id="d", order=3, platinum="true"))
    with pytest.raises(TemplateError) as failed:
        badges.load_badges(tmp_path, ["total_data_mb", "loyalty"])
    problems = "\n".join(failed.value.problems)
    assert f"{tmp_path / 'a.yaml'}:12:16: unknown name 'total_data_mbb'" in problems
    assert (
        f"{tmp_path / 'b.yaml'}:13:11: spec.points: must not decrease from bronze to platinum: [1, 2, 0, 4]" in problems
    )
    assert f"{tmp_path / 'c.yaml'}:7:17: spec.unlock_order: 3 is also the order of d" in problems
    assert f"{tmp_path / 'd.yaml'}:7:17: spec.unlock_order: 3 is also the order of c" in problems
    assert len(failed.value.problems) == 4


def test_awards_are_progressive_and_never_repeated(spark, tmp_path):
    (tmp_path / "data.yaml").write_text(BADGE.format(id="data", order=1, platinum="total_data_mb >= 40"))
    (badge,) = badges.load_badges(tmp_path, ["total_data_mb", "loyalty"])
    subjects = spark.createDataFrame(
        [
            ("new", 35.0, 60.0, False),  # bronze, silver and gold at once
            ("gap", 35.0, 10.0, False),  # gold blocked by loyalty: bronze, silver only
            ("held", 45.0, 10.0, False),  # holds bronze and silver; gold still blocked, so no platinum
            ("holds_all", 45.0, 60.0, False),  # holds bronze; silver..platinum today
            ("none", 5.0, 90.0, True),
        ],
        "subscriber_id string, total_data_mb double, loyalty double, holdout boolean",
    )
    earlier = spark.createDataFrame(
        [("held", "data", 2, day(-3)), ("holds_all", "data", 1, day(-1)), ("new", "data", 4, day(0))],
        "subscriber_id string, badge_type string, level_rank int, awarded_ds date",
    )
    held = badges.held_levels(earlier, day(0))  # day(0) is being rerun: its own award does not count
    awards = badges.award(subjects, held, [badge], day(0)).collect()
    # a rerun of an earlier day never repeats a level awarded after it
    later = spark.createDataFrame(
        [("holds_all", "data.platinum", "data", 4, day(0))],
        "subscriber_id string, badge_id string, badge_type string, level_rank int, awarded_ds date",
    )
    rerun = badges.not_awarded_later(badges.award(subjects, held.limit(0), [badge], day(-1)), later, day(-1))
    assert sorted(a.level for a in rerun.collect() if a.subscriber_id == "holds_all") == ["bronze", "gold", "silver"]
    assert rerun.columns == schema_of(BADGE_AWARDS).fieldNames()  # written in the declared layout
    got = sorted((a.subscriber_id, a.level) for a in awards)
    assert got == [
        ("gap", "bronze"), ("gap", "silver"),
        ("holds_all", "gold"), ("holds_all", "platinum"), ("holds_all", "silver"),
        ("new", "bronze"), ("new", "gold"), ("new", "silver"),
    ]  # fmt: skip
    gold = next(a for a in awards if a.subscriber_id == "new" and a.level == "gold")
    assert (gold.rule, gold.qualifying_values, gold.points) == (
        "total_data_mb >= 30 and loyalty >= 50",
        "loyalty=60.0, total_data_mb=35.0",
        3,
    )
    assert len({a.award_id for a in awards}) == len(awards)


# -- loyalty ------------------------------------------------------------------------------------


def _loyalty_settings(tmp_path, grace=2, expiry=30):
    path = tmp_path / "loyalty.yaml"
    path.write_text(
        f"points_expiry_days: {expiry}\ndowngrade_grace_days: {grace}\ntiers:\n"
        + tier("member", "true")
        + tier("silver", "points_balance >= 100")
        + tier("gold", "points_balance >= 500 and loyalty >= 50")
    )
    return loyalty.LoyaltySettings.load(path, ["loyalty"])


def test_tier_rules_are_validated(tmp_path):
    path = tmp_path / "loyalty.yaml"
    path.write_text("tiers:\n" + tier("member", "true") + tier("silver", "pointz >= 1") + tier("silver", "true"))
    with pytest.raises(ConfigError) as failed:
        loyalty.LoyaltySettings.load(path, ["loyalty"])
    # `pointz` is at column 70 of line 3 (the rule's text); the repeated id is reported too
    first_lines = [p.splitlines()[0] for p in failed.value.problems]
    assert first_lines[0] == f"{path}:4:10: id: tier 'silver' is already defined at {path}:3:10"
    assert first_lines[1].startswith(f"{path}:3:70: unknown name 'pointz'")
    assert len(first_lines) == 2


def _tiers(spark, settings, balance, loyalty_score, previous, ds):
    subjects = spark.createDataFrame(
        [("s1", loyalty_score, False)], "subscriber_id string, loyalty double, holdout boolean"
    )
    balances = spark.createDataFrame(
        [("s1", balance, balance)], "subscriber_id string, points_balance long, lifetime_points long"
    )
    prev = None
    if previous:
        prev = spark.createDataFrame(
            [("s1", *previous)], "subscriber_id string, tier_rank int, tier string, tier_since date, below_since date"
        )
    row = loyalty.tiers(subjects, balances, prev, settings, ds).first()
    return row.tier, row.tier_change, row.tier_since, row.below_since


def test_upgrade_at_once_downgrade_after_the_grace_period(spark, tmp_path):
    settings = _loyalty_settings(tmp_path, grace=2)
    assert _tiers(spark, settings, 600, 60.0, None, day(0)) == ("gold", None, day(0), None)
    assert _tiers(spark, settings, 600, 60.0, (2, "silver", day(-5), None), day(0)) == ("gold", "up", day(0), None)
    # below gold since yesterday: kept; since two days: dropped to what the rules give
    assert _tiers(spark, settings, 150, 60.0, (3, "gold", day(-9), None), day(0)) == ("gold", None, day(-9), day(0))
    assert _tiers(spark, settings, 150, 60.0, (3, "gold", day(-9), day(-1)), day(0)) == ("gold", None, day(-9), day(-1))
    assert _tiers(spark, settings, 150, 60.0, (3, "gold", day(-9), day(-2)), day(0)) == ("silver", "down", day(0), None)
    # back above the rule before the grace ran out: the clock resets
    assert _tiers(spark, settings, 600, 60.0, (3, "gold", day(-9), day(-1)), day(0)) == ("gold", None, day(-9), None)


def test_ledger_entries_are_deterministic_credited_once_and_expire(spark, tmp_path):
    settings = _loyalty_settings(tmp_path, expiry=30)
    completions = spark.createDataFrame(
        [
            ("a1", "s1", "m1", 100, True, False, day(0)),
            ("a2", "s1", "m2", 100, False, False, None),
            ("a3", "s2", "m1", 100, True, True, day(0)),
        ],
        "assignment_id string, subscriber_id string, mission_id string, reward_points int, newly_completed boolean, "
        "holdout boolean, completed_ds date",
    )
    awards = spark.createDataFrame(
        [("w1", "s1", "data.bronze", 50, False, day(0))],
        "award_id string, subscriber_id string, badge_id string, points int, holdout boolean, awarded_ds date",
    )
    earned = loyalty.earnings(completions, awards, settings, day(0))
    rows = sorted((r.entry_type, r.source_id, r.points, r.expires_ds) for r in earned.collect())
    assert rows == [("badge_award", "w1", 50, day(30)), ("mission_completion", "a1", 100, day(30))]
    again = {r.entry_id for r in loyalty.earnings(completions, awards, settings, day(0)).collect()}
    assert again == {r.entry_id for r in earned.collect()}
    # an entry id already recorded on another day is not credited again
    recorded = earned.limit(1).select("entry_id", F.lit(day(-1)).alias("entry_ds"))
    assert loyalty.ledger_entries(earned, recorded, day(0)).count() == 1
    expired = loyalty.expiries(earned.withColumn("entry_ds", F.lit(day(0))), day(30)).collect()
    assert sorted(r.points for r in expired) == [-100, -50]
    balance = loyalty.balances(None, earned.unionByName(loyalty.expiries(earned, day(30)))).first()
    assert (balance.points_balance, balance.lifetime_points) == (0, 150)


# -- campaigns ----------------------------------------------------------------------------------


def test_score_crossings_and_audiences_skip_the_holdout(spark, tmp_path):
    path = tmp_path / "campaigns.yaml"
    path.write_text(
        "score_thresholds:\n"
        "  - {name: risk_high, score: risk, threshold: 50, direction: up}\n"
        "  - {name: risk_cleared, score: risk, threshold: 50, direction: down}\n"
        "audiences:\n"
        '  - {id: risky, name: Risky, version: 1, kind: audience, spec: {rule: "risk >= 50"}}\n'
        '  - {id: digital, name: Digital, version: 2, kind: audience, spec: {rule: "digital >= 80"}}\n'
    )
    settings = campaigns.CampaignSettings.load(path, ["risk", "digital"], ["risk", "digital"])
    assert settings.version == "2"  # the highest version among the audiences
    pairs = spark.createDataFrame(
        [("up", 55.0, 40.0, 90.0, False), ("down", 20.0, 60.0, 10.0, False), ("same", 70.0, 60.0, 10.0, False),
         ("held", 55.0, 40.0, 90.0, True)],
        "subscriber_id string, risk double, prev_risk double, digital double, holdout boolean",
    )  # fmt: skip
    empty = {
        "assigned": "subscriber_id string, assignment_id string, mission_id string, category string, description string, "
        "offer_id string, reward_points int, period_end date, holdout boolean",
        "completed": "subscriber_id string, assignment_id string, mission_id string, category string, reward_points int, "
        "completed_ds date, newly_completed boolean, holdout boolean",
        "awards": "subscriber_id string, award_id string, badge_id string, level string, points int, holdout boolean",
        "tiers": "subscriber_id string, previous_tier string, tier string, tier_change string, points_balance long, "
        "holdout boolean",
    }
    frames = {k: spark.createDataFrame([], v) for k, v in empty.items()}
    rows = campaigns.triggers(
        frames["assigned"], frames["completed"], frames["awards"], frames["tiers"], pairs, settings, day(0)
    ).collect()
    assert sorted((r.subscriber_id, r.source_id, r.payload["current"]) for r in rows) == [
        ("down", "risk_cleared", "20.0"),
        ("up", "risk_high", "55.0"),
    ]
    members = sorted((r.audience, r.subscriber_id) for r in campaigns.audiences(pairs, settings, day(0)).collect())
    assert members == [("digital", "up"), ("risky", "same"), ("risky", "up")]


def test_campaign_config_errors_name_the_key(tmp_path):
    path = tmp_path / "campaigns.yaml"
    path.write_text("score_thresholds:\n  - {name: x, score: riks, threshold: 50}\n")
    with pytest.raises(ConfigError, match=r"score_thresholds\[0\]\.score"):
        campaigns.CampaignSettings.load(path, ["risk"], ["risk"])


def test_score_threshold_names_are_unique(tmp_path):
    """The name is the trigger's source_id: two thresholds of one name crossed the same day by one
    subscriber would give two triggers of one trigger_id (the gate's unique check fails, a JDBC
    upsert cannot take both)."""
    path = tmp_path / "campaigns.yaml"
    path.write_text(
        "score_thresholds:\n"
        "  - {name: risk_alert, score: risk, threshold: 50, direction: up}\n"
        "  - {name: risk_alert, score: risk, threshold: 80, direction: up}\n"
    )
    with pytest.raises(ConfigError, match=r"campaigns\.yaml:3:\d+: score_thresholds\[1\]\.name: 'risk_alert'"):
        campaigns.CampaignSettings.load(path, ["risk"], ["risk"])


def test_default_reward_configs_load():
    from jobs.config import load_config
    from jobs.settings import load_settings

    settings = load_settings(load_config(env="test", environ={})).loyalty
    assert settings.names[0] == "member" and settings.downgrade_grace_days > 0
    assert settings.budgets == loyalty.Budgets(
        500000,
        {"at_risk": loyalty.Budget(150000, 1000), "new_joiners": loyalty.Budget(100000, None)},
    )
    assert (DEFAULT_CONF_DIR / "campaigns.yaml").exists()


def test_cli_validate_checks_the_badges_too(capsys):
    from jobs.cli import main

    assert main(["--env", "test", "templates", "validate"]) == 0
    assert "ok: 12 badge types, 48 badge levels" in capsys.readouterr().out


# -- budgets --------------------------------------------------------------------------------------

ENTRY_SCHEMA = (
    "entry_id string, subscriber_id string, entry_type string, source_id string, points int, description string, "
    "expires_ds date, earned_ds date, entry_ds date"
)
LEDGER_SCHEMA = (
    "entry_id string, subscriber_id string, entry_type string, source_id string, points int, description string, "
    "expires_ds date, requested_points int, status string, status_reason string, entry_ds date"
)


def test_points_beyond_a_segment_or_daily_budget_are_recorded_capped_in_order(spark):
    from chispa import assert_df_equality

    x = day(365)
    entries = spark.createDataFrame(
        [
            # vip: 100 + 80 fit its 200, then 50 does not (nor anything after it in vip)
            ("e1", "s1", "mission_completion", "a1", 100, "m", x, day(-1), day(0)),
            ("e2", "s1", "mission_completion", "a2", 80, "m", x, day(0), day(0)),
            ("e3", "s2", "mission_completion", "a3", 50, "m", x, day(0), day(0)),
            ("e4", "s2", "mission_completion", "a4", 10, "m", x, day(0), day(0)),
            # mass: no segment budget; the day's 300 is reached after 180 (vip) + 100 + ... in order
            ("e5", "s3", "badge_award", "w1", 100, "b", x, day(0), day(0)),
            ("e6", "s3", "mission_completion", "a5", 30, "m", x, day(0), day(0)),
            ("e7", "s4", "mission_completion", "a6", 5, "m", x, day(0), day(0)),
            # an expiry is never capped; a subscriber without a segment only meets the daily budget
            ("e8", "s4", "expiry", "old", -40, "x", None, day(0), day(0)),
            ("e9", "s5", "mission_completion", "a7", 1, "m", x, day(0), day(0)),
        ],
        ENTRY_SCHEMA,
    )
    segments = spark.createDataFrame(
        [("s1", "vip"), ("s2", "vip"), ("s3", "mass"), ("s4", "mass")], "subscriber_id string, segment string"
    )
    budgets = loyalty.Budgets(300, {"vip": loyalty.Budget(200, 5), "mass": loyalty.Budget(None, 1)})
    vip = "segment vip daily_points budget of 200 reached"
    day_cap = "daily_points budget of 300 reached"
    expected = spark.createDataFrame(
        [
            ("e1", "s1", "mission_completion", "a1", 100, "m", x, 100, "credited", None, day(0)),
            ("e2", "s1", "mission_completion", "a2", 80, "m", x, 80, "credited", None, day(0)),
            ("e3", "s2", "mission_completion", "a3", 0, "m", x, 50, "capped", vip, day(0)),
            ("e4", "s2", "mission_completion", "a4", 0, "m", x, 10, "capped", vip, day(0)),
            ("e5", "s3", "badge_award", "w1", 100, "b", x, 100, "credited", None, day(0)),
            ("e6", "s3", "mission_completion", "a5", 0, "m", x, 30, "capped", day_cap, day(0)),
            ("e7", "s4", "mission_completion", "a6", 0, "m", x, 5, "capped", day_cap, day(0)),
            ("e8", "s4", "expiry", "old", -40, "x", None, -40, "credited", None, day(0)),
            ("e9", "s5", "mission_completion", "a7", 0, "m", x, 1, "capped", day_cap, day(0)),
        ],
        LEDGER_SCHEMA,
    )
    actual = loyalty.with_budgets(entries, segments, budgets)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
    # without budgets everything is credited as requested
    free = loyalty.with_budgets(entries, segments, loyalty.Budgets())
    assert {(r.entry_id, r.points, r.requested_points, r.status) for r in free.collect()} == {
        (r.entry_id, r.points, r.points, "credited") for r in entries.collect()
    }


def test_budget_config_is_validated_with_file_and_key(tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "segments.yaml").write_text(
        "segments:\n"
        "  - {id: vip, name: VIP, version: 1, kind: segment, spec: {rule: 'true'}}\n"
        "  - {id: mass, name: Mass, version: 1, kind: segment, spec: {default: true}}\n"
    )
    path = conf / "loyalty.yaml"
    tiers = "tiers:\n" + tier("member", "true")
    path.write_text(tiers + "budgets:\n  daily_points: 10\n  segments:\n    vip: {daily_points: 5}\n")
    assert loyalty.LoyaltySettings.load(path, ["loyalty"]).budgets == loyalty.Budgets(10, {"vip": loyalty.Budget(5)})
    for budgets, key in (
        ("  daily_points: -1\n", r"budgets\.daily_points: must be a non-negative integer"),
        ("  segments:\n    gold: {daily_points: 5}\n", r"budgets\.segments\.gold: unknown segment; known: mass, vip"),
        ("  segments:\n    vip: {daily_points: 1.5}\n", r"budgets\.segments\.vip\.daily_points: must be a"),
        ("  segments:\n    vip: {daily_grants: 3}\n", r"budgets\.segments\.vip: must be a mapping with daily_points"),
        ("  weekly_points: 3\n", r"budgets\.weekly_points: unknown key"),
    ):
        path.write_text(tiers + "budgets:\n" + budgets)
        with pytest.raises(ConfigError, match=rf"loyalty\.yaml.*{key}"):
            loyalty.LoyaltySettings.load(path, ["loyalty"])
