"""No raw MSISDN anywhere a night leaves readable results, over a generated operator whose
extracts carry the generator's defects (malformed and foreign numbers included): every
lakehouse table (quarantined records and `pipeline_runs.message` too), the quality results,
the Data Docs pages and the nightly report page. MSISDNs leave only through a consumer's
export that asks for them (conf/exports.yaml), which lives outside the lakehouse."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.analytics.report import write_report
from jobs.tables import TABLES

pytestmark = pytest.mark.integration

SEPARATORS = r"(?<=[0-9])[\s\-./()]{1,3}(?=[0-9])"  # 06 12-34.56 (78) reads as 0612345678


def msisdn_forms(pipeline) -> tuple[set[str], int]:
    """Every way a subscriber's number can be written in digits (E.164, international with 00,
    national with its trunk 0, the bare national number), and how many subscribers."""
    country = str(pipeline.config.require("operator.country_code"))
    forms = set()
    with (pipeline.raw / "_truth" / "personas.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        e164 = row["msisdn"].lstrip("+")
        national = e164.removeprefix(country)
        forms |= {e164, f"00{e164}", f"0{national}", national}
    return forms, len(rows)


def digit_runs(df: DataFrame) -> DataFrame:
    text = F.regexp_replace(F.to_json(F.struct(*[F.col(c) for c in df.columns])), SEPARATORS, "")
    return df.select(F.explode(F.regexp_extract_all(text, F.lit("[0-9]+"), 0)).alias("run"))


def test_no_msisdn_in_any_table_quality_result_data_docs_or_report(pipeline, tmp_path):
    forms, subscribers = msisdn_forms(pipeline)
    assert len(forms) == 4 * subscribers > 0
    known = pipeline.spark.createDataFrame([(f,) for f in sorted(forms)], "run string")
    lakehouse = pipeline.lakehouse
    scanned = [t for t in TABLES if lakehouse.exists(t)]
    assert {"events_rejected", "pipeline_runs", "quality_results", "subscriber_state"} <= set(scanned)
    leaks = {t: digit_runs(lakehouse.read(t)).join(known, "run").distinct().count() for t in scanned}
    assert leaks == dict.fromkeys(scanned, 0)

    docs = sorted(Path(lakehouse.root, "_data_docs").rglob("*.html"))
    assert len(docs) >= len(pipeline.days)  # an index and validation pages per run date
    pages = [*docs, write_report(pipeline.config, pipeline.last_day, tmp_path / "report.html", spark=pipeline.spark)]
    found = {
        str(p): sorted(forms & set(re.findall("[0-9]+", re.sub(SEPARATORS, "", p.read_text(encoding="utf-8")))))
        for p in pages
    }
    assert {p: runs for p, runs in found.items() if runs} == {}
