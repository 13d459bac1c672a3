"""`pipeline_runs`, the run log: one row per stage (and per source for ingest) and run date.

Its one owner. Written with Spark by the runners (`record_runs` for ingest's sources,
`record_stages` for the other stages, in one commit per run); read back by ingest's shrink guard
(`previous_rows_read`) and by a stage rerunning a date (`previous_summary`). Read without Spark
for the CLI's `report` and `run --to latest` and the DAG's plain-Python tasks
(`latest_processed_date`, `run_report`, `format_report`), so a no-op costs nothing on a cluster.
A failure is stored as `describe_failure` words it: a few lines, phone-number-like digits masked,
never a raw record.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from pyspark.sql import functions as F

from jobs.config import Config
from jobs.context import lakehouse_root
from jobs.frames import local_frame
from jobs.lakehouse import Lakehouse
from jobs.privacy import mask_text
from jobs.sources import SourceError
from jobs.storage import filesystem
from jobs.tables import PIPELINE_RUNS, schema_of

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


UNAVAILABLE = ("failed", "missing", "degraded", "held")  # ingest statuses that leave a source without data
MESSAGE_CHARS = 2000  # a stored message is for a person to read; stack traces stay in the job's log


@dataclass(frozen=True)
class SourceResult:
    """One source's ingest for a run date: its pipeline_runs row."""

    source: str
    status: str
    rows_read: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rows_duplicate: int = 0
    events_written: int = 0
    duration_s: float = 0.0  # for sources written together, includes their whole combined write
    message: str = ""
    read_s: float = 0.0  # reading, classifying and counting this source's extract alone (not stored)

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_accepted + self.rows_rejected + self.rows_duplicate


@dataclass(frozen=True)
class StageResult:
    """One stage's run for a run date (stages after ingest): its pipeline_runs row."""

    stage: str
    status: str
    duration_s: float
    message: str


# -- written with Spark -------------------------------------------------------------------------


def record_runs(lakehouse: Lakehouse, stage: str, ds: date, results: Sequence[SourceResult]) -> None:
    """Replace this stage's rows for `ds` of the given sources, keeping rows of sources not rerun."""
    rows = [
        (
            ds,
            stage,
            r.source,
            r.status,
            r.rows_read,
            r.rows_accepted,
            r.rows_rejected,
            r.rows_duplicate,
            r.events_written,
            r.duration_s,
            r.message[:MESSAGE_CHARS],
        )
        for r in results
    ]
    if not rows:
        return
    lakehouse.write(
        local_frame(lakehouse.spark, rows, schema_of(PIPELINE_RUNS)),
        PIPELINE_RUNS,
        partition_by=["run_ds"],
        replace_where={"run_ds": ds, "stage": stage, "source": [r.source for r in results]},
    )


def record_stages(lakehouse: Lakehouse, ds: date, results: Sequence[StageResult]) -> None:
    """Replace the given stages' rows for `ds`, in one commit."""
    if not results:
        return
    rows = [
        (ds, r.stage, None, r.status, None, None, None, None, None, round(r.duration_s, 3), r.message[:MESSAGE_CHARS])
        for r in results
    ]
    stages = [r.stage for r in results]
    with lakehouse.committing(ds=ds.isoformat(), stage=",".join(stages)):
        lakehouse.write(
            local_frame(lakehouse.spark, rows, schema_of(PIPELINE_RUNS)).coalesce(1),
            PIPELINE_RUNS,
            partition_by=["run_ds"],
            replace_where={"run_ds": ds, "stage": stages},
        )


def previous_rows_read(lakehouse: Lakehouse, ds: date) -> dict[str, int]:
    """Rows read by each source's latest successful ingest before `ds`, in one small query
    (pipeline_runs holds a row per source and day)."""
    if not lakehouse.exists(PIPELINE_RUNS):
        return {}
    rows = (
        lakehouse.read(PIPELINE_RUNS, partitions=[("run_ds", "<", ds)])
        .filter((F.col("stage") == INGEST) & (F.col("status") == "succeeded") & F.col("source").isNotNull())
        .groupBy("source")
        .agg(F.max_by("rows_read", "run_ds").alias("rows_read"))
        .collect()  # one row per configured source
    )
    return {r.source: int(r.rows_read or 0) for r in rows}


def later_days_ran(lakehouse: Lakehouse, ds: date) -> bool:
    """Whether any run date after `ds` is recorded (pipeline_runs partitions, from the Delta log)."""
    return any(d > ds.isoformat() for d in lakehouse.partition_values(PIPELINE_RUNS, "run_ds"))


def previous_summary(lakehouse: Lakehouse, stage: str, ds: date) -> dict[str, Any] | None:
    """The summary (JSON message) the date's last run of `stage` recorded: {} when no run of it is
    recorded, None when the last one failed (what it wrote is unknown)."""
    if not lakehouse.exists(PIPELINE_RUNS):
        return {}
    rows = (
        lakehouse.read(PIPELINE_RUNS, partitions=[("run_ds", "=", ds)])
        .filter((F.col("stage") == stage) & F.col("source").isNull())
        .select("status", "message")
        .collect()  # one row per stage and run date
    )
    if not rows:
        return {}
    try:
        summary = json.loads(rows[0].message) if rows[0].status == "succeeded" else None
    except (TypeError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def describe_failure(exc: BaseException) -> str:
    """A stored/logged description of why a source or stage failed: the first lines of the
    error with phone-number-like digit runs masked, never a raw record."""
    root = _java_root_cause(exc)
    if isinstance(exc, SourceError):
        text = str(exc)
    elif root is not None:  # a JVM error: its root cause says what went wrong, not the Py4J call
        text = root
    else:
        text = f"{type(exc).__name__}: {exc}"
    first = "\n".join(text.strip().splitlines()[:3])
    return mask_text(first)[:1000]


def _java_root_cause(exc: BaseException) -> str | None:
    """`Class: message` of the innermost cause of a Py4J Java error, None for other errors."""
    cause = getattr(exc, "java_exception", None)
    if cause is None:
        return None
    try:
        while cause.getCause() is not None:
            cause = cause.getCause()
        return str(cause.toString())
    except Exception:  # the gateway is gone: fall back to the Python text
        return None


# -- read without Spark -------------------------------------------------------------------------


@dataclass(frozen=True)
class TableLocation:
    uri: str
    storage_options: dict[str, str]

    def files(self) -> list[dict[str, Any]]:
        """The table's data files from the Delta log: path, partition values, row statistics."""
        try:  # not DeltaTable.is_deltatable: on an S3 endpoint its listing timed out where this one answers
            table = DeltaTable(self.uri, storage_options=self.storage_options or None)
        except TableNotFoundError:
            return []
        return pa.table(table.get_add_actions(flatten=True)).to_pylist()

    def read(self, path: str, columns: list[str]) -> list[dict[str, Any]]:
        """One data file's rows. Read with pyarrow directly: scanning through deltalake's
        filesystem handler can abort the process at exit."""
        fs, file = filesystem(f"{self.uri}/{unquote(path)}", self.storage_options)
        return pq.read_table(file, filesystem=fs, columns=columns, use_threads=False).to_pylist()


def table_location(config: Config, table: str) -> TableLocation:
    return TableLocation(
        f"{lakehouse_root(config).rstrip('/')}/{table}", dict(config.get("lakehouse.storage_options") or {})
    )


def processed_dates(config: Config) -> list[date]:
    """The run dates in pipeline_runs, in order, counting stages after ingest when any recorded
    one: ingest may run ahead of the rest of the pipeline, and it is not what later days build on.
    Read from the files' statistics: a file whose stage column is not all `ingest` (or has no
    statistics) holds a later stage."""
    files = table_location(config, PIPELINE_RUNS).files()
    later = [f["partition.run_ds"] for f in files if (f.get("min.stage"), f.get("max.stage")) != (INGEST, INGEST)]
    return sorted(set(later or [f["partition.run_ds"] for f in files]))


def latest_processed_date(config: Config) -> date | None:
    """The newest of the `processed_dates`."""
    return max(processed_dates(config), default=None)


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
