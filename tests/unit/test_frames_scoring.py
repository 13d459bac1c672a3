"""Whole-frame known answers for scoring: windowed features and the five scores with breakdowns."""

from __future__ import annotations

import hashlib
import textwrap
from datetime import date, timedelta

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.config import DEFAULT_CONF_DIR
from jobs.metrics import MetricRegistry
from jobs.scoring import BREAKDOWN_TYPE, ScoringConfig, compute_features, compute_scores, window_aggregates

pytestmark = pytest.mark.unit

DS = date(2025, 3, 10)
REGISTRY = MetricRegistry.load(DEFAULT_CONF_DIR / "metrics.yaml")

SCORING = """
    version: 3
    features:
      active_7: {metric: active, window: 7, agg: days}
      since_active: {metric: active, window: 30, agg: days_since}
      data_7: {metric: data_mb, window: 7, agg: sum}
      data_max_7: {metric: data_mb, window: 7, agg: max}
      data_avg_7: {metric: data_mb, window: 7, agg: daily_avg}
      rate_7: {metric: active, window: 7, agg: day_rate}
      recharge_weeks: {metric: recharge_count, window: 28, agg: weeks}
      arpu: {metric: arpu, window: 30, agg: last}
      tenure_days: {profile: tenure_days}
      postpaid: {profile: is_postpaid}
      plan_changed: {profile: plan_changed_90d}
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
          - {name: volume, feature: data_7, transform: sqrt, normalize: {method: minmax, min: 0, max: 10}, weight: 1}
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> ScoringConfig:
    path = tmp_path_factory.mktemp("scoring") / "scoring.yaml"
    path.write_text(textwrap.dedent(SCORING))
    return ScoringConfig.load(path, REGISTRY)


def day(days_before: int) -> date:
    return DS - timedelta(days=days_before)


def test_features_whole_frame(spark, config):
    activity = spark.createDataFrame(
        [
            ("a", day(0), 1.0, 10.0, 0.0, None),
            ("a", day(2), 1.0, 20.0, 1.0, None),
            ("a", day(6), 0.0, 5.0, 0.0, None),  # last day inside the 7-day windows, not active
            ("a", day(7), 1.0, 40.0, 1.0, 30.0),  # first day outside the 7-day windows
            ("a", day(20), 0.0, 0.0, 1.0, 45.0),
            ("a", day(-1), 1.0, 99.0, 1.0, 99.0),  # after the run date: in no window
            ("b", day(3), 0.0, 0.0, 0.0, None),
        ],
        "subscriber_id string, activity_date date, active double, data_mb double, recharge_count double, arpu double",
    )
    subscribers = spark.createDataFrame(
        [
            ("a", day(1000), "POSTPAID", "P2", "P1"),
            ("b", day(1000), "PREPAID", "P1", None),
            ("c", day(4), "PREPAID", "P1", "P1"),  # joined 4 days ago, no activity yet
            ("d", None, None, None, None),  # activation date unknown
        ],
        "subscriber_id string, activation_date date, payment_type string, plan_code string, plan_code_90d_ago string",
    )
    predictions = spark.createDataFrame(
        [("a", 0.25, "OFF1", 0.7, 0.3, "m1")],
        "subscriber_id string, churn_probability double, nbo_offer_id string, nbo_score double, "
        "risk_score double, model_version string",
    )
    features = compute_features(
        subscribers, window_aggregates(activity, config, DS), predictions, config, DS, history_days=30
    )
    expected = spark.createDataFrame(
        [
            # a: 7-day window = offsets 0..6 -> active on 0 and 2, data 10+20+5; observed 7 days
            # recharge weeks: offsets 2, 7, 20 -> weeks 0, 1, 2; arpu: latest non-null in 30 days (offset 7)
            ("a", day(1000), "POSTPAID", "P2", "P1", 0.25, "OFF1", 0.7, 0.3, "m1",
             2.0, 0.0, 35.0, 20.0, 35.0 / 7, 2.0 / 7, 3.0, 30.0, 1000.0, 1.0, 1.0, 0.25, 2.0, 35.0 / 2),
            # b: never active in 30 days observed -> since_active 30; 0/0 per active day -> null
            ("b", day(1000), "PREPAID", "P1", None, None, None, None, None, None,
             0.0, 30.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, 1000.0, 0.0, 0.0, None, 0.0, None),
            # c: tenure 4 -> observed 5 days (tenure + 1) for the 7- and 30-day windows
            ("c", day(4), "PREPAID", "P1", "P1", None, None, None, None, None,
             0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, 4.0, 0.0, 0.0, None, 0.0, None),
            # d: unknown tenure stays null and the windows are observed whole
            ("d", None, None, None, None, None, None, None, None, None,
             0.0, 30.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, None, 0.0, 0.0, None, 0.0, None),
        ],
        "subscriber_id string, activation_date date, payment_type string, plan_code string, "
        "plan_code_90d_ago string, churn_probability double, nbo_offer_id string, nbo_score double, "
        "risk_score double, model_version string, active_7 double, since_active double, data_7 double, "
        "data_max_7 double, data_avg_7 double, rate_7 double, recharge_weeks double, arpu double, "
        "tenure_days double, postpaid double, plan_changed double, churn double, services double, "
        "data_per_active_day double",
    )  # fmt: skip
    assert_df_equality(features, expected, ignore_row_order=True, ignore_nullable=True)


def part(raw, normalized, weight, contribution, missing=False, degraded=False):
    return (raw, normalized, weight, contribution, missing, degraded)


def test_scores_whole_frame_with_breakdowns(spark, config):
    features = spark.createDataFrame(
        [
            ("a", 2.0, 0.0, 64.0, 25.0, 50.0, 0.2, 0.2, "OFF1", 0.9, "m1"),
            # b: beyond every max (clamped to 1), no arpu (excluded), no tenure (zero), no churn (neutral)
            ("b", 0.0, 15.0, 150.0, None, None, None, None, None, None, None),
            # c: exactly on every max; data 0 -> sqrt 0
            ("c", 7.0, 10.0, 0.0, 50.0, 100.0, 1.0, 1.0, "OFF2", 0.1, "m1"),
        ],
        "subscriber_id string, active_7 double, since_active double, data_7 double, arpu double, "
        "tenure_days double, churn double, churn_probability double, nbo_offer_id string, nbo_score double, "
        "model_version string",
    )
    scores = compute_scores(features, {}, config, DS, {"churn"}, ["ml_predictions", "app"])
    version = "3+" + hashlib.sha256(textwrap.dedent(SCORING).encode()).hexdigest()[:8]
    expected_rows = [
        (
            "a",
            # active 2/7 = 0.285714 at weight 3/4 -> 21.4286; recency 0 days -> 1 - 0 = 1 at 1/4 -> 25
            46.43,
            {"active": part(2.0, 0.2857, 0.75, 21.4286), "recency": part(0.0, 1.0, 0.25, 25.0)},
            57.0,  # arpu 25/50 and data 64/100, half each: 25 + 32
            {"arpu": part(25.0, 0.5, 0.5, 25.0), "data": part(64.0, 0.64, 0.5, 32.0)},
            50.0,
            {"tenure": part(50.0, 0.5, 1.0, 50.0)},
            20.0,
            {"ml": part(0.2, 0.2, 1.0, 20.0, degraded=True)},
            80.0,  # sqrt(64) / 10
            {"volume": part(64.0, 0.8, 1.0, 80.0)},
            0.2,
            "OFF1",
            0.9,
            "m1",
        ),
        (
            "b",
            0.0,  # 15 days since active is past 10 -> 1 -> lower is better -> 0
            {"active": part(0.0, 0.0, 0.75, 0.0), "recency": part(15.0, 0.0, 0.25, 0.0)},
            100.0,  # arpu excluded: data takes the whole weight
            {"arpu": part(None, 0.0, 0.0, 0.0, missing=True), "data": part(150.0, 1.0, 1.0, 100.0)},
            0.0,
            {"tenure": part(None, 0.0, 1.0, 0.0, missing=True)},
            50.0,
            {"ml": part(None, 0.5, 1.0, 50.0, missing=True, degraded=True)},
            100.0,  # sqrt(150) = 12.2 > 10 -> 1
            {"volume": part(150.0, 1.0, 1.0, 100.0)},
            None,
            None,
            None,
            None,
        ),
        (
            "c",
            75.0,
            {"active": part(7.0, 1.0, 0.75, 75.0), "recency": part(10.0, 0.0, 0.25, 0.0)},
            50.0,
            {"arpu": part(50.0, 1.0, 0.5, 50.0), "data": part(0.0, 0.0, 0.5, 0.0)},
            100.0,
            {"tenure": part(100.0, 1.0, 1.0, 100.0)},
            100.0,
            {"ml": part(1.0, 1.0, 1.0, 100.0, degraded=True)},
            0.0,
            {"volume": part(0.0, 0.0, 1.0, 0.0)},
            1.0,
            "OFF2",
            0.1,
            "m1",
        ),
    ]
    fields = [T.StructField("subscriber_id", T.StringType())]
    for score in ("engagement", "revenue", "loyalty", "risk", "digital"):
        fields += [T.StructField(score, T.DoubleType()), T.StructField(f"{score}_breakdown", BREAKDOWN_TYPE)]
    fields += [
        T.StructField("churn_probability", T.DoubleType()),
        T.StructField("nbo_offer_id", T.StringType()),
        T.StructField("nbo_score", T.DoubleType()),
        T.StructField("model_version", T.StringType()),
        T.StructField("degraded_sources", T.ArrayType(T.StringType())),  # sorted
        T.StructField("config_version", T.StringType()),
        T.StructField("score_date", T.DateType()),
    ]
    expected = spark.createDataFrame(
        [(*row, ["app", "ml_predictions"], version, DS) for row in expected_rows], T.StructType(fields)
    )
    # ignore_nullable does not reach inside maps: widen the breakdowns to the declared table type
    # (a cast that changes only nullability), and sort by key since map columns cannot be sorted on
    breakdowns = [f"{score}_breakdown" for score in ("engagement", "revenue", "loyalty", "risk", "digital")]
    actual = scores.select(*[F.col(c).cast(BREAKDOWN_TYPE) if c in breakdowns else F.col(c) for c in scores.columns])
    assert_df_equality(actual.orderBy("subscriber_id"), expected.orderBy("subscriber_id"), ignore_nullable=True)
