"""The quality stage: `run` selects the suites, plans and validates them with Great
Expectations (jobs.quality), builds the run date's Data Docs site, replaces the date's rows of
quality_results and raises QualityError when a critical expectation failed; warnings only log.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.util import inheritable_thread_target

from jobs.context import RunContext
from jobs.frames import local_frame
from jobs.quality.expectations import import_gx
from jobs.quality.outcomes import Outcome, QualityError
from jobs.quality.plan import due_sources, plan_raw, plan_table
from jobs.quality.spec import RAW_PREFIX, QualitySpec, selected, suite_names
from jobs.quality.validation import SITE_NAME, RegisteredSuite, gx_context, register, site_dir, validate
from jobs.tables import QUALITY_RESULTS, schema_of

__all__ = ["run"]

log = logging.getLogger(__name__)


def run(ctx: RunContext, suites: Sequence[str] | None = None) -> dict[str, Any]:
    """Validate the run date's raw extracts and tables, record the outcomes in quality_results,
    build Data Docs, and raise QualityError if a critical expectation failed."""
    started = time.monotonic()
    spec = ctx.settings.quality
    wanted = set(selected(suite_names(ctx.config, spec), suites))
    plans = [plan_raw(ctx, spec, s) for s in due_sources(ctx) if f"{RAW_PREFIX}{s.name}" in wanted]
    if suites is None:  # the gate: suites another stage validates wait for it
        wanted -= {name for name, t in spec.tables.items() if t.validated_by != "quality"}
    plans += [plan_table(ctx, spec, t) for name, t in spec.tables.items() if name in wanted]

    site = site_dir(ctx, spec)
    if site and suites is None:
        shutil.rmtree(site, ignore_errors=True)  # a full rerun replaces the date's site
    context = gx_context(site)
    run_id = import_gx().RunIdentifier(
        run_name=f"quality-{ctx.ds.isoformat()}", run_time=datetime.combine(ctx.ds, datetime.min.time(), UTC)
    )
    registered = [register(context, plan) for plan in plans if plan.batch is not None and plan.planned]
    validated = _validate_all(ctx.spark, registered, run_id, spec)
    outcomes: list[Outcome] = []
    for plan in plans:
        outcomes += plan.outcomes + validated.get(plan.name, [])
    docs_url = None
    if site:
        context.build_data_docs(site_names=[SITE_NAME])  # once for every suite: far cheaper than per checkpoint
        docs_url = Path(site, "index.html").as_uri()
        log.info("quality Data Docs for %s: %s", ctx.ds, docs_url)

    versions = {plan.name: plan.table_version for plan in plans}
    write_results(ctx, outcomes, versions, None if suites is None else sorted(wanted))
    failed_critical = [o for o in outcomes if o.status == "failed" and o.severity == "critical"]
    failed_warning = [o for o in outcomes if o.status == "failed" and o.severity == "warning"]
    for outcome in failed_warning:
        log.warning("quality warning %s: %s", ctx.ds, outcome.describe())
    summary = {
        "suites": len(plans),
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


def results_frame(ctx: RunContext, outcomes: Sequence[Outcome], versions: Mapping[str, int | None]) -> DataFrame:
    """quality_results rows: each outcome with the table version its suite read (`versions`)."""
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
            versions.get(o.suite),
        )
        for o in outcomes
    ]
    return local_frame(ctx.spark, rows, schema_of(QUALITY_RESULTS))


def write_results(
    ctx: RunContext, outcomes: Sequence[Outcome], versions: Mapping[str, int | None], suites: Sequence[str] | None
) -> None:
    """Replace the run date's rows of `suites` (all when None) in quality_results; a run of some
    suites keeps the other suites' rows."""
    fresh = results_frame(ctx, outcomes, versions)
    if suites is not None and ctx.lakehouse.exists(QUALITY_RESULTS):
        kept = ctx.lakehouse.read(QUALITY_RESULTS, partitions=[("run_ds", "=", ctx.ds)]).filter(
            ~F.col("suite").isin(list(suites))
        )
        fresh = fresh.unionByName(kept).localCheckpoint()  # materialised before the old files go
    ctx.lakehouse.write(fresh.coalesce(1), QUALITY_RESULTS, partition_by=["run_ds"], replace_where={"run_ds": ctx.ds})
