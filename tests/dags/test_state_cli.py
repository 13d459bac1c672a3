"""The latest processed date and the run report, read from pipeline_runs without Spark, and the
command line around them (`gamify run --to latest`, `gamify report`)."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from jobs.cli import main
from jobs.config import load_config
from jobs.run_log import latest_processed_date

pytestmark = pytest.mark.unit

COLUMNS = ("stage", "source", "status", "rows_read", "rows_accepted", "rows_rejected", "rows_duplicate")


def write_runs(root, rows):
    table = pa.table(
        {
            "run_ds": pa.array([r[0] for r in rows], pa.date32()),
            **{c: [r[i + 1] for r in rows] for i, c in enumerate(COLUMNS)},
            "events_written": [0] * len(rows),
            "duration_s": [1.0] * len(rows),
            "message": ["" if r[3] == "succeeded" else "no extract" for r in rows],
        }
    )
    write_deltalake(str(root / "pipeline_runs"), table, partition_by=["run_ds"])


@pytest.fixture
def lakehouse(tmp_path):
    write_runs(
        tmp_path,
        [
            (date(2025, 3, 1), "ingest", "cdr", "succeeded", 10, 9, 1, 0),
            (date(2025, 3, 1), "ingest", "app", "missing", 0, 0, 0, 0),
            (date(2025, 3, 1), "activity", None, "succeeded", None, None, None, None),
            (date(2025, 3, 2), "ingest", "cdr", "succeeded", 12, 12, 0, 0),  # ingest ran ahead
        ],
    )
    return tmp_path


def config(root):
    return load_config(env="test", overrides={"lakehouse.root": str(root)}, environ={})


def test_latest_processed_date_counts_stages_after_ingest(lakehouse, tmp_path_factory):
    assert latest_processed_date(config(lakehouse)) == date(2025, 3, 1)
    only_ingest = tmp_path_factory.mktemp("ingest_only")
    write_runs(only_ingest, [(date(2025, 3, 4), "ingest", "cdr", "succeeded", 1, 1, 0, 0)])
    assert latest_processed_date(config(only_ingest)) == date(2025, 3, 4)
    assert latest_processed_date(config(tmp_path_factory.mktemp("empty"))) is None


def test_run_to_latest_is_a_no_op_after_the_latest_processed_date(lakehouse, capsys):
    argv = ["--env", "test", "run", "--from", "2025-03-02", "--to", "latest", "--lakehouse-root", str(lakehouse)]
    assert main(argv) == 0
    assert "nothing to run: the latest processed date is 2025-03-01, before 2025-03-02" in capsys.readouterr().out


def test_report_prints_what_the_day_recorded(lakehouse, capsys):
    assert main(["--env", "test", "report", "--ds", "2025-03-01", "--lakehouse-root", str(lakehouse)]) == 0
    out = capsys.readouterr().out
    assert "2025-03-01: 3 pipeline run(s) recorded (latest processed date: 2025-03-01)" in out
    assert out.index("ingest     app") < out.index("ingest     cdr") < out.index("activity")
    assert "unavailable sources (scores degraded): app" in out
    assert main(["--env", "test", "report", "--ds", "2025-02-01", "--lakehouse-root", str(lakehouse)]) == 0
    assert "no pipeline runs recorded" in capsys.readouterr().out


def test_run_to_latest_runs_the_processed_days_only(tmp_path, monkeypatch, capsys):
    """A missed night (2025-03-02: never run, its extracts never ingested) in the range a rerun
    recomputes is not run: its stages would write the day from no input."""
    write_runs(
        tmp_path,
        [
            (date(2025, 3, 1), "activity", None, "succeeded", None, None, None, None),
            (date(2025, 3, 3), "activity", None, "succeeded", None, None, None, None),
            (date(2025, 3, 4), "ingest", "cdr", "succeeded", 1, 1, 0, 0),  # ingest ran ahead
        ],
    )
    ran = []
    monkeypatch.setattr("jobs.spark.build_session", lambda conf: None)
    monkeypatch.setattr("jobs.pipeline.build_lakehouse", lambda spark, config: None)
    monkeypatch.setattr("jobs.pipeline.run_stages", lambda ctx, stages: ran.append(ctx.ds) or {})
    argv = ["--env", "test", "run", "--from", "2025-03-01", "--to", "latest", "--stages", "activity"]
    assert main([*argv, "--lakehouse-root", str(tmp_path)]) == 0
    assert ran == [date(2025, 3, 1), date(2025, 3, 3)]
    assert "not processed, skipped: 2025-03-02" in capsys.readouterr().out
