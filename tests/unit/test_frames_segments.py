"""Whole-frame known answers for `assign_segments`: first matching rule wins, else the default."""

from __future__ import annotations

import textwrap
from datetime import date

import pytest
from chispa import assert_df_equality

from jobs.segments import SegmentRules, assign_segments

pytestmark = pytest.mark.unit

DS = date(2025, 3, 10)
RULES = """
    segments:  # segments_version: the highest version among them, 2
      - {id: at_risk, name: At risk, version: 2, kind: segment, spec: {rule: "risk >= 70"}}
      - id: postpaid_high
        name: Postpaid, high revenue
        version: 1
        kind: segment
        spec: {rule: "payment_type == 'POSTPAID' and revenue >= 60"}
      - {id: everyone_else, name: Everyone else, version: 1, kind: segment, spec: {default: true}}
"""


def test_assign_segments_whole_frame_first_match_then_default(spark, tmp_path):
    path = tmp_path / "segments.yaml"
    path.write_text(textwrap.dedent(RULES))
    rules = SegmentRules.load(path, ["risk", "revenue"])
    scored = spark.createDataFrame(
        [
            ("a", 80.0, 90.0, "POSTPAID"),  # both rules match: the first listed wins
            ("b", 10.0, 90.0, "POSTPAID"),
            ("c", 70.0, 10.0, "PREPAID"),  # on the boundary of the first rule
            ("e", 69.99, 60.0, "PREPAID"),  # just below; revenue enough but not postpaid
            ("d", None, None, None),  # unknown values match no rule
        ],
        "subscriber_id string, risk double, revenue double, payment_type string",
    )
    expected = spark.createDataFrame(
        [
            ("a", "at_risk", "risk >= 70", "2", DS),
            ("b", "postpaid_high", "payment_type == 'POSTPAID' and revenue >= 60", "2", DS),
            ("c", "at_risk", "risk >= 70", "2", DS),
            ("e", "everyone_else", "default", "2", DS),
            ("d", "everyone_else", "default", "2", DS),
        ],
        "subscriber_id string, segment string, matched_rule string, segments_version string, segment_date date",
    )
    actual = assign_segments(scored, rules, DS)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
