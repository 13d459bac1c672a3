"""The analyst views of sql/: one file per view, registered by name next to the lakehouse tables.

A view file is one query with the run date as the `:ds` parameter. Registering binds it to one
run date, so `select * from mission_funnel` reads the funnel as of that date.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from jobs.lakehouse import Lakehouse

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
_HEADER = re.compile(r"^\s*--\s?(.*)$")
DS_PARAMETER = re.compile(r"(?<![:\w]):ds\b")  # the run date in a view or query


@dataclass(frozen=True)
class View:
    name: str
    path: Path
    description: str  # the header comment, grain included

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def grain(self) -> str:
        match = re.search(r"Grain:\s*(.+?)(?:\n(?!--)|$)", self.description, re.S)
        return " ".join(match.group(1).split()) if match else ""


def header(text: str) -> str:
    """The leading comment block of a SQL file, without the comment markers."""
    lines = []
    for line in text.splitlines():
        match = _HEADER.match(line)
        if not match:
            break
        lines.append(match.group(1))
    return "\n".join(lines)


def views(sql_dir: Path = SQL_DIR) -> dict[str, View]:
    return {p.stem: View(p.stem, p, header(p.read_text(encoding="utf-8"))) for p in sorted(Path(sql_dir).glob("*.sql"))}


def register_tables(lakehouse: Lakehouse) -> list[str]:
    """Every Delta table under the lakehouse root as a temporary view of the same name."""
    tables = lakehouse.tables()
    for table in tables:
        lakehouse.read(table).createOrReplaceTempView(table)
    return tables


def run_view(spark: SparkSession, view: View | str, ds: date) -> DataFrame:
    """A view's query (or any query text) with :ds bound; tables must be registered.

    The date is bound as a literal, not a query parameter: a temporary view keeps its query
    text, and Spark re-analyses it (without the parameter) when another view reads it."""
    text = view.text if isinstance(view, View) else view
    return spark.sql(DS_PARAMETER.sub(f"DATE'{date.fromisoformat(str(ds)).isoformat()}'", text))


def register_views(spark: SparkSession, ds: date, sql_dir: Path = SQL_DIR) -> dict[str, str]:
    """Every sql/ view bound to `ds` as a temporary view; returns the views that could not be
    registered (a table they read is absent) with the reason."""
    skipped = {}
    for name, view in views(sql_dir).items():
        try:
            run_view(spark, view, ds).createOrReplaceTempView(name)
        except AnalysisException as exc:
            spark.catalog.dropTempView(name)  # never leave a view bound to another date or lakehouse
            skipped[name] = str(exc).splitlines()[0]
            log.info("view %s not registered: %s", name, skipped[name])
    return skipped
