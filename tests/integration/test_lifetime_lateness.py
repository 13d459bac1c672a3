"""The lifetime snapshot when ingest.max_lateness_days changes between nights: every day is
folded into the settled state once, none skipped, none twice.

One subscriber uses 1 MB a day on days 1-11; lifetime_snapshot (the badges stage's fold) alone,
on day 10 and then day 11 with another lateness. Either way the total on day 11 is 11 MB.
A first night over a longer history than one fold walks folds it in spans.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import pytest

from jobs.config import load_config
from jobs.pipeline import RunContext, build_lakehouse
from jobs.settings import load_settings
from jobs.stages.badges import lifetime_snapshot
from jobs.tables import DAILY_ACTIVITY

pytestmark = pytest.mark.integration

DAY = [date(2025, 8, 1) + timedelta(days=i) for i in range(12)]  # DAY[1]..DAY[11]


def night(spark, root, ds: date, lateness: int) -> tuple[float, date]:
    config = load_config(
        env="test",
        overrides={"lakehouse.root": str(root), "ingest.max_lateness_days": lateness},
        environ={},
    )
    ctx = RunContext(spark, config, build_lakehouse(spark, config), ds)
    badge_ids = [t.id for t in ctx.settings.badges]
    row = lifetime_snapshot(ctx, ctx.settings.lifetime_metrics, badge_ids).first()
    return row.metrics["total_data_mb"], row.settled_through


def write_activity(spark, root, days: list[date]) -> None:
    """sub-1 active with 1 MB on each of `days`, every other daily metric 0."""
    config = load_config(env="test", overrides={"lakehouse.root": str(root)}, environ={})
    names = load_settings(config).metrics.names
    rows = [("sub-1", *[1.0 if n in ("data_mb", "active") else 0.0 for n in names], d) for d in days]
    schema = ", ".join(["subscriber_id string", *[f"{n} double" for n in names], "activity_date date"])
    build_lakehouse(spark, config).write(
        spark.createDataFrame(rows, schema),
        DAILY_ACTIVITY,
        partition_by=["activity_date"],
        replace_where={"activity_date": days},
    )


@pytest.fixture(scope="module")
def activity_root(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("lifetime_lateness") / "lakehouse"
    write_activity(spark, root, DAY[1:])
    return root


@pytest.mark.parametrize(("before", "after", "settled_through"), [(7, 3, DAY[8]), (3, 7, DAY[7])])
def test_a_changed_lateness_folds_every_day_once(spark, activity_root, tmp_path, before, after, settled_through):
    root = tmp_path / "lakehouse"
    shutil.copytree(activity_root, root)
    assert night(spark, root, DAY[10], before) == (10.0, DAY[10] - timedelta(days=before))
    # shorter: the days between the two settled layers are not skipped; longer: the days the
    # previous night settled stay settled (not counted again in the recent layer)
    assert night(spark, root, DAY[11], after) == (11.0, settled_through)


def test_a_first_night_over_a_long_history_folds_it_in_spans_and_keeps_the_streak(spark, tmp_path):
    root = tmp_path / "lakehouse"
    days = [DAY[0] + timedelta(days=i) for i in range(70)]
    write_activity(spark, root, days)
    config = load_config(env="test", overrides={"lakehouse.root": str(root)}, environ={})
    ctx = RunContext(spark, config, build_lakehouse(spark, config), days[-1])
    row = lifetime_snapshot(ctx, ctx.settings.lifetime_metrics, [t.id for t in ctx.settings.badges]).first()
    # settled: days 0-62 in spans of 31, 31 and 1 days; then the 7 open days on top
    assert row.settled_through == days[62]
    assert (row.settled["longest_streak_days"], row.settled["total_active_days"]) == (63.0, 63.0)
    assert (row.metrics["longest_streak_days"], row.metrics["total_active_days"], row.metrics["total_data_mb"]) == (
        70.0,
        70.0,
        70.0,
    )
