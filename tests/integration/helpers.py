from __future__ import annotations

from pyspark.sql import functions as F

from jobs.lakehouse import Lakehouse


def table_content(lakehouse: Lakehouse, table: str, **read_options) -> list[str]:
    """Every row as canonical JSON (columns sorted), sorted: equal lists mean equal tables."""
    df = lakehouse.read(table, **read_options)
    return sorted(r[0] for r in df.select(F.to_json(F.struct(*sorted(df.columns)))).collect())
