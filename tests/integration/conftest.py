from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest

from jobs.config import load_config
from jobs.pipeline import STAGES, RunContext, build_lakehouse, run_stages
from jobs.sample_data import generate

START = date(2025, 3, 1)  # a 1st of the month, so the monthly DWH extract is due on day 1
DAYS = 8
SUBSCRIBERS = 600
MISSION_DAYS = 3


class Pipeline:
    """A generated operator plus a lakehouse, run through the real stages."""

    def __init__(
        self,
        spark,
        root: Path,
        subscribers: int = SUBSCRIBERS,
        days: int = DAYS,
        raw: Path | None = None,
        overrides: dict | None = None,
    ):
        self.root = root
        self.raw = raw or root / "raw"
        if raw is None:
            self.manifest = generate(self.raw, subscribers=subscribers, days=days, start=START, seed=11)
        else:
            self.manifest = json.loads((raw / "_manifest.json").read_text())
        self.config = load_config(
            env="test",
            overrides={
                "raw.root": str(self.raw),
                "lakehouse.root": str(root / "lakehouse"),
                "exports.root": str(root / "exports"),
                # the nights of these fixtures run the quality gate on some days only, by design
                "exports.require_gate": False,
                **(overrides or {}),
            },
            environ={},
        )
        self.spark = spark
        self.lakehouse = build_lakehouse(spark, self.config)
        self.days = [date.fromordinal(START.toordinal() + i) for i in range(days)]
        self.stages_by_day: dict[date, list[str]] = {}  # what each night ran
        self.saved: dict[date, Path] = {}  # copies of the lakehouse as the night of a date left it

    def copy(
        self, root: Path, *, with_raw: bool = False, as_of: date | None = None, overrides: dict | None = None
    ) -> Pipeline:
        """A copy of this lakehouse over the same raw extracts (or, `with_raw`, over a copy of them
        too): for tests that rerun a day, change the configuration or the extracts they run on.
        `as_of`: the lakehouse as the night of that date left it (kept by `save`); `overrides`:
        configuration keys of the copy's own."""
        shutil.copytree(self.saved[as_of] if as_of else self.lakehouse.root, root / "lakehouse")
        raw = self.raw
        if with_raw:
            raw = root / "raw"
            shutil.copytree(self.raw, raw)
        return Pipeline(self.spark, root, days=len(self.days), raw=raw, overrides=overrides)

    @property
    def mission_days(self) -> list[date]:
        return self.days[-MISSION_DAYS:]

    @property
    def last_day(self) -> date:
        return self.days[-1]

    def save(self, ds: date) -> None:
        """Keep a copy of the lakehouse as it is after the night of `ds`."""
        self.saved[ds] = self.root / f"lakehouse_after_{ds.isoformat()}"
        shutil.copytree(self.lakehouse.root, self.saved[ds])

    def run(self, ds: date, stages=None, sources=None):
        ctx = RunContext(self.spark, self.config, self.lakehouse, ds, only_sources=sources)
        return run_stages(ctx, stages)


@pytest.fixture(scope="session")
def pipeline(spark, tmp_path_factory) -> Pipeline:
    """Nightly runs of every stage over a small generated operator, shared by the integration tests."""
    pipe = Pipeline(spark, tmp_path_factory.mktemp("e2e"))
    for ds in pipe.days:
        # missions and rewards from the last MISSION_DAYS days only: enough for caps and cooldowns, and
        # fast; the quality gates on the last day
        names = list(STAGES)
        stages = names[: names.index("missions")] if ds not in pipe.mission_days else names
        if ds != pipe.last_day:
            stages = [s for s in stages if s != "quality"]
        pipe.run(ds, stages=stages)
        pipe.stages_by_day[ds] = stages
        if ds == pipe.days[-3]:  # test_backfill_e2e runs the last two days again, in other orders
            pipe.save(ds)
    return pipe
