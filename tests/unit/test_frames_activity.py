"""Whole-frame known answers for `daily_activity`: events -> one row per subscriber per day."""

from __future__ import annotations

import textwrap
from datetime import date

import pytest
from chispa import assert_df_equality

from jobs.config import DEFAULT_CONF_DIR, ConfigError
from jobs.metrics import MetricRegistry, daily_activity

pytestmark = pytest.mark.unit

D1 = date(2025, 3, 9)
D2 = date(2025, 3, 10)

EVENTS_SCHEMA = (
    "subscriber_id string, event_date date, source string, event_type string, event_subtype string, "
    "channel string, unit string, quantity double, amount double, attributes map<string,string>"
)

# One metric of each shape: count/quantity/amount values, sum/max/min aggregations, an attribute
# condition, a null-sensitive condition, and derived flags built on other metrics and flags.
TINY_REGISTRY = """
    version: 1
    attributes: [roaming]
    daily_metrics:
      minutes: {when: "event_type == 'cdr' and event_subtype == 'voice'", value: quantity}
      calls: {when: "event_type == 'cdr' and event_subtype == 'voice'"}
      roaming: {when: "event_type == 'cdr' and attr_roaming == 'Y'"}
      topup: {when: "event_type == 'billing' and event_subtype == 'recharge'", value: amount}
      biggest_topup: {when: "event_type == 'billing' and event_subtype == 'recharge'", value: amount, agg: max}
      smallest_topup: {when: "event_type == 'billing' and event_subtype == 'recharge'", value: amount, agg: min}
      on_time: {when: "event_type == 'billing' and event_subtype == 'payment' and (quantity is null or quantity <= 0)"}
    derived_metrics:
      active: "calls + topup > 0"
      active_caller: "active > 0 and minutes >= 2"
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> MetricRegistry:
    path = tmp_path_factory.mktemp("metrics") / "metrics.yaml"
    path.write_text(textwrap.dedent(TINY_REGISTRY))
    return MetricRegistry.load(path)


def test_daily_activity_whole_frame_with_a_tiny_registry(spark, registry):
    events = spark.createDataFrame(
        [
            ("s1", D2, "cdr", "cdr", "voice", "network", "min", 1.5, None, {"roaming": "Y"}),
            ("s1", D2, "cdr", "cdr", "voice", "network", "min", 2.0, None, {"roaming": "N"}),
            ("s1", D2, "billing", "billing", "recharge", "app", "eur", 1.0, 10.0, {}),
            ("s1", D2, "billing", "billing", "recharge", "ussd", "eur", 1.0, 5.0, {}),
            # the same subscriber on the previous day is a separate row
            ("s1", D1, "billing", "billing", "payment", "web", "eur", None, 30.0, {}),  # null days late: on time
            ("s2", D2, "billing", "billing", "payment", "web", "eur", 4.0, 20.0, {}),  # 4 days late: not on time
            ("s2", D2, "billing", "billing", "payment", "web", "eur", 0.0, 20.0, None),  # paid on the due date
            # a null quantity is not counted in a quantity sum; a null attribute map is no roaming
            ("s3", D2, "cdr", "cdr", "voice", "network", "min", None, None, None),
        ],
        EVENTS_SCHEMA,
    )
    expected = spark.createDataFrame(
        [
            # s1 D2: minutes 1.5+2.0; 2 calls; 1 roaming; topup 10+5; max 10, min 5
            ("s1", 3.5, 2.0, 1.0, 15.0, 10.0, 5.0, 0.0, 1.0, 1.0, D2),
            # s1 D1: a payment only; no recharge -> max/min stay null, sums are 0; not active (calls+topup = 0)
            ("s1", 0.0, 0.0, 0.0, 0.0, None, None, 1.0, 0.0, 0.0, D1),
            ("s2", 0.0, 0.0, 0.0, 0.0, None, None, 1.0, 0.0, 0.0, D2),
            # s3: one call with unknown minutes: active, but minutes 0 < 2 -> not an active caller
            ("s3", 0.0, 1.0, 0.0, 0.0, None, None, 0.0, 1.0, 0.0, D2),
        ],
        "subscriber_id string, minutes double, calls double, roaming double, topup double, biggest_topup double, "
        "smallest_topup double, on_time double, active double, active_caller double, activity_date date",
    )
    assert_df_equality(daily_activity(events, registry), expected, ignore_row_order=True, ignore_nullable=True)


def test_daily_sums_are_kept_at_six_decimals(spark, registry):
    """2.80 + 5.60 + 1.60 EUR is 10 EUR, not the 9.999999999999998 of adding doubles."""
    recharges = [("s4", D2, "billing", "billing", "recharge", "app", "eur", 1.0, eur, {}) for eur in (2.8, 5.6, 1.6)]
    row = daily_activity(spark.createDataFrame(recharges, EVENTS_SCHEMA), registry).first()
    assert (row.topup, row.biggest_topup, row.smallest_topup) == (10.0, 5.6, 1.6)


def test_daily_activity_whole_frame_with_the_production_registry(spark):
    """conf/metrics.yaml: one column per daily metric then per derived flag, in written order; a
    metric no event counted is 0, except max aggregations (arpu, tenure_months), which stay null."""
    production = MetricRegistry.load(DEFAULT_CONF_DIR / "metrics.yaml")
    events = spark.createDataFrame(
        [
            ("s1", D2, "cdr", "cdr", "voice_out", "network", "min", 2.5, None, {"roaming": "Y"}),
            ("s1", D2, "cdr", "cdr", "voice_in", "network", "min", 1.0, None, {"roaming": "N"}),
            ("s1", D2, "cdr", "cdr", "data_session", "network", "MB", 300.0, None, {}),
            ("s1", D2, "billing", "billing", "recharge", "app", "eur", 1.0, 10.0, {}),
            ("s1", D2, "billing", "billing", "payment", "web", "days_late", 3.0, 40.0, {}),  # paid 3 days late
            ("s1", D2, "app", "app", "login", "app", "n", 1.0, None, {}),
            ("s2", D2, "care", "care", "complaint", "call_centre", "n", 1.0, None, {}),
            ("s2", D2, "dwh", "dwh", "monthly_arpu", "dwh", "months", 26.0, 31.5, {}),
        ],
        EVENTS_SCHEMA,
    )
    non_zero = {
        "s1": {
            "voice_minutes": 3.5,  # 2.5 out + 1.0 in
            "voice_calls_out": 1.0,
            "data_mb": 300.0,
            "data_sessions": 1.0,
            "roaming_events": 1.0,
            "usage_events": 3.0,  # the three cdr records
            "recharge_count": 1.0,
            "recharge_amount": 10.0,
            "payment_count": 1.0,
            "payment_amount": 40.0,
            "late_payments": 1.0,
            "digital_payments": 2.0,  # the recharge in the app and the payment on the web
            "app_logins": 1.0,
            "digital_actions": 1.0,
            "active": 1.0,
            "used_voice": 1.0,
            "used_data": 1.0,
            "used_digital": 1.0,
        },
        "s2": {
            "care_contacts": 1.0,
            "call_centre_contacts": 1.0,
            "complaints": 1.0,
            "arpu": 31.5,
            "tenure_months": 26.0,
            # care and DWH rows are no usage, digital action, recharge or payment: not active
        },
    }
    max_metrics = {"arpu", "tenure_months"}
    names = [*(m.name for m in production.daily), *production.derived]
    rows = [
        (sub, *(values.get(n, None if n in max_metrics else 0.0) for n in names), D2)
        for sub, values in non_zero.items()
    ]
    columns = ", ".join(f"{n} double" for n in names)
    expected = spark.createDataFrame(rows, f"subscriber_id string, {columns}, activity_date date")
    actual = daily_activity(events, production)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        # each compiled, then failed the activity stage: a text cast to a number, a number as a condition
        ('daily_metrics:\n  x: {when: "event_type == 5"}\n', "cannot compare a string with a number"),
        ("daily_metrics:\n  x: {when: 'quantity', value: quantity}\n", "must be a condition"),
        ('daily_metrics:\n  x: {when: "attr_roaming > 0"}\nattributes: [roaming]\n', "cannot compare a string"),
        (
            "daily_metrics:\n  x: {when: \"event_type == 'cdr'\"}\nderived_metrics:\n  y: 'x + 1'\n",
            "must be a condition",
        ),
    ],
)
def test_metric_rules_are_type_checked_on_load(tmp_path, metric, message):
    path = tmp_path / "metrics.yaml"
    path.write_text(metric)
    with pytest.raises(ConfigError, match=message):
        MetricRegistry.load(path)
