"""The nightly benchmark end to end at a tiny size, twice: every stage timed, the DuckDB reference agrees.

Timing is never asserted; the figures only have to be there.
"""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest
from deltalake import DeltaTable

from bench.bench_night import main
from jobs.pipeline import STAGES

pytestmark = pytest.mark.integration

NIGHT = ["ingest", "activity", "scores"]  # the referenced stages


def test_bench_night_writes_every_figure_and_agrees_with_the_reference(spark, tmp_path):
    results = tmp_path / "results"
    argv = ["--subscribers", "300", "--history-days", "2", "--real-history-days", "0", "--env", "test"]
    argv += ["--stages", ",".join(NIGHT), "--sources", "crm_subscribers,cdr"]
    argv += ["--workdir", str(tmp_path / "work"), "--results-dir", str(results), "--repeat", "2", "--keep"]

    assert main(argv, spark=spark) == 0

    (path,) = results.glob("*.json")
    report = json.loads(path.read_text())
    (size,) = report["sizes"]
    assert size["subscribers"] == 300 and size["failure"] is None
    assert report["settings"]["repeat"] == 2 and size["repeats"] == 2
    assert len(size["night_seconds_runs"]) == 2
    assert size["night_seconds"] == pytest.approx(sum(size["night_seconds_runs"]) / 2, abs=1e-3)
    stages = {entry["stage"]: entry for entry in size["stages"]}
    assert [s for s in stages if ":" not in s] == [s for s in STAGES if s in NIGHT]
    assert "ingest:cdr" in stages
    for entry in stages.values():
        assert entry["seconds"] > 0, entry
        assert len(entry["seconds_runs"]) == 2 and entry["seconds"] == pytest.approx(
            sum(entry["seconds_runs"]) / 2, abs=1e-3
        ), entry
        assert entry["rows_in"] > 0 and entry["rows_out"] > 0, entry
    for name in ("ingest:cdr", "activity", "scores"):
        entry = stages[name]
        assert entry["agree"] is True, size["references"]
        assert entry["reference_seconds"] > 0 and entry["ratio"] > 0
        assert len(entry["reference_seconds_runs"]) == 2, entry
    # the CDR reference normalises into memory and writes nothing: it is compared with the
    # source's normalisation alone, not with the write the night's sources share
    cdr = stages["ingest:cdr"]
    assert all(0 < read < whole for read, whole in zip(cdr["read_seconds_runs"], cdr["seconds_runs"], strict=True))
    assert cdr["ratio"] == round(cdr["read_seconds"] / cdr["reference_seconds"], 2)
    assert stages["scores"]["ratio"] == round(stages["scores"]["seconds"] / stages["scores"]["reference_seconds"], 2)
    assert stages["ingest"]["driver_peak_rss_mb"] > 0 and stages["ingest"]["jvm_peak_rss_mb"] > 0
    # every stage after ingest reads and writes Delta tables: at least one Spark job each
    assert all(entry["spark_jobs"] >= 1 for name, entry in stages.items() if ":" not in name), stages
    assert size["references"]["cdr_ingest"]["details"]["events_only_in_spark"] == 0
    # each run starts from the history's lakehouse: the second wrote as many rows as the first
    work = tmp_path / "work" / "n300"
    assert not (work / "lakehouse_history").exists()
    first, second = (DeltaTable(str(work / lake / "behavior_scores")) for lake in ("lakehouse", "lakehouse_repeat2"))
    assert second.version() == first.version()
    assert second.to_pyarrow_table().num_rows == first.to_pyarrow_table().num_rows > 0
    assert report["scaling"] == [{"subscribers": 300, "night_seconds": size["night_seconds"]}]
    # the versions behind the figures: the JVM that ran them, Spark's and Delta's
    java = spark.sparkContext._jvm.java.lang.System
    assert report["machine"]["java"] == {
        "version": java.getProperty("java.version"),
        "vendor": java.getProperty("java.vendor"),
        "home": java.getProperty("java.home"),
    }
    assert (report["machine"]["spark"], report["machine"]["delta_spark"]) == (spark.version, version("delta-spark"))
