"""The quality stage: `run` selects the suites, plans and validates them with Great
Expectations (jobs.quality), builds the run date's Data Docs site, replaces the date's rows of
quality_results and raises QualityError when a critical expectation failed; warnings only log.

The raw suites are validated by the ingest stage (`ExtractChecks`), over the extracts it has
just read and cached, so a night parses each extract once; the gate takes their recorded
outcomes (`validated_at_ingest`) and reads from the files only the extracts ingest did not
validate, or validated under other checks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.util import inheritable_thread_target

from jobs.context import RunContext
from jobs.frames import local_frame
from jobs.quality.expectations import import_gx
from jobs.quality.outcomes import Outcome, QualityError
from jobs.quality.plan import due_sources, plan_extract, plan_raw, plan_table
from jobs.quality.spec import RAW_PREFIX, QualitySpec, selected, suite_names
from jobs.quality.validation import (
    RESULTS_DIR,
    SITE_NAME,
    RegisteredSuite,
    gx_context,
    register,
    site_dir,
    validate,
)
from jobs.sources import Extract, Source
from jobs.tables import QUALITY_RESULTS, schema_of

__all__ = ["ExtractChecks", "run", "validated_at_ingest"]

log = logging.getLogger(__name__)

VALIDATED_BY = "validated_by"  # in the details of a raw suite's outcomes: "ingest" when the ingest stage validated it


def run(ctx: RunContext, suites: Sequence[str] | None = None) -> dict[str, Any]:
    """Validate the run date's raw extracts and tables, record the outcomes in quality_results,
    build Data Docs, and raise QualityError if a critical expectation failed."""
    started = time.monotonic()
    spec = ctx.settings.quality
    wanted = set(selected(suite_names(ctx.config, spec), suites))
    due = [s for s in due_sources(ctx) if f"{RAW_PREFIX}{s.name}" in wanted]
    recorded = validated_at_ingest(ctx, due) if suites is None else {}  # the gate: ingest's outcomes
    plans = [plan_raw(ctx, spec, s) for s in due if f"{RAW_PREFIX}{s.name}" not in recorded]
    if suites is None:  # the gate: suites another stage validates wait for it
        wanted -= {name for name, t in spec.tables.items() if t.validated_by != "quality"}
    plans += [plan_table(ctx, spec, t) for name, t in spec.tables.items() if name in wanted]

    site = site_dir(ctx, spec)
    if site and suites is None:  # a full rerun replaces the date's site, but for ingest's results
        _clear_site(site, keep=list(recorded))
    context = gx_context(site)
    registered = [register(context, plan) for plan in plans if plan.batch is not None and plan.planned]
    validated = _validate_all(ctx.spark, registered, run_identifier(ctx.ds), spec)
    outcomes: list[Outcome] = [o for suite_outcomes in recorded.values() for o in suite_outcomes]
    for plan in plans:
        outcomes += plan.outcomes + validated.get(plan.name, [])
    docs_url = None
    if site:
        context.build_data_docs(site_names=[SITE_NAME])  # once for every suite: far cheaper than per checkpoint
        docs_url = Path(site, "index.html").as_uri()
        log.info("quality Data Docs for %s: %s", ctx.ds, docs_url)

    write_results(ctx, outcomes, None if suites is None else sorted(wanted))
    failed_critical = [o for o in outcomes if o.status == "failed" and o.severity == "critical"]
    failed_warning = [o for o in outcomes if o.status == "failed" and o.severity == "warning"]
    for outcome in failed_warning:
        log.warning("quality warning %s: %s", ctx.ds, outcome.describe())
    summary = {
        "suites": len(recorded) + len(plans),
        "expectations": sum(o.status != "skipped" for o in outcomes),
        "failed_critical": len(failed_critical),
        "failed_warning": len(failed_warning),
        "skipped": [o.describe() for o in outcomes if o.status == "skipped"],
        "data_docs": docs_url,
        "seconds": round(time.monotonic() - started, 1),
    }
    log.info("quality %s: %s", ctx.ds, summary)
    if failed_critical:
        lines = "\n".join(f"  - {o.describe()}" for o in failed_critical)
        docs = f"\nData Docs: {docs_url}" if docs_url else ""
        raise QualityError(
            f"{len(failed_critical)} critical quality expectation(s) failed for {ctx.ds}:\n{lines}{docs}",
            failed_critical,
        )
    return summary


def run_identifier(ds: date) -> Any:
    """The GX run of a date's validations: the same on a rerun, so its results replace the earlier ones."""
    return import_gx().RunIdentifier(
        run_name=f"quality-{ds.isoformat()}", run_time=datetime.combine(ds, datetime.min.time(), UTC)
    )


def _clear_site(site: str, keep: Sequence[str]) -> None:
    """Remove the date's Data Docs site but for the validation results of the suites `keep`."""
    kept = [_results_path(site, suite) for suite in keep]

    def clear(folder: Path) -> None:
        for entry in folder.iterdir() if folder.is_dir() else []:
            if entry in kept:
                continue
            if any(entry in path.parents for path in kept):
                clear(entry)
            elif entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    clear(Path(site))


def _results_path(site: str, suite: str) -> Path:
    """Where GX keeps a suite's validation results in a site (a dotted name is nested folders)."""
    return Path(site, RESULTS_DIR, *suite.split("."))


def _checks_digest(spec: QualitySpec, source: Source) -> str:
    """A fingerprint of a source's raw checks: outcomes recorded under other checks are not reused."""
    text = json.dumps(spec.raw_for(source.name), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def validated_at_ingest(ctx: RunContext, sources: Sequence[Source]) -> dict[str, list[Outcome]]:
    """The recorded outcomes of the raw suites of `sources` that the ingest stage validated for
    the run date under the current checks, by suite (a few rows per suite)."""
    if not sources or not ctx.lakehouse.exists(QUALITY_RESULTS):
        return {}
    digests = {f"{RAW_PREFIX}{s.name}": _checks_digest(ctx.settings.quality, s) for s in sources}
    rows = (
        ctx.lakehouse.read(QUALITY_RESULTS, partitions=[("run_ds", "=", ctx.ds)])
        .filter(F.col("suite").isin(list(digests)))
        .filter(F.get_json_object("details", f"$.{VALIDATED_BY}") == F.lit("ingest"))
        .select("suite", "table_name", "expectation", "column", "scope", "severity", "status", "observed", "details")
        .collect()  # one row per expectation of the due sources' raw suites
    )
    recorded: dict[str, list[Outcome]] = {}
    for row in rows:
        details = json.loads(row["details"] or "{}")
        if details.get("checks") == digests[row["suite"]]:
            outcome = Outcome(
                row["suite"], row["table_name"], row["expectation"], row["column"], row["severity"],
                row["status"], row["observed"] or "", row["scope"], details,
            )  # fmt: skip
            recorded.setdefault(row["suite"], []).append(outcome)
    for suite, outcomes in sorted(recorded.items()):
        log.info("quality: %s validated at ingest (%d outcomes), its extract is not read again", suite, len(outcomes))
    return recorded


class ExtractChecks:
    """The raw suites, validated by the ingest stage over each extract it has read and cached
    (its classification holds the conformed columns row for row); `record` writes their
    outcomes to quality_results, marked for the gate to take. A suite that cannot be validated
    here is left to the gate, which then reads its extract."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx, self.spec = ctx, ctx.settings.quality
        self.site = site_dir(ctx, self.spec)
        self.outcomes: dict[str, list[Outcome]] = {}

    def check(self, source: Source, extract: Extract, classified: DataFrame) -> None:
        suite = f"{RAW_PREFIX}{source.name}"
        started = time.monotonic()
        try:
            plan = plan_extract(self.spec, source, extract, classified, self.ctx.settings.ingest.country_code)
            validated: list[Outcome] = []
            if plan.planned:
                if self.site:  # this validation's result replaces the extract's earlier one
                    shutil.rmtree(_results_path(self.site, suite), ignore_errors=True)
                registered = register(gx_context(self.site), plan)
                # the batch is a projection of the cached classification: not persisted again
                validated = validate(registered, run_identifier(self.ctx.ds), self.spec.sample_size, persist=False)
        except Exception as exc:  # the gate validates the extract from its files instead
            log.warning("quality: %s not validated at ingest (%s): the gate reads its extract", suite, exc)
            return
        marker = {VALIDATED_BY: "ingest", "checks": _checks_digest(self.spec, source)}
        self.outcomes[suite] = [
            dataclasses.replace(o, details={**o.details, **marker}) for o in plan.outcomes + validated
        ]
        seconds = time.monotonic() - started
        log.info("quality suite %s: %d expectations at ingest in %.1fs", suite, len(plan.planned), seconds)

    def record(self) -> None:
        """The outcomes of the suites validated so far, in quality_results (one commit)."""
        if self.outcomes:
            write_results(self.ctx, [o for v in self.outcomes.values() for o in v], sorted(self.outcomes))


def _validate_all(
    spark: SparkSession, registered: Sequence[RegisteredSuite], run_id: Any, spec: QualitySpec
) -> dict[str, list[Outcome]]:
    """The outcomes of each registered suite by name; up to `parallel_suites` validated at once:
    while one suite's Spark jobs run, another's are planned and GX works through its results."""

    def one(suite: RegisteredSuite) -> list[Outcome]:
        started = time.monotonic()
        outcomes = validate(suite, run_id, spec.sample_size)
        log.info(
            "quality suite %s: %d expectations in %.1fs",
            suite.plan.name,
            len(suite.plan.planned),
            time.monotonic() - started,
        )
        return outcomes

    if spec.parallel_suites == 1 or len(registered) < 2:
        return {suite.plan.name: one(suite) for suite in registered}
    with ThreadPoolExecutor(max_workers=spec.parallel_suites, thread_name_prefix="quality") as pool:
        # each suite runs with its own copy of this thread's Spark local properties (job group, description)
        futures = {suite.plan.name: pool.submit(inheritable_thread_target(spark)(one), suite) for suite in registered}
        return {name: future.result() for name, future in futures.items()}


def results_frame(ctx: RunContext, outcomes: Sequence[Outcome]) -> DataFrame:
    rows = [
        (
            ctx.ds,
            o.suite,
            o.table,
            o.expectation,
            o.column,
            o.scope,
            o.severity,
            o.status,
            o.success,
            o.observed,
            json.dumps(o.details, sort_keys=True, default=str),
        )
        for o in outcomes
    ]
    return local_frame(ctx.spark, rows, schema_of(QUALITY_RESULTS))


def write_results(ctx: RunContext, outcomes: Sequence[Outcome], suites: Sequence[str] | None) -> None:
    """Replace the run date's rows of `suites` (all when None) in quality_results; a run of some
    suites keeps the other suites' rows."""
    fresh = results_frame(ctx, outcomes)
    if suites is not None and ctx.lakehouse.exists(QUALITY_RESULTS):
        kept = ctx.lakehouse.read(QUALITY_RESULTS, partitions=[("run_ds", "=", ctx.ds)]).filter(
            ~F.col("suite").isin(list(suites))
        )
        fresh = fresh.unionByName(kept).localCheckpoint()  # materialised before the old files go
    ctx.lakehouse.write(fresh.coalesce(1), QUALITY_RESULTS, partition_by=["run_ds"], replace_where={"run_ds": ctx.ds})
