"""The sql/ views run in DuckDB over the same Delta tables (read through deltalake, no DuckDB
extension needed): the portability check of the analyst SQL."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
from deltalake import DeltaTable

PARAMETER = re.compile(r"(?<![:\w]):ds\b")


def connect(root: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with every Delta table under `root` registered by name."""
    con = duckdb.connect()
    for path in sorted(Path(root).iterdir()):
        if DeltaTable.is_deltatable(str(path)):
            con.register(path.name, DeltaTable(str(path)).to_pyarrow_dataset())
    return con


def query(con: duckdb.DuckDBPyConnection, text: str, ds: date) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run a view's text with :ds bound (DuckDB spells named parameters $ds)."""
    text = PARAMETER.sub("$ds", text)
    result = con.execute(text, {"ds": ds}) if "$ds" in text else con.execute(text)
    return [d[0] for d in result.description], result.fetchall()
