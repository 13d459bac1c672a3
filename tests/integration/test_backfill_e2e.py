"""A backfill gives the tables nightly runs give, and a rerun of a past day changes nothing.

The DAG runs a day as a few tasks, each a group of stages run in one Spark application
(conf/airflow.yaml `groups`): ingest (every due source, CRM snapshot first), then the groups of
the stages after it. Nightly runs execute them day after day. What orders can an Airflow 3
backfill produce? Backfill runs honour the backfill's own max_active_runs (not the DAG's), so
several days may be in flight; what holds them is the DAG's dependencies:

* each group holding a stateful stage has depends_on_past: day N+1 waits for day N;
* the first group after ingest also waits for the previous day's `report` (wait_for_downstream),
  so the stages after ingest run day after day, each day complete before the next one starts.

Ingest is the only thing that can run ahead: a later day's ingest may finish before an earlier
day's stages start. That is the backfill order below (the last day's ingest before the stages
of the day before it); any real interleaving lies between it and the nightly order. A rerun of
the day before the last, followed by the recomputation of the last day (what the DAG's
`recompute_later_days` task runs), must leave every table as it was.

The nightly order is the shared `pipeline` fixture's (every source, every mission template):
its last two days run again here from a copy of its lakehouse as the night before them left it,
with the stages the fixture ran on each day (the quality gate on the last day only), group by
group as the DAG's Spark jobs run them (`gamify run --stages <the group's stages>`).
"""

from __future__ import annotations

import re
import time
from datetime import date

import pytest

from jobs.orchestration.selection import later_days_stages
from jobs.orchestration.settings import AirflowSettings
from jobs.pipeline import STAGES
from tests.integration.conftest import Pipeline
from tests.integration.helpers import table_content

pytestmark = pytest.mark.integration

VOLATILE = {
    "pipeline_runs": ["duration_s"],  # wall-clock seconds differ between any two runs
    "quality_results": ["table_version"],  # the versions the gate read: each run's own commits count
}
SECONDS = re.compile(r'(\\"seconds\\": )[0-9.e+-]+')  # the same, in a stage summary (a JSON string in JSON)

STATEFUL = [s for s in AirflowSettings.load().stateful_stages if s in STAGES]
GROUPS = AirflowSettings.load().stage_groups(list(STAGES))  # the DAG's Spark applications, in order


def run_groups(pipe: Pipeline, ds: date, stages: list[str]) -> None:
    """The DAG's tasks for `ds` that hold the given stages: one run per group, with that group's
    stages only."""
    for group in GROUPS:
        selected = [stage for stage in group.stages if stage in stages]
        if selected:
            pipe.run(ds, stages=selected)


def content(pipe: Pipeline, origin: Pipeline | None = None) -> dict[str, list[str]]:
    """Every table's rows, without what legitimately differs between two lakehouses: the seconds
    a stage took (a column, and a field of a stage's summary) and the lakehouse's and the
    exports' own paths (in links to the quality reports, in the export runs), those of the
    lakehouse `pipe` is a copy of (`origin`) included: the copied rows keep them."""
    roots = {}
    for owner in (pipe, origin or pipe):
        roots |= {owner.lakehouse.root: "<lakehouse>", str(owner.config.get("exports.root")): "<exports>"}

    def comparable(row: str) -> str:
        for root, name in roots.items():
            row = row.replace(root, name)
        return SECONDS.sub(r"\1<seconds>", row)

    return {
        table: [comparable(row) for row in table_content(_Without(pipe.lakehouse, VOLATILE), table)]
        for table in pipe.lakehouse.tables()
    }


class _Without:
    """Reads of a lakehouse that drop some columns per table."""

    def __init__(self, lakehouse, columns: dict[str, list[str]]) -> None:
        self.lakehouse, self.columns = lakehouse, columns

    def read(self, table: str, **options):
        return self.lakehouse.read(table, **options).drop(*self.columns.get(table, []))


def _after_ingest(stages: list[str]) -> list[str]:
    return [s for s in stages if s != "ingest"]


@pytest.fixture(scope="module")
def nightly(pipeline) -> dict[str, list[str]]:
    """The tables as the shared nightly runs left them."""
    return content(pipeline)


def test_backfill_order_gives_the_nightly_tables(pipeline, nightly, tmp_path):
    day1, day2 = pipeline.days[-2:]
    ran = pipeline.stages_by_day
    assert "ingest" in ran[day1] and "ingest" in ran[day2] and "quality" in ran[day2]

    started = time.monotonic()
    backfill = pipeline.copy(tmp_path, as_of=pipeline.days[-3])
    run_groups(backfill, day1, ["ingest"])
    run_groups(backfill, day2, ["ingest"])  # ahead of the day before's stages
    run_groups(backfill, day1, _after_ingest(ran[day1]))
    run_groups(backfill, day2, _after_ingest(ran[day2]))
    print(f"\nbackfill order of {day1} and {day2}: {time.monotonic() - started:.0f}s")

    actual = content(backfill, pipeline)
    assert sorted(actual) == sorted(nightly)
    assert {"behavior_scores", "mission_assignments", "badge_awards", "pipeline_runs"} <= set(nightly)
    for table in nightly:
        assert actual[table] == nightly[table], f"{table} differs between backfill and nightly runs"


def test_rerun_of_a_past_day_and_its_later_days_changes_no_table(pipeline, nightly, tmp_path):
    day1, day2 = pipeline.days[-2:]
    ran = pipeline.stages_by_day
    lakehouse = pipeline.copy(tmp_path)  # the shared lakehouse stays as the nightly runs left it

    started = time.monotonic()
    run_groups(lakehouse, day1, ran[day1])
    recompute = later_days_stages(list(STAGES), list(STAGES), STATEFUL)  # what recompute_later_days runs
    assert recompute == _after_ingest(list(STAGES))
    run_groups(lakehouse, day2, [s for s in recompute if s in ran[day2]])
    print(f"\nrerun of {day1} and of the day after it: {time.monotonic() - started:.0f}s")

    after = content(lakehouse, pipeline)
    assert sorted(after) == sorted(nightly)
    for table in nightly:
        assert after[table] == nightly[table], f"{table} changed after rerunning {day1}"
