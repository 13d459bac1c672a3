"""The raw quality suites, validated by the ingest stage over the extracts it read and cached:
the gate takes their outcomes instead of parsing every extract a second time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.config import load_config
from jobs.pipeline import RunContext, build_lakehouse
from jobs.quality.outcomes import QualityError
from jobs.stages import quality
from jobs.tables import QUALITY_RESULTS

pytestmark = pytest.mark.integration


def raw_results(lakehouse, ds) -> list:
    return (
        lakehouse.read(QUALITY_RESULTS)
        .filter((F.col("run_ds") == F.lit(ds)) & F.col("suite").startswith("raw."))
        .collect()
    )


def findings(rows) -> dict[tuple, tuple]:
    """What each raw expectation found; the sample of unexpected values aside (its rows' order is
    the order the extract is read in)."""
    return {
        (r.suite, r.expectation, r.column, r.scope): (r.severity, r.status, r.observed.split(", e.g. ")[0])
        for r in rows
    }


def due_suites(pipeline, ds) -> set[str]:
    ctx = RunContext(pipeline.spark, pipeline.config, pipeline.lakehouse, ds)
    return {f"raw.{s.name}" for s in ctx.sources() if s.active and s.is_due(ds)}


def test_ingest_validates_every_due_extract_and_the_gate_keeps_its_outcomes(pipeline):
    last = pipeline.last_day
    rows = raw_results(pipeline.lakehouse, last)
    expected = due_suites(pipeline, last)
    assert {r.suite for r in rows} == expected
    assert {json.loads(r.details)["validated_by"] for r in rows} == {"ingest"}
    assert {(r.expectation, r.status) for r in rows if r.suite == "raw.cdr"} >= {
        ("expect_table_row_count_to_be_between", "passed"),
        ("expect_column_values_to_not_be_null", "passed"),
    }
    unexpected = [json.loads(r.details)["result"].get("unexpected_count") or 0 for r in rows]
    assert sum(unexpected) > 0  # the generated extracts carry defects: the counts are real ones
    html = Path(pipeline.lakehouse.root, "_data_docs", last.isoformat(), "index.html").read_text()
    assert all(suite in html for suite in expected)  # in the date's Data Docs with the gate's suites


def test_outcomes_at_ingest_equal_a_validation_of_the_files(pipeline, tmp_path):
    copy = pipeline.copy(tmp_path)
    last = pipeline.last_day
    quality.run(RunContext(copy.spark, copy.config, copy.lakehouse, last), suites=["raw.*"])  # from the files
    from_files = raw_results(copy.lakehouse, last)
    assert not any("validated_by" in json.loads(r.details) for r in from_files)
    assert findings(from_files) == findings(raw_results(pipeline.lakehouse, last))


def test_the_gate_reads_no_extract_ingest_validated_unless_its_checks_changed(pipeline, tmp_path):
    copy = pipeline.copy(tmp_path, with_raw=True)
    last = pipeline.last_day
    shutil.rmtree(Path(copy.raw, "cdr", last.isoformat()))  # gone after ingest read it
    summary = quality.run(RunContext(copy.spark, copy.config, copy.lakehouse, last))
    assert summary["failed_critical"] == 0
    assert findings(raw_results(copy.lakehouse, last)) == findings(raw_results(pipeline.lakehouse, last))

    # other raw checks for cdr: its recorded outcomes no longer hold, so the gate looks for the extract
    overrides = {
        "raw.root": str(copy.raw),
        "lakehouse.root": str(tmp_path / "lakehouse"),
        "exports.root": str(tmp_path / "exports"),
        "quality.raw.sources": {"cdr": {"min_rows": {"value": 2, "severity": "critical"}}},
    }
    config = load_config(env="test", overrides=overrides, environ={})
    ctx = RunContext(copy.spark, config, build_lakehouse(copy.spark, config), last)
    with pytest.raises(QualityError, match=r"raw\.cdr expect_extract_to_exist: no extract at"):
        quality.run(ctx)
    kept = findings(r for r in raw_results(copy.lakehouse, last) if r.suite != "raw.cdr")
    assert kept == findings(r for r in raw_results(pipeline.lakehouse, last) if r.suite != "raw.cdr")
