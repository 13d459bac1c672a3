"""Mission templates (loading, validation, expansion) and assignment rules on tiny inputs."""

from __future__ import annotations

import dataclasses
import hashlib
import random
import shutil
import textwrap
from datetime import date
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F

from jobs.config import DEFAULT_CONF_DIR, ConfigError, load_config
from jobs.metrics import DAY_BITS, day_mask, with_longest_runs
from jobs.missions import MissionSettings, candidates, friendly, with_holdout
from jobs.settings import load_settings, templates_in
from jobs.templates import (
    CATEGORIES,
    TemplateError,
    catalog_rows,
    expansion_counts,
    load_mission_metrics,
    load_templates,
)

pytestmark = pytest.mark.unit

DS = date(2025, 3, 10)
METRICS = load_mission_metrics(DEFAULT_CONF_DIR / "metrics.yaml")
SEGMENTS = ["at_risk", "mass_prepaid", "young_digital"]
NAMES = ["engagement", "risk", "digital", "segment", "payment_type", "data_mb_30"]
SETTINGS = MissionSettings.load(DEFAULT_CONF_DIR / "missions.yaml")

STREAK = """\
    id: streak
    name: Streak
    version: 2
    kind: mission_template
    spec:
      category: engagement
      description: "Use your line {target} days in a row this {period} for {points} points."
      metric: usage_streak_days
      aggregation: streak
      thresholds:
        weekly: {easy: 3, medium: 5, hard: 7}
        monthly: {easy: 7, medium: 14, hard: 21}
      periods: [weekly, monthly]
      segments: all
      eligibility: "engagement >= 20 and risk < 70"
      reward:
        points: {easy: 50, medium: 100, hard: 200}
        offer_id: null
      badge: streak_keeper
      priority: 60
      cooldown_days: 7
      active_from: 2025-01-01
      active_to: null
"""
MORE_DATA = """\
    id: more_data
    name: More data
    version: 1
    kind: mission_template
    spec:
      category: revenue
      description: "Use {target} {unit} of data this {period}."
      metric: data_mb
      aggregation: sum
      thresholds: {easy: {relative: 1.1, min: 50}, medium: {relative: 1.2, min: 100}, hard: {relative: 1.5, min: 200}}
      periods: [weekly]
      segments: [mass_prepaid, young_digital]
      eligibility: "data_mb_30 > 0"
      reward:
        points: 80
        offer_id: nbo
      badge: data_explorer
      priority: 40
      cooldown_days: 3
      active_from: 2025-01-01
      active_to: 2025-12-31
"""


def write_templates(folder: Path, **texts: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text))
    return folder


def load(folder: Path):
    return load_templates(folder, METRICS, SEGMENTS, NAMES, ["streak_keeper", "data_explorer"])


def test_catalog_expands_templates_across_segments_levels_and_periods(tmp_path):
    templates = load(write_templates(tmp_path, streak=STREAK, more_data=MORE_DATA)).templates
    assert expansion_counts(templates) == [("more_data", 2, 3, 1, 6), ("streak", 3, 3, 2, 18)]
    rows = catalog_rows(templates, METRICS)
    assert len(rows) == 24 == len({r["mission_id"] for r in rows})
    streak = {r["mission_id"]: r for r in rows if r["template_id"] == "streak"}
    assert streak["streak.v2.at_risk.hard.monthly"]["target_value"] == 21.0
    assert streak["streak.v2.at_risk.hard.monthly"]["reward_points"] == 200
    dynamic = [r for r in rows if r["template_id"] == "more_data"]
    assert all(r["is_dynamic"] and r["target_value"] is None for r in dynamic)
    assert dynamic[0]["target_rule"] == "baseline x 1.1, at least 50"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ('eligibility: "engagement >= 20 and risk < 70"', 'eligibility: "engagement >= 20 and riskk < 70"'),
            "streak.yaml:15:38: unknown name 'riskk'",
        ),
        (
            ('eligibility: "engagement >= 20 and risk < 70"', 'eligibility: "max(engagement) > 3"'),
            "streak.yaml:15:17: function calls are not allowed",
        ),
        (("metric: usage_streak_days", "metric: streaks"), "streak.yaml:8:11: spec.metric: unknown metric 'streaks'"),
        (
            ("aggregation: streak", "aggregation: sum"),
            "streak.yaml:9:16: spec.aggregation: 'sum' does not match metric 'usage_streak_days', which is a streak",
        ),
        (("segments: all", "segments: [vip]"), "streak.yaml:14:13: spec.segments: unknown segment 'vip'"),
        (("badge: streak_keeper", "badge: unicorn"), "streak.yaml:19:10: spec.badge: unknown badge type 'unicorn'"),
        (
            ("hard: 7}", "hard: 9}"),
            "streak.yaml:11:40: spec.thresholds.weekly.hard: 9 days cannot be reached in a weekly period",
        ),
        (
            ("easy: 3, medium: 5", "easy: 6, medium: 5"),
            "streak.yaml:11:13: spec.thresholds.weekly: targets must grow from easy to hard",
        ),
        (("category: engagement", "category: fun"), "streak.yaml:6:13: spec.category: 'fun' is not one of onboarding"),
        (("{points} points", "{reward} points"), "streak.yaml:7:17: spec.description: unknown placeholder {reward}"),
        (("      priority: 60\n", ""), "streak.yaml:6:3: spec: 'priority' is a required property"),
        (("id: streak", "id: streek"), "streak.yaml:1:5: id: 'streek' does not match the file name 'streak'"),
        (("version: 2", "version: 0"), "streak.yaml:3:10: version: must be a positive integer, got 0"),
        (
            ("kind: mission_template", "kind: badge"),
            "streak.yaml:4:7: kind: a badge does not belong in this file (expected 'mission_template')",
        ),
    ],
)
def test_validation_errors_are_precise(tmp_path, edit, expected):
    write_templates(tmp_path, streak=STREAK.replace(*edit))
    with pytest.raises(TemplateError) as error:
        load(tmp_path)
    assert any(expected in problem for problem in error.value.problems), error.value.problems


def test_every_broken_template_is_reported_at_once(tmp_path):
    write_templates(
        tmp_path,
        streak=STREAK.replace("badge: streak_keeper", "badge: x"),
        more_data=MORE_DATA.replace("metric: data_mb", "metric: y"),
    )
    with pytest.raises(TemplateError) as error:
        load(tmp_path)
    assert len(error.value.problems) == 2
    assert {Path(p.split(":")[0]).name for p in error.value.problems} == {"streak.yaml", "more_data.yaml"}


def test_the_repository_templates_are_valid_and_rich_enough():
    templates = load_settings(load_config(env="test", environ={})).templates.templates
    assert len(templates) >= 25
    per_category = {c: sum(t.category == c for t in templates) for c in CATEGORIES}
    assert min(per_category.values()) >= 4, per_category
    counts = expansion_counts(templates)
    # expected catalog size read straight from the template files, not from the code under test
    segment_file = yaml.safe_load((DEFAULT_CONF_DIR / "segments.yaml").read_text())
    every_segment = [s["id"] for s in segment_file["segments"]]
    expected = 0
    for path in sorted((DEFAULT_CONF_DIR.parent / "templates" / "missions").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())["spec"]
        if data["segments"] == "all":
            data["segments"] = every_segment
        thresholds = data["thresholds"]
        levels = (
            len(next(iter(thresholds.values())))
            if set(thresholds) <= {"daily", "weekly", "monthly"}
            else len(thresholds)
        )
        expected += len(data["segments"]) * levels * len(data["periods"])
    assert sum(rows for *_, rows in counts) == expected >= 250
    assert len(catalog_rows(templates, METRICS)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[(0.3, 1), (7.2, 8), (10, 10), (11, 15), (47, 50), (51, 60), (201, 250), (1001, 1100)],
        # a baseline x multiplier landing on a step, carrying a double's error: 100 x 1.1, 450, 900, 3300
        *[(100 * 1.1, 110), ((900 / 28) * 7 * 2.0, 450), (1800 / 28 * 7 * 2.0, 900), (2800 / 28 * 30 * 1.1, 3300)],
    ],
)
def test_friendly_targets(spark, value, expected):
    assert spark.range(1).select(friendly(F.lit(float(value))).alias("v")).first().v == expected


def _longest_run(mask: int) -> int:
    return max((len(run) for run in bin(mask)[2:].split("0")), default=0)


def test_longest_runs_of_set_bits_match_a_plain_count(spark):
    rng = random.Random(7)
    full = (1 << DAY_BITS) - 1
    masks = [0, 1, 1 << (DAY_BITS - 1), full, full ^ (1 << 31), 0b1011101110111, 0b110 << 40 | 0b111]
    masks += [rng.getrandbits(DAY_BITS) for _ in range(40)]
    masks += [rng.getrandbits(DAY_BITS) & rng.getrandbits(DAY_BITS) for _ in range(40)]  # sparser, shorter runs
    df = spark.createDataFrame([(i, m, m >> 3) for i, m in enumerate(masks)], "i int, a long, b long")
    rows = with_longest_runs(df, {"run_a": "a", "run_b": "b"}).orderBy("i").collect()
    assert [(r.run_a, r.run_b) for r in rows] == [(_longest_run(m), _longest_run(m >> 3)) for m in masks]
    assert {(r.a, r.b) for r in rows} == {(m, m >> 3) for m in masks}
    assert set(rows[0].asDict()) == {"i", "a", "b", "run_a", "run_b"}  # no helper column left behind


def test_day_mask_sets_one_bit_per_active_day(spark):
    days = spark.createDataFrame(
        [("a", 0, 1.0), ("a", 2, 1.0), ("a", 2, 3.0), ("a", 5, 0.0), ("a", DAY_BITS - 1, 1.0), ("b", 4, 0.0)],
        "subscriber_id string, day int, used double",
    )
    rows = days.groupBy("subscriber_id").agg(day_mask(F.col("used") > 0, F.col("day")).alias("m")).collect()
    assert {r.subscriber_id: r.m for r in rows} == {"a": 1 | 1 << 2 | 1 << (DAY_BITS - 1), "b": 0}


@pytest.mark.parametrize("days", [0, DAY_BITS + 1, "28"])
def test_baseline_days_outside_what_a_day_mask_holds_are_refused(tmp_path, days):
    text = (DEFAULT_CONF_DIR / "missions.yaml").read_text().replace("baseline_days: 28", f"baseline_days: {days!r}")
    (tmp_path / "missions.yaml").write_text(text)
    with pytest.raises(
        ConfigError, match=rf"missions.yaml: baseline_days: must be a whole number of days from 1 to {DAY_BITS}"
    ):
        MissionSettings.load(tmp_path / "missions.yaml")


@pytest.mark.parametrize("periods", ["{monthly: 0}", "{monthly: '30'}", "{quarterly: 90}", "[30]"])
def test_period_lengths_must_be_known_periods_of_whole_days(tmp_path, periods):
    text = (DEFAULT_CONF_DIR / "missions.yaml").read_text()
    assert "period_days: {daily: 1, weekly: 7, monthly: 30}" in text
    text = text.replace("period_days: {daily: 1, weekly: 7, monthly: 30}", f"period_days: {periods}")
    (tmp_path / "missions.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"missions.yaml: period_days: must map periods \(daily, weekly, monthly\)"):
        MissionSettings.load(tmp_path / "missions.yaml")


def test_period_lengths_not_given_keep_their_default(tmp_path):
    text = (DEFAULT_CONF_DIR / "missions.yaml").read_text()
    (tmp_path / "missions.yaml").write_text(
        text.replace("period_days: {daily: 1, weekly: 7, monthly: 30}", "period_days: {monthly: 28}")
    )
    assert MissionSettings.load(tmp_path / "missions.yaml").period_days == {"daily": 1, "weekly": 7, "monthly": 28}


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("3", 3), ("-1", None), ("'2'", None), ("true", None)])
def test_settling_days_are_whole_days_from_zero(tmp_path, value, expected):
    text = (DEFAULT_CONF_DIR / "missions.yaml").read_text()
    assert "\nsettle_days: 2 " in text
    (tmp_path / "missions.yaml").write_text(text.replace("\nsettle_days: 2 ", f"\nsettle_days: {value} "))
    if expected is None:
        with pytest.raises(ConfigError, match=r"missions.yaml: settle_days: must be a whole number of days >= 0"):
            MissionSettings.load(tmp_path / "missions.yaml")
    else:
        settings = MissionSettings.load(tmp_path / "missions.yaml")
        assert (settings.settle_days, settings.progress_days) == (expected, 31 + expected)


def test_holdout_share_matches_the_config(spark):
    ids = spark.range(20000).select(F.sha2(F.col("id").cast("string"), 256).alias("subscriber_id"))
    share = with_holdout(ids, SETTINGS).agg(F.avg(F.col("holdout").cast("double"))).first()[0]
    assert share == pytest.approx(SETTINGS.holdout_share, abs=0.01)
    # deterministic across sessions and tools: the same rule computed in plain Python
    sample = [r.subscriber_id for r in ids.limit(300).collect()]
    got = {r.subscriber_id: r.holdout for r in with_holdout(ids.limit(300), SETTINGS).collect()}
    limit = int(SETTINGS.holdout_share * 16**8)
    for sid in sample:
        bucket = int(hashlib.sha256(f"{sid}|{SETTINGS.holdout_salt}".encode()).hexdigest()[:8], 16)
        assert got[sid] == (bucket < limit), sid


def subjects(spark, rows):
    """(subscriber, segment, engagement, risk, data_mb_30, streak baseline, data baseline per day, nbo offer)."""
    return (
        spark.createDataFrame(
            [(*r, False) for r in rows],
            "subscriber_id string, segment string, engagement double, risk double, data_mb_30 double, "
            "_baseline_usage_streak_days double, _baseline_data_mb double, nbo_offer_id string, holdout boolean",
        )
        .withColumn("digital", F.lit(50.0))
        .withColumn("payment_type", F.lit("PREPAID"))
    )


def test_levels_targets_and_reasons_follow_the_baseline(spark, tmp_path):
    templates = load(write_templates(tmp_path, streak=STREAK, more_data=MORE_DATA))
    df = subjects(
        spark,
        [
            (
                "a",
                "mass_prepaid",
                80.0,
                10.0,
                900.0,
                4.0,
                100.0,
                "OFFER9",
            ),  # usual streak 4 -> medium (5); data 700/week
            ("b", "at_risk", 15.0, 80.0, 0.0, 0.0, 0.0, None),  # not eligible for either
            ("c", "young_digital", 50.0, 60.0, 100.0, 0.0, 2.0, None),  # streak easy; data tiny -> minimum applies
        ],
    )
    got = {
        (r.subscriber_id, r.template_id): r
        for r in candidates(df, templates.templates, METRICS, SETTINGS, DS).collect()
    }
    assert set(got) == {("a", "streak"), ("a", "more_data"), ("c", "streak"), ("c", "more_data")}
    streak_a = got[("a", "streak")]
    expected_target = {"weekly": 5.0, "monthly": 7.0}[streak_a.period]  # usual 4: the first level above it
    assert (streak_a.level, streak_a.target_value, streak_a.is_dynamic) == (
        {"weekly": "medium", "monthly": "easy"}[streak_a.period],
        expected_target,
        False,
    )
    assert streak_a.mission_id == f"streak.v2.mass_prepaid.{streak_a.level}.{streak_a.period}"
    assert streak_a.reason.startswith(
        "eligibility: engagement >= 20 and risk < 70 [engagement=80.0, risk=10.0]; segment=mass_prepaid"
    )
    data_a = got[("a", "more_data")]
    # engagement 80 and risk 10: hard (x1.5) over 100 MB/day x 7 days = 1050 -> friendly 1100
    assert (data_a.level, data_a.target_value, data_a.offer_id, data_a.is_dynamic) == ("hard", 1100.0, "OFFER9", True)
    assert data_a.description == "Use 1100 MB of data this week."
    data_c = got[("c", "more_data")]
    # risk 60 -> easy: 2 MB/day x 7 x 1.1 = 15.4, below the minimum of 50
    assert (data_c.level, data_c.target_value, data_c.reward_points) == ("easy", 50.0, 80)


def test_a_new_template_is_only_a_yaml_file(tmp_path):
    folder = tmp_path / "missions"
    shutil.copytree(DEFAULT_CONF_DIR.parent / "templates" / "missions", folder)
    before = len(templates_in(load_config(env="test", environ={}), folder).templates)
    write_templates(
        folder,
        weekend_data=STREAK.replace("id: streak", "id: weekend_data").replace("segments: all", "segments: [at_risk]"),
    )
    after = templates_in(load_config(env="test", environ={}), folder).templates
    assert len(after) == before + 1
    new = next(t for t in after if t.id == "weekend_data")
    assert [r["mission_id"] for r in catalog_rows([new], METRICS)][:2] == [
        "weekend_data.v2.at_risk.easy.weekly",
        "weekend_data.v2.at_risk.medium.weekly",
    ]


def test_cli_validate_lists_every_problem_and_fails(tmp_path, capsys):
    from jobs.cli import main

    write_templates(
        tmp_path,
        streak=STREAK.replace("badge: streak_keeper", "badge: x"),
        more_data=MORE_DATA.replace("metric: data_mb", "metric: y"),
    )
    assert main(["--env", "test", "templates", "validate", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert (
        "2 definition problem(s):" in err
        and "streak.yaml:19:10: spec.badge: unknown badge type 'x'" in err
        and "more_data.yaml:8:11: spec.metric: unknown metric 'y'" in err
    )


def test_cli_expand_prints_the_product_per_template(tmp_path, capsys):
    from jobs.cli import main

    write_templates(tmp_path, streak=STREAK, more_data=MORE_DATA)
    assert main(["--env", "test", "templates", "expand", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "streak                           6 segments x 3 thresholds x 2 periods = 36" in out
    assert "total: 42 catalog missions from 2 templates" in out


def test_earlier_assignments_are_read_back_as_far_as_the_longest_period_and_cooldown():
    templates = load_settings(load_config(env="test", environ={})).templates.templates
    longest_period = max(SETTINGS.period_days.values())
    assert SETTINGS.lookback_days(templates) == longest_period + max(t.cooldown_days for t in templates)
    long_cooldown = [dataclasses.replace(templates[0], cooldown_days=90)]
    # a monthly mission assigned 100 days ago still blocks its template until day 30 + 90 after it
    assert SETTINGS.lookback_days(long_cooldown) == longest_period + 90 >= 100
    assert SETTINGS.lookback_days([]) == longest_period


def test_days_targets_are_checked_against_the_configured_period_lengths(tmp_path):
    """A monthly period of 28 days (conf/missions.yaml period_days) cannot hold a 30-day target."""
    root = DEFAULT_CONF_DIR.parent
    shutil.copytree(DEFAULT_CONF_DIR, tmp_path / "conf")
    shutil.copytree(root / "templates", tmp_path / "templates")
    missions = tmp_path / "conf" / "missions.yaml"
    text = missions.read_text()
    assert "monthly: 30}" in text
    missions.write_text(text.replace("monthly: 30}", "monthly: 28}"))
    with pytest.raises(ValueError) as caught:
        load_settings(load_config(conf_dir=tmp_path / "conf", env="test", environ={}))
    assert "anniversary_active_month.yaml" in str(caught.value)
    assert "30 days cannot be reached in a monthly period" in str(caught.value)
