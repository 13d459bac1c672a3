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
day's stages start. That is the backfill order below (day 2's ingest before day 1's stages);
any real interleaving lies between it and the nightly order. Then, on three days, a rerun of
the middle day followed by the recomputation of the day after it (what the DAG's
`recompute_later_days` task runs) must leave every table as it was.

Tasks run in-process on the shared Spark session, group by group as the DAG's Spark jobs run
them (`gamify run --stages <the group's stages>`), over every stage of STAGES. Stages after the
last stateful one (none at present) read the day's finished tables and nothing builds on them:
they would run on the last day of each order only.
"""

from __future__ import annotations

import re
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from jobs.config import DEFAULT_CONF_DIR, load_config
from jobs.orchestration.selection import later_days_stages
from jobs.orchestration.settings import AirflowSettings
from jobs.pipeline import STAGES, RunContext, build_lakehouse, run_stages
from jobs.sample_data import generate
from tests.integration.helpers import table_content

pytestmark = pytest.mark.integration

START = date(2025, 3, 1)
DAYS = [START + timedelta(days=i) for i in range(3)]  # the orders on days 1-2, the rerun of day 2
SUBSCRIBERS = 100
SOURCES = ("crm_subscribers", "cdr")  # the CRM snapshot and the bulk of the events; the others inactive
MISSION_TEMPLATES = ("daily_usage_streak", "use_line_this_week", "data_usage_boost", "top_up_amount")
VOLATILE = {"pipeline_runs": ["duration_s"]}  # wall-clock seconds differ between any two runs
SECONDS = re.compile(r'(\\"seconds\\": )[0-9.e+-]+')  # the same, in a stage summary (a JSON string in JSON)

STATEFUL = [s for s in AirflowSettings.load().stateful_stages if s in STAGES]
LAST_STATEFUL = max(list(STAGES).index(s) for s in STATEFUL)
DAILY = [s for s in list(STAGES)[: LAST_STATEFUL + 1] if s != "ingest"]
GATES = list(STAGES)[LAST_STATEFUL + 1 :]

GROUPS = AirflowSettings.load().stage_groups(list(STAGES))  # the DAG's Spark applications, in order


def small_conf(root: Path) -> Path:
    """The repository's configuration on a smaller scale: two active sources, a few mission
    templates, quality checks as warnings (thresholds meant for real volumes fail on 100
    subscribers). Every stage runs the same code."""
    conf = root / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    for path in (conf / "sources").glob("*.yaml"):
        _edit_yaml(path, lambda source: source.update(active=source["name"] in SOURCES))
    templates = root / "templates" / "missions"
    templates.mkdir(parents=True)
    for name in MISSION_TEMPLATES:
        shutil.copy(DEFAULT_CONF_DIR.parent / "templates" / "missions" / f"{name}.yaml", templates)
    badges = DEFAULT_CONF_DIR.parent / "templates" / "badges"
    _edit_yaml(conf / "missions.yaml", lambda m: m.update(templates_dir=str(templates), badges_dir=str(badges)))
    if (conf / "quality.yaml").exists():
        _edit_yaml(conf / "quality.yaml", _as_warnings)
    return conf


def _edit_yaml(path: Path, edit) -> None:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))


def _as_warnings(node) -> None:
    if isinstance(node, dict):
        if "severity" in node or "expect" in node:
            node["severity"] = "warning"
        for child in node.values():
            _as_warnings(child)
    elif isinstance(node, list):
        for child in node:
            _as_warnings(child)


class Lakehouse:
    """One lakehouse over the shared raw extracts, run task by task as the DAG runs them."""

    def __init__(self, spark, conf: Path, raw: Path, root: Path) -> None:
        self.config = load_config(
            conf, env="test", overrides={"raw.root": str(raw), "lakehouse.root": str(root)}, environ={}
        )
        self.spark = spark
        self.lakehouse = build_lakehouse(spark, self.config)
        self.root = str(root)

    def run(self, ds: date, stages: list[str] | None = None, *, ingest: bool = False) -> None:
        """The DAG's tasks for `ds` that hold the given stages (and ingest): one run per group,
        with that group's stages only."""
        wanted = set(stages or []) | ({"ingest"} if ingest else set())
        for group in GROUPS:
            selected = [stage for stage in group.stages if stage in wanted]
            if selected:
                run_stages(RunContext(self.spark, self.config, self.lakehouse, ds), selected)

    def content(self) -> dict[str, list[str]]:
        """Every table's rows, without what legitimately differs between two lakehouses: the
        seconds a stage took (a column, and a field of a stage's summary) and the lakehouse's own
        path (in links to the quality reports)."""
        return {
            table: [self._comparable(row) for row in table_content(_Without(self.lakehouse, VOLATILE), table)]
            for table in self.lakehouse.tables()
        }

    def _comparable(self, row: str) -> str:
        return SECONDS.sub(r"\1<seconds>", row.replace(self.root, "<lakehouse>"))


class _Without:
    """Reads of a lakehouse that drop some columns per table."""

    def __init__(self, lakehouse, columns: dict[str, list[str]]) -> None:
        self.lakehouse, self.columns = lakehouse, columns

    def read(self, table: str, **options):
        return self.lakehouse.read(table, **options).drop(*self.columns.get(table, []))


@pytest.fixture(scope="module")
def orders(spark, tmp_path_factory):
    """Days 1-2 in the nightly order and in the backfill order, over the same extracts."""
    root = tmp_path_factory.mktemp("backfill")
    raw = root / "raw"
    generate(raw, subscribers=SUBSCRIBERS, days=len(DAYS), start=START, seed=11)
    conf = small_conf(root)
    day1, day2 = DAYS[:2]

    started = time.monotonic()
    nightly = Lakehouse(spark, conf, raw, root / "nightly")
    nightly.run(day1, ingest=True)  # both orders start so: done once, copied
    shutil.copytree(root / "nightly", root / "backfill")
    nightly.run(day1, DAILY)
    nightly.run(day2, DAILY + GATES, ingest=True)
    nightly_seconds = time.monotonic() - started

    started = time.monotonic()
    backfill = Lakehouse(spark, conf, raw, root / "backfill")
    backfill.run(day2, ingest=True)  # ahead of day 1's stages
    backfill.run(day1, DAILY)
    backfill.run(day2, DAILY + GATES)
    print(f"\nnightly order {nightly_seconds:.0f}s, backfill order {time.monotonic() - started:.0f}s")
    return nightly, backfill


def test_backfill_order_gives_the_nightly_tables(orders):
    nightly, backfill = orders
    expected, actual = nightly.content(), backfill.content()
    assert sorted(actual) == sorted(expected)
    assert {"behavior_scores", "mission_assignments", "pipeline_runs"} <= set(expected)
    for table in expected:
        assert actual[table] == expected[table], f"{table} differs between backfill and nightly runs"


def test_rerun_of_a_middle_day_and_its_later_days_changes_no_table(orders):
    _, lakehouse = orders
    lakehouse.run(DAYS[2], DAILY, ingest=True)
    before = lakehouse.content()

    started = time.monotonic()
    lakehouse.run(DAYS[1], DAILY, ingest=True)
    recompute = later_days_stages(list(STAGES), list(STAGES), STATEFUL)  # what recompute_later_days runs
    assert recompute == DAILY + GATES
    lakehouse.run(DAYS[2], [s for s in recompute if s not in GATES])
    print(f"\nrerun of {DAYS[1]} and of the day after it: {time.monotonic() - started:.0f}s")

    after = lakehouse.content()
    for table in before:
        assert after[table] == before[table], f"{table} changed after rerunning {DAYS[1]}"
