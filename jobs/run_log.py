"""`pipeline_runs` read without Spark: the latest processed date from the Delta log's file
statistics, and one run date's rows (a few small files) with their report. The CLI's `report`
and `run --to latest`, and the DAG's plain-Python tasks use it, so a no-op costs nothing on a
cluster. The rows are written by the pipeline (`jobs.pipeline.record_stages`, and ingest's one
row per source)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable

from jobs.config import Config
from jobs.context import lakehouse_root
from jobs.tables import PIPELINE_RUNS

INGEST = "ingest"
REPORT_COLUMNS = (
    "stage",
    "source",
    "status",
    "rows_read",
    "rows_accepted",
    "rows_rejected",
    "rows_duplicate",
    "events_written",
    "duration_s",
    "message",
)


@dataclass(frozen=True)
class TableLocation:
    uri: str
    storage_options: dict[str, str]

    def files(self) -> list[dict[str, Any]]:
        """The table's data files from the Delta log: path, partition values, row statistics."""
        if not DeltaTable.is_deltatable(self.uri, storage_options=self.storage_options):
            return []
        table = DeltaTable(self.uri, storage_options=self.storage_options)
        return pa.table(table.get_add_actions(flatten=True)).to_pylist()

    def read(self, path: str, columns: list[str]) -> list[dict[str, Any]]:
        """One data file's rows. Read with pyarrow directly: scanning through deltalake's
        filesystem handler can abort the process at exit."""
        fs, file = pafs.FileSystem.from_uri(f"{self.uri}/{unquote(path)}")
        return pq.read_table(file, filesystem=fs, columns=columns, use_threads=False).to_pylist()


def table_location(config: Config, table: str) -> TableLocation:
    return TableLocation(
        f"{lakehouse_root(config).rstrip('/')}/{table}", dict(config.get("lakehouse.storage_options") or {})
    )


def latest_processed_date(config: Config) -> date | None:
    """The newest run date in pipeline_runs, counting stages after ingest when any recorded one:
    ingest may run ahead of the rest of the pipeline, and it is not what later days build on.
    Read from the files' statistics: a file whose stage column is not all `ingest` (or has no
    statistics) holds a later stage."""
    files = table_location(config, PIPELINE_RUNS).files()
    later = [f["partition.run_ds"] for f in files if (f.get("min.stage"), f.get("max.stage")) != (INGEST, INGEST)]
    return max(later or [f["partition.run_ds"] for f in files], default=None)


def run_report(config: Config, ds: date) -> list[dict[str, Any]]:
    """pipeline_runs rows of one run date: ingest first, then the stages after it by name."""
    location = table_location(config, PIPELINE_RUNS)
    rows = [
        row
        for f in location.files()
        if f["partition.run_ds"] == ds
        for row in location.read(f["path"], list(REPORT_COLUMNS))
    ]
    return sorted(rows, key=lambda r: (r["stage"] != INGEST, r["stage"], r["source"] or ""))


def format_report(ds: date, rows: list[dict[str, Any]], latest: date | None) -> str:
    if not rows:
        return f"{ds}: no pipeline runs recorded (latest processed date: {latest})"
    header = f"  {'stage':<10} {'source':<18} {'status':<10} {'read':>9} {'accepted':>9} {'rejected':>9} {'dupes':>7}"
    lines = [f"{ds}: {len(rows)} pipeline run(s) recorded (latest processed date: {latest})", header]
    for r in rows:
        counts = [r[c] if r[c] is not None else "-" for c in ("rows_read", "rows_accepted", "rows_rejected")]
        note = f"  {r['message']}" if r["status"] not in ("succeeded",) and r["message"] else ""
        lines.append(
            f"  {r['stage']:<10} {r['source'] or '-':<18} {r['status']:<10} {counts[0]:>9} {counts[1]:>9} "
            f"{counts[2]:>9} {r['rows_duplicate'] if r['rows_duplicate'] is not None else '-':>7}{note}"
        )
    unavailable = sorted(r["source"] for r in rows if r["stage"] == INGEST and r["status"] in ("failed", "missing"))
    if unavailable:
        lines.append(f"  unavailable sources (scores degraded): {', '.join(unavailable)}")
    return "\n".join(lines)
