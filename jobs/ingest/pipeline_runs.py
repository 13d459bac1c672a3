"""Bookkeeping in `pipeline_runs`: recording a stage's per-source results for a run date
(`record_runs`), reading back what each source's last successful ingest read (`previous_rows_read`,
for the shrink guard), and the masked text stored when a source or stage fails (`describe_failure`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from pyspark.sql import functions as F

from jobs.ingest.context import SourceResult
from jobs.lakehouse import Lakehouse
from jobs.privacy import mask_text
from jobs.sources import SourceError
from jobs.tables import PIPELINE_RUNS, schema_of


def previous_rows_read(lakehouse: Lakehouse, ds: date) -> dict[str, int]:
    """Rows read by each source's latest successful ingest before `ds`, in one small query
    (pipeline_runs holds a row per source and day)."""
    if not lakehouse.exists(PIPELINE_RUNS):
        return {}
    rows = (
        lakehouse.read(PIPELINE_RUNS, partitions=[("run_ds", "<", ds)])
        .filter((F.col("stage") == "ingest") & (F.col("status") == "succeeded") & F.col("source").isNotNull())
        .groupBy("source")
        .agg(F.max_by("rows_read", "run_ds").alias("rows_read"))
        .collect()  # one row per configured source
    )
    return {r.source: int(r.rows_read or 0) for r in rows}


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


def record_runs(lakehouse: Lakehouse, stage: str, ds: date, results: Sequence[SourceResult]) -> None:
    """Replace this stage's rows for `ds` in pipeline_runs, keeping rows of sources not rerun."""
    schema = schema_of(PIPELINE_RUNS)
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
            r.message[:2000],
        )
        for r in results
    ]
    if not rows:
        return
    lakehouse.write(
        lakehouse.spark.createDataFrame(rows, schema),
        PIPELINE_RUNS,
        partition_by=["run_ds"],
        replace_where={"run_ds": ds, "stage": stage, "source": [r.source for r in results]},
    )
