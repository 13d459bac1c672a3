"""The predictions stage: the data-science team's dated delivery -> ml_predictions, its
quarantine in events_rejected and its pipeline_runs row, accounted like an ingested source."""

from __future__ import annotations

import functools
import time
from typing import Any

from pyspark import StorageLevel

from jobs.context import RunContext
from jobs.frames import local_frame
from jobs.ingest import IngestContext, SourceResult, file_rejects
from jobs.predictions import (
    PredictionContract,
    classify_predictions,
    to_prediction_rejects,
    to_predictions,
)
from jobs.predictions import counts as prediction_counts
from jobs.run_log import record_runs
from jobs.sources import NoUsableFile, Source, conform, read_extract
from jobs.stages.ingest import known_subscribers, quarantine_unusable, source_failure
from jobs.tables import EVENTS_REJECTED, ML_PREDICTIONS, schema_of

__all__ = ["load_predictions", "run"]


def run(ctx: RunContext) -> dict[str, Any]:
    """The data-science team's dated delivery -> ml_predictions, quarantine and accounting.
    An operator without conf/ml_predictions.yaml has no such delivery: nothing to load."""
    contract = ctx.settings.predictions
    if contract is None:
        return {"status": "not_configured", "read": 0, "accepted": 0}
    source, ds = contract.source, ctx.ds
    if not contract.active:
        result = SourceResult(source.name, "inactive", message="source is not active")
    else:
        try:
            result = load_predictions(ctx, contract)
        except Exception as exc:  # an optional delivery never stops the night, as any optional source
            result = source_failure(source, exc, 0.0)
            if isinstance(exc, NoUsableFile):
                result = quarantine_unusable(result, functools.partial(write_unusable, ctx, source, exc))
    record_runs(ctx.lakehouse, "ingest", ds, [result])  # accounted like any ingested source
    return {"status": result.status, "read": result.rows_read, "accepted": result.rows_accepted}


def _reject_batch(ctx: RunContext) -> IngestContext:
    """The run date's batch as file_rejects names it (no key or country code needed)."""
    return IngestContext(ctx.ds, ctx.settings.ingest.timezone, "", "")


def write_unusable(ctx: RunContext, source: Source, unusable: NoUsableFile) -> None:
    """A delivery with no usable file: its files quarantined whole, and the predictions loaded
    on the run date before (an earlier run's) replaced by none."""
    ds = ctx.ds
    none = local_frame(ctx.spark, [], schema_of(ML_PREDICTIONS))
    ctx.lakehouse.write(none, ML_PREDICTIONS, partition_by=["ds"], replace_where={"loaded_ds": ds})
    rejects = file_rejects(ctx.spark, unusable.rejected, source, _reject_batch(ctx))
    replaced = {"ingest_date": ds, "source": source.name}
    ctx.lakehouse.write(rejects, EVENTS_REJECTED, partition_by=["ingest_date"], replace_where=replaced)


def load_predictions(ctx: RunContext, contract: PredictionContract) -> SourceResult:
    started = time.monotonic()
    source, ds, lakehouse = contract.source, ctx.ds, ctx.lakehouse
    extract = read_extract(ctx.spark, source, ds, ctx.raw_root)
    conformed = conform(extract.rows, source)
    file_lines = sum(r.lines for r in extract.rejected_files)  # files set aside whole: their lines are rejected
    known = known_subscribers(lakehouse, ds, ctx.settings.ingest.subscriber_lookback_days)
    classified = classify_predictions(
        conformed, source.columns, ds, contract.max_lateness_days, known, ctx.settings.offers.ids
    ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n = prediction_counts(classified)
        lakehouse.write(
            to_predictions(classified, ds), ML_PREDICTIONS, partition_by=["ds"], replace_where={"loaded_ds": ds}
        )
        rejects = to_prediction_rejects(classified, source.columns, source.name, ds)
        if extract.rejected_files:
            batch = _reject_batch(ctx)
            rejects = rejects.unionByName(file_rejects(ctx.spark, extract.rejected_files, source, batch))
        lakehouse.write(
            rejects,
            EVENTS_REJECTED,
            partition_by=["ingest_date"],
            replace_where={"ingest_date": ds, "source": source.name},
        )
    finally:
        classified.unpersist()
    return SourceResult(
        source.name,
        "succeeded",
        rows_read=n["read"] + file_lines,
        rows_accepted=n["accepted"],
        rows_rejected=n["rejected"] + file_lines,
        rows_duplicate=n["duplicate"],
        duration_s=round(time.monotonic() - started, 3),
    )
