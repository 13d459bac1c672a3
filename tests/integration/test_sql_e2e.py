"""Every analyst query in sql/ runs against the lakehouse the pipeline wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


@pytest.mark.parametrize("path", sorted(SQL_DIR.glob("*.sql")), ids=lambda p: p.name)
def test_query_returns_rows(pipeline, path):
    for table in pipeline.lakehouse.tables():
        pipeline.lakehouse.read(table).createOrReplaceTempView(table)
    rows = pipeline.spark.sql(path.read_text(), args={"ds": pipeline.last_day}).collect()  # small, aggregated
    assert rows, path.name
