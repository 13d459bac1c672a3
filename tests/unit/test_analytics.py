"""Analyst views (file conventions), result formatting, and the HTML report rendered from
hand-made aggregates."""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal

import pytest

from jobs.analytics import svg
from jobs.analytics.output import format_table, to_csv, to_json_lines
from jobs.analytics.report import ReportData, render_html
from jobs.analytics.views import header, views

pytestmark = pytest.mark.unit

VIEWS = views()
UPPERCASE_KEYWORD = re.compile(r"\b(SELECT|FROM|WITH|WHERE|JOIN|GROUP|ORDER|UNION|CASE|WHEN|AS|AND|OR|NOT)\b")


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_view_files_follow_the_conventions(name):
    view = VIEWS[name]
    code = "\n".join(line for line in view.text.splitlines() if not line.lstrip().startswith("--"))
    assert view.description.split("\n")[0], f"{name}: no description"
    assert view.grain.startswith("one row per "), f"{name}: the 'Grain:' line should say 'one row per ...'"
    assert code.lstrip().startswith("with "), f"{name}: steps are CTEs"
    assert re.search(r"^final as \(", code, re.M), f"{name}: no final CTE"
    assert re.search(r"^select \* from final\b", code, re.M), f"{name}: does not end in select * from final"
    assert not UPPERCASE_KEYWORD.search(code), f"{name}: keywords are lowercase"


def test_header_and_grain_are_read_from_the_leading_comment():
    text = "-- Funnel of missions.\n-- Grain: one row per\n-- template x level.\nwith a as (select 1)\n-- not header\n"
    assert header(text) == "Funnel of missions.\nGrain: one row per\ntemplate x level."
    assert VIEWS["mission_funnel"].grain == "one row per template x category x segment x difficulty level."


def test_table_output_is_aligned_with_numbers_right_aligned():
    text = format_table(
        ["segment", "subscribers", "share"],
        [("mass_prepaid", 120, Decimal("12.50")), ("at_risk", 7, None), ("a|b", 1234567, 0.125)],
    )
    assert text == (
        "segment       subscribers  share\n"
        "------------  -----------  -----\n"
        "mass_prepaid          120  12.50\n"
        "at_risk                 7   null\n"
        "a|b               1234567  0.125\n"
    )


def test_csv_and_json_output():
    columns = ["day", "n", "flag", "payload"]
    rows = [(date(2025, 3, 1), Decimal("1.5"), True, {"k": "v"}), (None, 2, False, None)]
    assert to_csv(columns, rows) == 'day,n,flag,payload\n2025-03-01,1.5,true,"{""k"": ""v""}"\n,2,false,\n'
    lines = [json.loads(line) for line in to_json_lines(columns, rows).splitlines()]
    assert lines == [
        {"day": "2025-03-01", "n": 1.5, "flag": True, "payload": {"k": "v"}},
        {"day": None, "n": 2, "flag": False, "payload": None},
    ]


def test_nice_ticks_cover_the_range():
    assert svg.nice_ticks(0, 87) == [0, 20, 40, 60, 80, 100]
    assert svg.nice_ticks(-3.2, 1.1) == [-4, -3, -2, -1, 0, 1, 2]


def _charts(html: str) -> dict[str, tuple[int, int]]:
    """chart id -> (data-points, marks drawn)."""
    found = {}
    for block in html.split("<svg")[1:]:
        block = block.split("</svg>")[0]
        chart = re.search(r"data-chart='([^']+)'", block).group(1)
        points = int(re.search(r"data-points='(\d+)'", block).group(1))
        found[chart] = (points, block.count("class='mark'"))
    return found


def _data(**overrides) -> ReportData:
    ds = date(2025, 3, 8)
    score_rows = [
        {"score_date": ds, "segment": seg, "score": score, "subscribers": 10, "mean": 50.0, "p25": 40.0,
         "median": 50.0, "p75": 60.0, "min_value": 5.0, "max_value": 95.0, "mean_week_before": 48.0,
         "drift_vs_week_before": 2.0}
        for seg in ("at_risk", "mass_prepaid")
        for score in ("engagement", "revenue", "loyalty", "risk", "digital")
    ]  # fmt: skip
    base = {
        "ds": ds,
        "scores": score_rows,
        "missions": [
            {"category": "engagement", "assigned": 40, "started": 30, "active": 20, "completed": 8, "expired": 2},
            {"category": "revenue", "assigned": 10, "started": 9, "active": 5, "completed": 3, "expired": 1},
        ],
        "uplift": [
            {
                "category": "engagement",
                "segment": "all",
                "outcome": outcome,
                "n_treated": 30,
                "n_holdout": 4,
                "mean_treated": 1.0,
                "mean_holdout": 0.5,
                "uplift": 0.5,
                "ci95_low": -0.2,
                "ci95_high": 1.2,
            }
            for outcome in ("engagement_change", "revenue_change", "risk_change", "recharge_amount", "churn_signal")
        ],
        "badges": [{"awarded_ds": ds, "level": "bronze", "level_rank": 1, "awards": 12, "points": 600}],
        "points": [
            {"entry_ds": date(2025, 3, 7), "points_issued": 500, "points_expired": 0, "points_outstanding": 500},
            {"entry_ds": ds, "points_issued": 700, "points_expired": 50, "points_outstanding": 1150},
        ],
        "rejects": [{"source": "cdr", "reject_reason": "duplicate", "rejected_rows": 12}],
        "stages": [{"stage": "ingest", "duration_s": 12.5}, {"stage": "scores", "duration_s": 4.0}],
        "row_counts": [{"table": "events", "rows": 1000}, {"table": "mission_catalog", "rows": 0}],
        "quality": [{"status": "passed", "severity": "critical", "expectations": 40}],
        "data_docs": "../_data_docs/2025-03-08/index.html",
    }
    return ReportData(**{**base, **overrides})


def test_report_draws_every_chart_from_the_aggregates():
    html = render_html(_data())
    charts = _charts(html)
    expected_points = {
        **{f"scores-{s}": 2 for s in ("engagement", "revenue", "loyalty", "risk", "digital")},
        "score-drift": 10,
        "missions-by-category": 6,
        "mission-funnel": 4,
        **{f"uplift-{o}": 1 for o in ("engagement_change", "revenue_change", "risk_change", "recharge_amount",
                                      "churn_signal")},
        "badge-awards": 1,
        "points": 6,
        "rejects": 1,
        "stage-durations": 2,
        "row-counts": 1,
    }  # fmt: skip
    assert {chart: points for chart, (points, _) in charts.items()} == expected_points
    assert all(marks == points for points, marks in charts.values())
    assert "href='../_data_docs/2025-03-08/index.html'" in html
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", html)
    assert "<script" not in html and "@import" not in html and "url(" not in html


def test_report_marks_empty_charts_instead_of_failing():
    html = render_html(_data(badges=[], uplift=[], rejects=[], data_docs=None))
    charts = _charts(html)
    assert charts["badge-awards"] == (0, 0)
    assert charts["uplift-engagement_change"] == (0, 0)
    assert charts["rejects"] == (0, 0)
    assert "no quality Data Docs for this date" in html
