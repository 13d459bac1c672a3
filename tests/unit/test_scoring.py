"""Known-answer tests of daily metrics, features, normalization and score breakdowns."""

from __future__ import annotations

import textwrap
from datetime import date, timedelta

import pytest
from pyspark.sql import functions as F

from jobs.config import DEFAULT_CONF_DIR, ConfigError
from jobs.metrics import MetricRegistry, daily_activity
from jobs.scoring import (
    ScoringConfig,
    compute_features,
    compute_scores,
    degraded_features,
    percentile_cuts,
    unconfigured_sources,
    window_aggregates,
)
from jobs.scoring.config import Component
from jobs.scoring.scores import with_cut_ranks
from jobs.segments import SegmentRules, assign_segments

pytestmark = pytest.mark.unit

DS = date(2025, 3, 10)
REGISTRY = MetricRegistry.load(DEFAULT_CONF_DIR / "metrics.yaml")


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_daily_activity_counts_every_metric_in_one_row_per_subscriber_day(spark):
    events = spark.createDataFrame(
        [
            ("s1", "cdr", "voice_out", "network", 2.5, None, {"roaming": "Y"}),
            ("s1", "cdr", "voice_in", "network", 1.0, None, {"roaming": "N"}),
            ("s1", "cdr", "data_session", "network", 300.0, None, {}),
            ("s1", "billing", "recharge", "app", 1.0, 10.0, {}),
            ("s1", "billing", "payment", "web", 3.0, 40.0, {}),  # paid 3 days late
            ("s1", "app", "login", "app", 1.0, None, {}),
            ("s2", "care", "complaint", "call_centre", 1.0, None, {}),
        ],
        "subscriber_id string, event_type string, event_subtype string, channel string, quantity double, amount double, attributes map<string,string>",
    ).select("*", F.lit("x").alias("source"), F.lit("u").alias("unit"), F.lit(DS).alias("event_date"))
    rows = {r.subscriber_id: r.asDict() for r in daily_activity(events, REGISTRY).collect()}
    s1, s2 = rows["s1"], rows["s2"]
    assert (s1["voice_minutes"], s1["voice_calls_out"], s1["data_mb"], s1["data_sessions"], s1["roaming_events"]) == (
        3.5,
        1.0,
        300.0,
        1.0,
        1.0,
    )
    assert (
        s1["recharge_amount"],
        s1["payment_amount"],
        s1["late_payments"],
        s1["on_time_payments"],
        s1["digital_payments"],
    ) == (10.0, 40.0, 1.0, 0.0, 2.0)
    assert (s1["app_logins"], s1["active"], s1["used_voice"], s1["used_digital"], s1["activity_date"]) == (
        1.0,
        1.0,
        1.0,
        1.0,
        DS,
    )
    assert (s2["complaints"], s2["call_centre_contacts"], s2["active"], s2["voice_minutes"]) == (1.0, 1.0, 0.0, 0.0)


@pytest.fixture
def small_config(tmp_path):
    text = """
        version: 3
        features:
          active_7: {metric: active, window: 7, agg: days}
          since_active: {metric: active, window: 30, agg: days_since}
          data_7: {metric: data_mb, window: 7, agg: sum}
          data_avg_7: {metric: data_mb, window: 7, agg: daily_avg}
          rate_7: {metric: active, window: 7, agg: day_rate}
          recharge_weeks: {metric: recharge_count, window: 28, agg: weeks}
          arpu: {metric: arpu, window: 30, agg: last}
          tenure_days: {profile: tenure_days}
          churn: {ml: churn_probability}
          services: {count_positive: [data_7, active_7]}
          data_per_active_day: {expr: "data_7 / active_7"}
        scores:
          engagement:
            components:
              - {name: active, feature: active_7, normalize: {method: minmax, min: 0, max: 7}, weight: 3}
              - {name: recency, feature: since_active, normalize: {method: minmax, min: 0, max: 10}, direction: lower, weight: 1}
          revenue:
            components:
              - {name: arpu, feature: arpu, normalize: {method: minmax, min: 0, max: 50}, weight: 1, missing: exclude}
              - {name: data, feature: data_7, normalize: {method: minmax, min: 0, max: 100}, weight: 1}
          loyalty:
            components:
              - {name: tenure, feature: tenure_days, normalize: {method: minmax, min: 0, max: 100}, weight: 1}
          risk:
            components:
              - {name: ml, feature: churn, normalize: {method: minmax, min: 0, max: 1}, weight: 1, missing: neutral}
          digital:
            components:
              - {name: volume, feature: data_7, normalize: {method: percentile, by: all}, weight: 1}
    """
    return ScoringConfig.load(write(tmp_path, "scoring.yaml", text), REGISTRY)


def activity_rows(spark, rows):
    """(subscriber, days before DS, active, data_mb, recharge_count, arpu)."""
    data = [(s, DS - timedelta(days=d), a, m, r, arpu) for s, d, a, m, r, arpu in rows]
    return spark.createDataFrame(
        data,
        "subscriber_id string, activity_date date, active double, data_mb double, recharge_count double, arpu double",
    )


def subscribers(spark, rows):
    return spark.createDataFrame(
        [(s, DS - timedelta(days=t), "PREPAID", "P1", None) for s, t in rows],
        "subscriber_id string, activation_date date, payment_type string, plan_code string, plan_code_90d_ago string",
    )


def test_window_features_known_answers(spark, small_config):
    activity = activity_rows(
        spark,
        [
            ("a", 0, 1.0, 10.0, 0.0, None),
            ("a", 2, 1.0, 20.0, 1.0, None),
            ("a", 9, 1.0, 5.0, 1.0, 30.0),  # outside the 7-day windows
            ("a", 20, 0.0, 0.0, 1.0, 45.0),
            ("b", 3, 0.0, 0.0, 0.0, None),
        ],
    )
    base = subscribers(spark, [("a", 1000), ("b", 1000), ("c", 4)])  # c: joined 4 days ago, no activity
    features = compute_features(
        base, window_aggregates(activity, small_config, DS), None, small_config, DS, history_days=30
    )
    got = {r.subscriber_id: r.asDict() for r in features.collect()}
    a, b, c = got["a"], got["b"], got["c"]
    assert (a["active_7"], a["since_active"], a["data_7"], a["recharge_weeks"], a["arpu"]) == (
        2.0,
        0.0,
        30.0,
        3.0,
        30.0,
    )
    assert (a["data_avg_7"], a["rate_7"], a["services"], a["data_per_active_day"]) == (30.0 / 7, 2.0 / 7, 2.0, 15.0)
    assert (b["active_7"], b["since_active"], b["data_7"], b["arpu"], b["data_per_active_day"]) == (
        0.0,
        30.0,
        0.0,
        None,
        None,
    )
    # a new joiner is observed for 5 days only: rates and "days since" use that, not the window
    assert (c["tenure_days"], c["since_active"], c["rate_7"], c["churn"]) == (4.0, 5.0, 0.0, None)


def test_scores_breakdown_adds_up_and_applies_direction_and_missing_policies(spark, small_config):
    activity = activity_rows(
        spark, [("a", 0, 1.0, 50.0, 0.0, 25.0), ("a", 1, 1.0, 0.0, 0.0, None), ("b", 5, 1.0, 100.0, 0.0, None)]
    )
    base = subscribers(spark, [("a", 50), ("b", 200)])
    features = compute_features(
        base, window_aggregates(activity, small_config, DS), None, small_config, DS, history_days=30
    )
    scored = {
        r.subscriber_id: r
        for r in compute_scores(
            features, percentile_cuts(features, small_config), small_config, DS, set(), []
        ).collect()
    }
    a, b = scored["a"], scored["b"]
    # engagement a: active 2/7 (weight 3/4) + recency 0 days -> 1.0 (weight 1/4)
    assert a.engagement == pytest.approx(round(100 * (0.75 * 2 / 7 + 0.25 * 1.0), 2))
    # b: 1 active day, 5 days ago -> 1 - 0.5
    assert b.engagement == pytest.approx(round(100 * (0.75 * 1 / 7 + 0.25 * 0.5), 2))
    # revenue a: arpu 25/50 and data 50/100, equal weights; b has no arpu: excluded, data alone counts
    assert (a.revenue, b.revenue) == (50.0, 100.0)
    assert b.revenue_breakdown["arpu"].asDict() == {
        "raw": None,
        "normalized": 0.0,
        "weight": 0.0,
        "contribution": 0.0,
        "missing": True,
        "degraded": False,
    }
    assert b.revenue_breakdown["data"].weight == 1.0
    # loyalty: tenure capped at 100 days; risk: no ML prediction -> neutral 0.5
    assert (a.loyalty, b.loyalty, a.risk) == (50.0, 100.0, 50.0)
    assert a.risk_breakdown["ml"].missing is True
    for row in (a, b):
        for score in ("engagement", "revenue", "loyalty", "risk", "digital"):
            parts = row[f"{score}_breakdown"]
            assert sum(p.contribution for p in parts.values()) == pytest.approx(row[score], abs=0.01)
            assert 0 <= row[score] <= 100
    assert a.config_version.startswith("3+") and a.score_date == DS


def test_window_sums_are_kept_at_six_decimals(spark, small_config):
    """0.1 + 0.2 MB over the window is 0.3 (not 0.30000000000000004): equal usage ranks equal."""
    activity = activity_rows(spark, [("a", 0, 1.0, 0.1, 0.0, None), ("a", 1, 1.0, 0.2, 0.0, None)])
    assert window_aggregates(activity, small_config, DS).first().data_7 == 0.3


def test_percentile_normalization_is_a_midrank(spark, small_config):
    rows = [(f"s{i:03d}", 0, 1.0, float(i), 0.0, None) for i in range(1, 101)]
    activity = activity_rows(spark, rows)
    base = subscribers(spark, [(f"s{i:03d}", 100) for i in range(1, 101)])
    features = compute_features(
        base, window_aggregates(activity, small_config, DS), None, small_config, DS, history_days=30
    )
    scored = {
        r.subscriber_id: r.digital
        for r in compute_scores(
            features, percentile_cuts(features, small_config), small_config, DS, set(), []
        ).collect()
    }
    assert scored["s050"] == pytest.approx(50.0, abs=1.5)
    assert scored["s010"] == pytest.approx(10.0, abs=1.5)
    assert scored["s100"] > 98 and scored["s001"] < 2
    assert sorted(scored, key=scored.get) == sorted(scored)  # monotone in the value


def test_ml_predictions_blend_into_risk(spark, small_config):
    activity = activity_rows(spark, [("a", 0, 1.0, 1.0, 0.0, None)])
    predictions = spark.createDataFrame(
        [("a", 0.8, "OFFER1", 0.6, "m1")],
        "subscriber_id string, churn_probability double, nbo_offer_id string, nbo_score double, model_version string",
    )
    features = compute_features(
        subscribers(spark, [("a", 10)]),
        window_aggregates(activity, small_config, DS),
        predictions,
        small_config,
        DS,
        30,
    )
    row = compute_scores(features, percentile_cuts(features, small_config), small_config, DS, set(), []).first()
    assert (row.risk, row.nbo_offer_id, row.model_version) == (80.0, "OFFER1", "m1")


def test_a_missing_source_flags_the_components_that_depend_on_it(small_config):
    assert degraded_features(small_config, REGISTRY, {"cdr"}) == {
        "active_7",
        "since_active",
        "data_7",
        "data_avg_7",
        "rate_7",
        "services",
        "data_per_active_day",
    }
    assert degraded_features(small_config, REGISTRY, {"dwh_monthly_kpis"}) == {"arpu"}
    assert degraded_features(small_config, REGISTRY, set()) == set()


def test_the_repository_scoring_config_loads():
    cfg = ScoringConfig.load(DEFAULT_CONF_DIR / "scoring.yaml", REGISTRY)
    assert set(cfg.scores) == {"engagement", "revenue", "loyalty", "risk", "digital"}
    assert all(len(components) >= 3 for components in cfg.scores.values())


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (("active_7: {metric: active", "active_7: {metric: activ"), "features.active_7.metric"),
        (("agg: days}", "agg: median}"), "features.active_7.agg"),
        (("feature: active_7,", "feature: nope,"), "scores.engagement.components[0].feature"),
        (("method: minmax, min: 0, max: 7", "method: zscore"), "scores.engagement.components[0].normalize.method"),
        (("weight: 3", "weight: -1"), "scores.engagement.components[0].weight"),
        (('expr: "data_7 / active_7"', 'expr: "data_7 / max(active_7)"'), "features.data_per_active_day.expr"),
    ],
)
def test_scoring_config_errors_name_the_key(tmp_path, small_config, edit, key):
    path = tmp_path / "scoring.yaml"
    path.write_text(path.read_text().replace(*edit, 1))
    with pytest.raises(ConfigError) as error:
        ScoringConfig.load(path, REGISTRY)
    assert error.value.key == key and error.value.file == str(path)


def test_segments_first_matching_rule_wins(spark, tmp_path):
    rules = SegmentRules.load(
        write(
            tmp_path,
            "segments.yaml",
            """
            segments:
              - {id: at_risk, name: At risk, version: 2, kind: segment, spec: {rule: "risk >= 70"}}
              - id: postpaid_high
                name: Postpaid, high revenue
                version: 1
                kind: segment
                spec: {rule: "payment_type == 'POSTPAID' and revenue >= 60"}
              - {id: everyone_else, name: Everyone else, version: 1, kind: segment, spec: {default: true}}
            """,
        ),
        ["risk", "revenue"],
    )
    df = spark.createDataFrame(
        [
            ("a", 80.0, 90.0, "POSTPAID"),
            ("b", 10.0, 90.0, "POSTPAID"),
            ("c", 10.0, 10.0, "PREPAID"),
            ("d", None, None, None),
        ],
        "subscriber_id string, risk double, revenue double, payment_type string",
    )
    assert rules.version == "2"  # the highest version among the segments
    got = {r.subscriber_id: (r.segment, r.matched_rule) for r in assign_segments(df, rules, DS).collect()}
    assert got == {
        "a": ("at_risk", "risk >= 70"),
        "b": ("postpaid_high", "payment_type == 'POSTPAID' and revenue >= 60"),
        "c": ("everyone_else", "default"),
        "d": ("everyone_else", "default"),
    }


def test_segment_rule_errors_point_at_the_rule(tmp_path):
    path = write(
        tmp_path,
        "segments.yaml",
        "segments:\n"
        '  - {id: a, name: A, version: 1, kind: segment, spec: {rule: "riskk > 3"}}\n'
        "  - {id: b, name: B, version: 1, kind: segment, spec: {default: true}}\n"
        "  - {id: c, name: C, version: 1, kind: segment, spec: {default: true}}\n",
    )
    with pytest.raises(ConfigError) as error:
        SegmentRules.load(path, ["risk"])
    # `riskk` starts at column 63 of line 2, the second `default: true` at column 65 of line 4
    first_lines = [p.splitlines()[0] for p in error.value.problems]
    assert len(first_lines) == 2
    assert first_lines[0].startswith(f"{path}:2:63: unknown name 'riskk'")
    assert first_lines[1] == f"{path}:4:65: spec.default: 'b' is already the default segment"


def test_the_repository_segments_config_loads():
    cfg = ScoringConfig.load(DEFAULT_CONF_DIR / "scoring.yaml", REGISTRY)
    rules = SegmentRules.load(DEFAULT_CONF_DIR / "segments.yaml", [*cfg.scores, *cfg.feature_names])
    assert len(rules.names) >= 5


def test_sources_the_operator_does_not_have_are_unavailable():
    configured = {"cdr", "billing", "crm_subscribers"}
    assert unconfigured_sources(REGISTRY, configured) == {
        "app",
        "crm_interactions",
        "dwh_monthly_kpis",
        "network",
        "xiva",
    }
    everything = {"cdr", "billing", "crm_subscribers", "app", "crm_interactions", "dwh_monthly_kpis", "network", "xiva"}
    assert unconfigured_sources(REGISTRY, everything) == set()


def test_unknown_tenure_is_not_a_new_joiner(spark, tmp_path):
    from jobs.scoring.features import _profile_feature

    tenure = F.datediff(F.lit(DS), F.col("activation_date"))
    df = spark.createDataFrame(
        [("known", date(2024, 12, 10)), ("future", date(2025, 4, 1)), ("unknown", None)],
        "subscriber_id string, activation_date date",
    ).select("subscriber_id", _profile_feature("tenure_days", tenure).alias("tenure_days"))
    assert {r.subscriber_id: r.tenure_days for r in df.collect()} == {"known": 90.0, "future": 0.0, "unknown": None}
    rules = SegmentRules.load(
        write(
            tmp_path,
            "segments.yaml",
            "segments:\n"
            '  - {id: new_joiners, name: New joiners, version: 1, kind: segment, spec: {rule: "tenure_days < 90"}}\n'
            "  - {id: others, name: Others, version: 1, kind: segment, spec: {default: true}}\n",
        ),
        ["tenure_days"],
    )
    got = {r.subscriber_id: r.segment for r in assign_segments(df, rules, DS).collect()}
    assert got == {"known": "others", "future": "new_joiners", "unknown": "others"}


def test_cut_ranks_count_the_cut_points_below_and_at_or_below_a_value(spark):
    component = Component(name="volume", feature="v", weight=1.0, method="percentile")
    cuts = [1.0, 2.0, 2.0, 2.0, 5.0] + [9.0] * 94  # 99 sorted cut points, with ties
    values = [None, -1.0, 1.0, 1.5, 2.0, 3.0, 5.0, 9.0, 10.0]
    df = spark.createDataFrame(
        [(i, v, cuts) for i, v in enumerate(values)], "i int, v double, _q_digital_volume array<double>"
    )
    df = df.unionByName(spark.createDataFrame([(99, 4.0, None)], df.schema))  # a group without cut points
    ranked = {
        r.i: (r._below_digital_volume, r._at_or_below_digital_volume)
        for r in with_cut_ranks(df, [("digital", component)]).collect()
    }
    expected = {
        i: (sum(c < v for c in cuts), sum(c <= v for c in cuts)) if v is not None else (0, 0)
        for i, v in enumerate(values)
    }
    assert ranked == {**expected, 99: (0, 0)}
    assert ranked[4] == (1, 4) and ranked[8] == (99, 99)  # ties at 2.0; above every cut point


def test_percentile_by_a_nullable_profile_column_ranks_the_null_group_too(spark, tmp_path):
    """`by: region` (a nullable CRM column): subscribers without a region are ranked among
    themselves, like any other group, not scored as if their value were missing."""
    cfg = ScoringConfig.load(
        write(
            tmp_path,
            "scoring.yaml",
            """
            version: 1
            features:
              data_7: {metric: data_mb, window: 7, agg: sum}
            scores:
              engagement:
                components:
                  - {name: volume, feature: data_7, normalize: {method: percentile, by: region}, weight: 1}
              revenue: {components: [{name: v, feature: data_7, normalize: {method: minmax, min: 0, max: 1}, weight: 1}]}
              loyalty: {components: [{name: v, feature: data_7, normalize: {method: minmax, min: 0, max: 1}, weight: 1}]}
              risk: {components: [{name: v, feature: data_7, normalize: {method: minmax, min: 0, max: 1}, weight: 1}]}
              digital: {components: [{name: v, feature: data_7, normalize: {method: minmax, min: 0, max: 1}, weight: 1}]}
            """,
        ),
        REGISTRY,
    )
    features = spark.createDataFrame(
        [("n1", "NORTH", 10.0), ("n2", "NORTH", 20.0), ("u1", None, 10.0), ("u2", None, 20.0)],
        "subscriber_id string, region string, data_7 double",
    ).select(
        "*",
        *[F.lit(None).cast("double").alias(c) for c in ("churn_probability", "nbo_score")],
        *[F.lit(None).cast("string").alias(c) for c in ("nbo_offer_id", "model_version")],
    )
    scored = {
        r.subscriber_id: r
        for r in compute_scores(features, percentile_cuts(features, cfg), cfg, DS, set(), []).collect()
    }
    # the same values in a group of their own give the same ranks, whether the group is named or null
    assert (scored["u1"].engagement, scored["u2"].engagement) == (scored["n1"].engagement, scored["n2"].engagement)
    assert scored["u2"].engagement > scored["u1"].engagement > 0
    assert scored["u2"].engagement_breakdown["volume"].missing is False
