"""Which tasks a run's params select, and what a rerun recomputes for later days."""

from __future__ import annotations

import pytest

from jobs.orchestration.selection import later_days_stages, source_skip_reason, stage_skip_reason

pytestmark = pytest.mark.unit

STAGES = ["ingest", "activity", "scores", "segments", "missions", "progress"]
STATEFUL = ["ingest", "activity", "scores", "missions", "progress"]


def test_unselected_stages_and_sources_say_why():
    params = {"stages": ["ingest", "scores"], "sources": ["cdr"]}
    assert stage_skip_reason(params, "scores") is None
    assert "stage activity is not selected" in stage_skip_reason(params, "activity")
    assert source_skip_reason(params, "cdr") is None
    assert "source app is not selected" in source_skip_reason(params, "app")
    assert "stage ingest is not selected" in source_skip_reason({"stages": ["scores"]}, "cdr")
    assert stage_skip_reason({}, "scores") is None  # no params: everything


@pytest.mark.parametrize(
    ("selected", "full_refresh", "expected"),
    [
        (STAGES, False, STAGES[1:]),  # a whole day rerun: every stage after ingest, later days
        (["ingest"], False, STAGES[1:]),  # new events: later activity rewrites late days, and so on
        (["segments"], False, []),  # nothing later days read
        (["segments", "missions"], False, ["missions", "progress"]),
        (["scores"], False, ["scores", "segments", "missions", "progress"]),
        (["segments"], True, ["segments", "missions", "progress"]),
        (STAGES, True, STAGES),  # later extracts are ingested again
        ([], False, []),
    ],
)
def test_later_days_recompute_from_the_first_selected_stateful_stage(selected, full_refresh, expected):
    assert later_days_stages(STAGES, selected, STATEFUL, full_refresh) == expected
