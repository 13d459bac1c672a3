"""An extract that shrinks suspiciously never replaces a day silently."""

from __future__ import annotations

import pytest

from jobs.ingest import ShrinkGuard

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("rows_read", "previous", "refused"),
    [
        (0, 2_000_000, True),  # a header-only file after a normal day
        (199_999, 2_000_000, True),
        (200_000, 2_000_000, False),  # exactly the ratio is fine
        (0, None, False),  # first run of the source: nothing to compare with
        (0, 99, False),  # too small a history to judge
        (0, 100, True),
    ],
)
def test_the_guard_compares_with_the_last_successful_run(rows_read, previous, refused):
    problem = ShrinkGuard(min_ratio=0.1, min_previous_rows=100).problem(rows_read, previous)
    assert (problem is not None) == refused
    if refused:
        assert f"extract shrank to {rows_read:,} rows from {previous:,}" in problem


def test_settings_come_from_the_config_and_are_checked():
    guard = ShrinkGuard.from_config({"min_ratio": 0.5, "min_previous_rows": 10, "action": "hold"})
    assert guard == ShrinkGuard(0.5, 10, "hold")
    assert ShrinkGuard.from_config(None) == ShrinkGuard(0.1, 100, "fail")
    with pytest.raises(ValueError, match="action must be fail or hold"):
        ShrinkGuard.from_config({"action": "ignore"})
