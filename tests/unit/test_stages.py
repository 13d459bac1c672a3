"""The pure lifetime fold the badges stage runs (settled state + recent days ->
subscriber_lifetime rows); the settings every stage reads are tested in test_settings.py."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from jobs import lifetime

pytestmark = pytest.mark.unit

D = date(2025, 5, 20)

METRICS = {
    "total_data_mb": lifetime.LifetimeMetric("total_data_mb", "data_mb", "sum"),
    "data_days": lifetime.LifetimeMetric("data_days", "data_mb", "days"),
}
STATE = T.MapType(T.StringType(), T.DoubleType(), valueContainsNull=False)  # every key always has a value


def test_completed_missions_are_the_newly_completed_with_their_templates_badge(spark):
    progress = spark.createDataFrame(
        [
            ("s1", "t_streak", "loyalty", True),
            ("s1", "t_plain", "revenue", True),
            ("s2", "t_streak", "loyalty", False),  # completed on an earlier day
            ("s2", "t_unknown", "usage", True),
        ],
        "subscriber_id string, template_id string, category string, newly_completed boolean",
    )
    got = lifetime.completed_missions(progress, {"t_streak": "streak", "t_plain": None})
    expected = spark.createDataFrame(
        [("s1", "loyalty", "streak"), ("s1", "revenue", None), ("s2", "usage", None)],
        "subscriber_id string, category string, badge string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_snapshot_carries_the_settled_state_and_adds_the_recent_days(spark):
    settled_through = D - timedelta(days=7)
    settling = spark.createDataFrame(
        [
            ("s1", D - timedelta(days=12), 100.0),
            ("s1", D - timedelta(days=9), 50.0),
            ("s3", D - timedelta(days=8), 0.0),
        ],
        "subscriber_id string, activity_date date, data_mb double",
    )
    completions = spark.createDataFrame(
        [("s1", "loyalty", "streak")], "subscriber_id string, category string, badge string"
    )
    span = (D - timedelta(days=12), settled_through)
    settled = lifetime.advance(None, settling, completions, METRICS, ["loyalty"], ["streak"], span=span)
    recent = spark.createDataFrame(
        [("s1", D - timedelta(days=2), 30.0), ("s2", D, 0.0), ("s2", D - timedelta(days=1), 20.0)],
        "subscriber_id string, activity_date date, data_mb double",
    )
    got = lifetime.snapshot(settled, recent, METRICS, ["loyalty"], D, settled_through, ["streak"])

    def counts(data_mb, days, completed):
        return {
            "total_data_mb": data_mb,
            "data_days": days,
            "missions_completed": completed,
            "missions_completed_loyalty": completed,
            "missions_completed_for_streak": completed,
        }

    expected = spark.createDataFrame(
        [
            ("s1", counts(150.0, 2.0, 1.0), settled_through, counts(180.0, 3.0, 1.0), D),
            ("s2", None, settled_through, counts(20.0, 1.0, 0.0), D),
            ("s3", counts(0.0, 0.0, 0.0), settled_through, counts(0.0, 0.0, 0.0), D),
        ],
        T.StructType(
            [
                T.StructField("subscriber_id", T.StringType()),
                # never a null value, but Spark types a rounded total as nullable
                T.StructField("settled", T.MapType(T.StringType(), T.DoubleType(), valueContainsNull=True)),
                T.StructField("settled_through", T.DateType()),
                T.StructField("metrics", STATE),
                T.StructField("stats_date", T.DateType()),
            ]
        ),
    )
    # one row per subscriber; ordered by it (maps cannot be sorted on)
    assert_df_equality(got.orderBy("subscriber_id"), expected, ignore_nullable=True)
