"""The ingest stage: raw extracts of every due source -> events, events_rejected,
subscriber_profile, with one pipeline_runs row per source.

`run_ingest` reads each due source's extract (`prepare_source`: read, classify, cache, account,
apply the shrink guard, drop records an earlier run already wrote), commits the CRM snapshot
first (`write_profile`), writes the events and quarantine rows of every source of a run together
(`write_sources`: one commit per table), falls back to one write per source when that fails, and
records pipeline_runs. The transformations are jobs.ingest's.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.context import PipelineError, RunContext
from jobs.frames import local_frame
from jobs.ingest.classify import classify, with_prior_duplicates
from jobs.ingest.context import ACCEPTED, DUPLICATE, REJECTED, IngestContext, SourceResult
from jobs.ingest.outputs import accounting, file_rejects, to_events, to_profile, to_rejects
from jobs.ingest.shrink_guard import ExtractShrank, ShrinkGuard
from jobs.lakehouse import Lakehouse
from jobs.privacy import mask_text
from jobs.profiles import profile_as_of
from jobs.run_log import describe_failure, later_days_ran, previous_rows_read, record_runs
from jobs.sources import Extract, NoUsableFile, Source, SourceError, conform, read_extract
from jobs.spark import JIT_SIZED_CODE, scoped_sql_conf
from jobs.tables import EVENTS, EVENTS_REJECTED, SUBSCRIBER_PROFILE, schema_of

__all__ = ["known_subscribers", "quarantine_unusable", "run", "run_ingest", "source_failure"]

log = logging.getLogger(__name__)


def known_subscribers(lakehouse: Lakehouse, ds: date, lookback_days: int) -> DataFrame:
    """Subscribers of the newest CRM snapshot within [ds - lookback, ds]."""
    profile = profile_as_of(lakehouse, ds, lookback_days)
    if profile is None:
        raise SourceError(
            f"no CRM snapshot between {ds - timedelta(days=lookback_days)} and {ds}: cannot check subscribers"
        )
    return profile.select("subscriber_id")


def prior_record_keys(
    lakehouse: Lakehouse, source: Source, ctx: IngestContext, late_dates: Sequence[date], rerun: bool = False
) -> DataFrame | None:
    """Record keys of `source` that other runs already wrote on the given (late) event dates:
    earlier runs, and on a rerun (`rerun`: a later day has run since) also later runs, on the
    run date itself too: a record the day's first run missed (its file quarantined, the
    extract held back) may have reached the events with a later day's extract."""
    dates = sorted({*late_dates, *([ctx.ds] if rerun else [])})
    if not dates or not lakehouse.exists(EVENTS):
        return None
    events = lakehouse.read(EVENTS, partitions=[("event_date", "in", dates)])
    return events.filter((F.col("source") == source.name) & (F.col("ingest_date") != F.lit(ctx.ds))).select(
        "record_key", "ingest_date"
    )


@dataclass
class PreparedSource:
    """One source read, classified (cached) and accounted for the run date; nothing written yet."""

    source: Source
    extract: Extract
    classified: DataFrame
    counts: dict[str, Any]
    seconds: float
    cached: list[DataFrame]
    profile_seconds: float = 0.0  # the snapshot's own commit, before the other sources are read

    @property
    def seconds_before_write(self) -> float:
        """Reading and accounting, plus the snapshot's own commit for a snapshot source."""
        return self.seconds + self.profile_seconds

    @property
    def file_lines(self) -> int:
        return sum(r.lines for r in self.extract.rejected_files)

    def result(self, seconds: float) -> SourceResult:
        message = ""
        if self.extract.rejected_files:
            shown = "; ".join(f"{r.path.rsplit('/', 1)[-1]}: {r.reason}" for r in self.extract.rejected_files[:10])
            total = len(self.extract.files)
            message = mask_text(f"{len(self.extract.rejected_files)} of {total} file(s) quarantined: {shown}")
        return SourceResult(
            source=self.source.name,
            status="succeeded",
            rows_read=self.counts["read"] + self.file_lines,
            rows_accepted=self.counts[ACCEPTED],
            rows_rejected=self.counts[REJECTED] + self.file_lines,
            rows_duplicate=self.counts[DUPLICATE],
            events_written=self.counts["events"],
            duration_s=round(seconds, 3),
            message=message,
            read_s=round(self.seconds, 3),
        )

    def release(self) -> None:
        for df in self.cached:
            df.unpersist()


def prepare_source(
    lakehouse: Lakehouse,
    source: Source,
    ctx: IngestContext,
    raw_root: str,
    known: DataFrame | None,
    guard: ShrinkGuard,
    previous_rows: int | None,
    rerun: bool = False,
) -> PreparedSource:
    """Read and classify one source, count its rows (one job) and apply the shrink guard;
    records other runs already wrote become duplicates (`prior_record_keys`)."""
    started = time.monotonic()
    extract = read_extract(lakehouse.spark, source, ctx.ds, raw_root)
    conformed = conform(extract.rows, source)
    classified = classify(conformed, source, ctx, known if source.check_known_subscriber else None)
    classified = classified.persist(StorageLevel.MEMORY_AND_DISK)
    prepared = PreparedSource(source, extract, classified, {}, 0.0, [classified])
    try:
        prepared.counts = accounting(classified, ctx.ds)
        rows_read = prepared.counts["read"] + prepared.file_lines
        shrunk = guard.problem(rows_read, previous_rows)
        if shrunk is not None:
            result = dataclasses.replace(prepared.result(time.monotonic() - started), status="failed", message="")
            raise ExtractShrank(f"source {source.name}: {shrunk}", guard.action, result)
        prior = prior_record_keys(lakehouse, source, ctx, prepared.counts["late_dates"], rerun)
        if prior is not None:  # late records (or a rerun's): drop those another run already wrote
            prepared.classified = with_prior_duplicates(classified, prior).persist(StorageLevel.MEMORY_AND_DISK)
            prepared.cached.append(prepared.classified)
            prepared.counts = accounting(prepared.classified)
    except BaseException:
        prepared.release()
        raise
    prepared.seconds = time.monotonic() - started
    return prepared


def write_profile(lakehouse: Lakehouse, snapshot: PreparedSource, ctx: IngestContext) -> float:
    """The run date's subscriber_profile from a snapshot source, replacing what it held. Returns
    the seconds."""
    started = time.monotonic()
    lakehouse.write(
        to_profile(snapshot.classified, snapshot.source, ctx),
        SUBSCRIBER_PROFILE,
        partition_by=["snapshot_date"],
        replace_where={"snapshot_date": ctx.ds},
    )
    return time.monotonic() - started


def write_sources(lakehouse: Lakehouse, batch: Sequence[PreparedSource], ctx: IngestContext) -> float:
    """Events and quarantine rows of every source in `batch`: one commit per table, replacing
    exactly what these sources wrote for the run date before. Returns the seconds."""
    started = time.monotonic()
    names = [p.source.name for p in batch]
    lakehouse.write(
        _union([to_events(p.classified, p.source, ctx) for p in batch]),
        EVENTS,
        partition_by=["event_date"],
        replace_where={"ingest_date": ctx.ds, "source": names},
    )
    rejects = []
    for p in batch:
        rejects.append(to_rejects(p.classified, p.source, ctx))
        if p.extract.rejected_files:
            rejects.append(file_rejects(lakehouse.spark, p.extract.rejected_files, p.source, ctx))
    lakehouse.write(
        _union(rejects),
        EVENTS_REJECTED,
        partition_by=["ingest_date"],
        replace_where={"ingest_date": ctx.ds, "source": names},
    )
    return time.monotonic() - started


def write_unusable(lakehouse: Lakehouse, source: Source, unusable: NoUsableFile, ctx: IngestContext) -> None:
    """An extract with no usable file: its files quarantined whole, and what the source wrote
    for the run date before (an earlier run's events, its snapshot) replaced by nothing, as a
    rerun replaces it with the usable rows of its extract."""
    spark = lakehouse.spark
    if source.profile is not None:
        none = local_frame(spark, [], schema_of(SUBSCRIBER_PROFILE))
        lakehouse.write(
            none, SUBSCRIBER_PROFILE, partition_by=["snapshot_date"], replace_where={"snapshot_date": ctx.ds}
        )
    replaced = {"ingest_date": ctx.ds, "source": [source.name]}
    lakehouse.write(
        local_frame(spark, [], schema_of(EVENTS)), EVENTS, partition_by=["event_date"], replace_where=replaced
    )
    rejects = file_rejects(spark, unusable.rejected, source, ctx)
    lakehouse.write(rejects, EVENTS_REJECTED, partition_by=["ingest_date"], replace_where=replaced)


def _union(frames: Sequence[DataFrame]) -> DataFrame:
    return functools.reduce(DataFrame.unionByName, frames)


def run_ingest(
    lakehouse: Lakehouse,
    sources: Sequence[Source],
    ctx: IngestContext,
    raw_root: str,
    subscriber_lookback_days: int,
    guard: ShrinkGuard | None = None,
) -> list[SourceResult]:
    """Ingest every due, active source and record pipeline_runs.

    The CRM snapshot source goes first and its subscriber_profile rows are committed at once
    (the others check subscribers against today's snapshot); then every source is read and
    accounted one by one, and the events and quarantine rows of all of them are written
    together: one commit per table. Should that combined write fail, each source is written
    alone, so a failure stays with the source that caused it.

    The sources come compiled and checked (jobs.settings: a configuration problem stops the run
    before any stage). Whatever goes wrong with one source (its files, Spark) is recorded for
    that source and the run goes on: `failed` for a mandatory source (the caller fails the run),
    `degraded` for an optional one, `missing` when an optional extract is absent, `held` when a
    shrunken extract was held back. Every configured source gets a row.
    """
    guard = guard or ShrinkGuard()
    results: dict[str, SourceResult] = {}
    known: DataFrame | None = None
    prepared: list[PreparedSource] = []
    ordered = sorted(sources, key=lambda s: (s.profile is None, s.name))
    try:
        previous = previous_rows_read(lakehouse, ctx.ds)
        rerun = later_days_ran(lakehouse, ctx.ds)
        for source in ordered:
            if not source.active:
                results[source.name] = SourceResult(source.name, "inactive", message="source is not active")
                continue
            if not source.is_due(ctx.ds):
                message = f"{source.sync_frequency} source, not due on {ctx.ds}"
                results[source.name] = SourceResult(source.name, "not_due", message=message)
                continue
            started = time.monotonic()
            try:
                if source.check_known_subscriber and known is None:
                    known = known_subscribers(lakehouse, ctx.ds, subscriber_lookback_days).cache()
                ready = prepare_source(lakehouse, source, ctx, raw_root, known, guard, previous.get(source.name), rerun)
                if source.profile is not None:  # the snapshot now: the next sources check against it
                    try:
                        ready.profile_seconds = write_profile(lakehouse, ready, ctx)
                    except BaseException:
                        ready.release()
                        raise
                prepared.append(ready)  # events and quarantine rows: with the other sources'
            except Exception as exc:  # one source never stops the others
                results[source.name] = source_failure(source, exc, time.monotonic() - started)
                if isinstance(exc, NoUsableFile):
                    write = functools.partial(write_unusable, lakehouse, source, exc, ctx)
                    results[source.name] = quarantine_unusable(results[source.name], write)
        results.update(_write_batch(lakehouse, prepared, ctx))
    finally:
        for ready in prepared:
            ready.release()
        if known is not None:
            known.unpersist()
        in_order = [results[s.name] for s in ordered if s.name in results]
        for result in in_order:
            log.info("ingest %s %s: %s", ctx.ds, result.source, result)
        record_runs(lakehouse, "ingest", ctx.ds, in_order)
    return in_order


def _write_batch(lakehouse: Lakehouse, batch: Sequence[PreparedSource], ctx: IngestContext) -> dict[str, SourceResult]:
    if not batch:
        return {}
    try:
        seconds = write_sources(lakehouse, batch, ctx)
        return {p.source.name: p.result(p.seconds_before_write + seconds) for p in batch}
    except Exception as exc:
        log.warning("combined write of %d sources failed (%s): writing each source alone", len(batch), exc)
    results = {}
    for p in batch:
        try:
            results[p.source.name] = p.result(p.seconds_before_write + write_sources(lakehouse, [p], ctx))
        except Exception as exc:
            results[p.source.name] = source_failure(p.source, exc, p.seconds_before_write)
    return results


def quarantine_unusable(result: SourceResult, write: Callable[[], Any]) -> SourceResult:
    """The failed `result` of an extract with no usable file, once `write` has quarantined its
    files; should that write fail too, its reason is added to the result's message."""
    try:
        write()
    except Exception as exc:
        log.error("source %s: quarantining its unusable files failed: %s", result.source, describe_failure(exc))
        message = f"{result.message}; quarantining the files failed: {describe_failure(exc)}"
        return dataclasses.replace(result, message=message[:1000])
    return result


def source_failure(source: Source, exc: Exception, seconds: float) -> SourceResult:
    """A source's failure as its result: `failed` when mandatory, else `missing` (no extract) or
    `degraded`; a shrunk extract `held` when its policy says so. The lines of an extract with
    no usable file are read and rejected: its files are quarantined whole (`write_unusable`)."""
    if isinstance(exc, ExtractShrank):
        status = "held" if exc.action == "hold" else ("failed" if source.mandatory else "degraded")
        result = dataclasses.replace(exc.result, status=status, message=describe_failure(exc))
    else:
        absent = isinstance(exc, SourceError) and str(exc).startswith(f"source {source.name}: no extract for")
        status = "failed" if source.mandatory else ("missing" if absent else "degraded")
        lines = exc.lines if isinstance(exc, NoUsableFile) else 0
        result = SourceResult(
            source.name,
            status,
            rows_read=lines,
            rows_rejected=lines,
            duration_s=round(seconds, 3),
            message=describe_failure(exc),
        )
    log.error("source %s: %s", source.name, result.message)
    return result


def run(ctx: RunContext) -> list[SourceResult]:
    """Raw extracts of every due source -> events, events_rejected, subscriber_profile."""
    settings = ctx.settings.ingest
    ingest_ctx = IngestContext(
        ds=ctx.ds,
        timezone=settings.timezone,
        country_code=settings.country_code,
        key=ctx.config.require("privacy.pseudonymisation_key"),  # a secret: never kept in the settings
        max_lateness_days=settings.max_lateness_days,
    )
    with scoped_sql_conf(ctx.spark, JIT_SIZED_CODE):  # the classification's wide projections
        results = run_ingest(
            ctx.lakehouse,
            ctx.sources(),
            ingest_ctx,
            ctx.raw_root,
            settings.subscriber_lookback_days,
            settings.shrink_guard,
        )
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise PipelineError("; ".join(f"{r.source}: {r.message}" for r in failed))
    return results
