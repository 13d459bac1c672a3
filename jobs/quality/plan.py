"""Planning the suites of a run date: reading the run date's batch of each table (`read_day`)
and of each due extract, adding the columns its cross-table checks need, projecting it to the
columns its checks use, and deciding up front what needs no GX (absent tables or extracts,
missing columns, no previous day to compare the row count with).
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs import expressions
from jobs.context import RunContext
from jobs.privacy import mask_text
from jobs.quality.batches import raw_batch, with_orphans, with_reject_rates
from jobs.quality.expectations import raw_expectations, table_expectations
from jobs.quality.outcomes import Outcome, SuitePlan
from jobs.quality.spec import RAW_PREFIX, Check, QualitySpec, TableSpec
from jobs.sources import Source, SourceError, conform, list_extract_files, read_extract
from jobs.tables import PIPELINE_RUNS

log = logging.getLogger(__name__)


def _note(suite: str, table: str, expectation: str, severity: str, status: str, observed: str, **kw: Any) -> Outcome:
    return Outcome(suite, table, expectation, kw.pop("column", None), severity, status, observed, **kw)


def read_day(ctx: RunContext, spec: TableSpec, ds: date, version: int | None = None) -> DataFrame:
    """The rows of `spec.name` whose date column is `ds`, reading only the partitions that can hold
    them: [ds - lookback_days, ds] when partitioned by another date (default: the ingest lateness).
    With `version`, as of that Delta version: every later read of the frame sees the same rows."""
    low = ds
    if spec.partition_column != spec.date_column:
        lookback = spec.lookback_days
        low = ds - timedelta(days=ctx.settings.ingest.max_lateness_days if lookback is None else lookback)
    partitions = [(spec.partition_column, ">=", low), (spec.partition_column, "<=", ds)]
    df = ctx.lakehouse.read(spec.name, version=version, partitions=partitions).filter(
        F.col(spec.date_column) == F.lit(ds)
    )
    if spec.name == PIPELINE_RUNS:
        # rows of the gate itself and of the stages after it (exports), left by an earlier run of
        # the date, are not its input: a rerun must validate exactly what the first run did
        from jobs.pipeline import STAGES  # imported here: jobs.pipeline imports this module

        names = list(STAGES)
        df = df.filter(~F.col("stage").isin(names[names.index("quality") :]))
    return df


def _check_columns(check: Check) -> list[str]:
    where = check.params.get("where")
    used = list(check.columns)
    if where:
        used += sorted(expressions.names(expressions.parse(str(where))))
    if check.expect == "reject_rate":
        used += ["stage", "source", "rows_read", "rows_rejected"]
    return used


def due_sources(ctx: RunContext) -> list[Source]:
    return [s for s in ctx.sources() if s.active and s.is_due(ctx.ds)]


def plan_table(ctx: RunContext, spec: QualitySpec, table: TableSpec) -> SuitePlan:
    """The batch, expectations and up-front outcomes of one table suite."""
    plan = SuitePlan(table.name, table.name)

    def note(expectation: str, severity: str, status: str, observed: str, **kw: Any) -> None:
        plan.outcomes.append(_note(table.name, table.name, expectation, severity, status, observed, **kw))

    if not ctx.lakehouse.exists(table.name):
        if table.optional:
            log.info("quality: optional table %s is absent, suite skipped", table.name)
            note("expect_table_to_exist", "warning", "skipped", "absent (optional)")
        else:
            note("expect_table_to_exist", "critical", "failed", "table is absent")
        return plan
    plan.table_version = ctx.lakehouse.version(table.name)  # the batch is read as of it
    try:
        batch = read_day(ctx, table, ctx.ds, version=plan.table_version)  # GX reads it more than once
    except AnalysisException as exc:
        note("expect_column_to_exist", "critical", "failed", _first_line(exc), column=table.date_column)
        return plan
    derived: list[str] = []
    for check in table.checks:
        missing = [c for c in _check_columns(check) if c not in batch.columns]
        for column in missing:
            observed = f"column absent; table has {', '.join(batch.columns)}"
            note("expect_column_to_exist", check.severity, "failed", observed, column=column)
        if missing:
            continue
        previous, sources = None, []
        if check.expect == "row_count_change":
            previous = read_day(ctx, table, ctx.ds - timedelta(days=1)).count()
            if previous == 0:
                observed = "no rows on the previous day"
                note("expect_table_row_count_to_be_between", check.severity, "skipped", observed, scope="previous day")
                continue
        if check.expect == "references":
            column, parent = check.columns[0], spec.tables.get(check.params["table"])
            if parent is None or not ctx.lakehouse.exists(parent.name):
                observed = f"parent table {check.params['table']} is absent or not configured"
                note("expect_column_values_to_be_null", check.severity, "skipped", observed, column=column)
                continue
            # pinned like the batch: GX's every read of it counts the same orphans
            parent_keys = read_day(ctx, parent, ctx.ds, version=ctx.lakehouse.version(parent.name))
            batch = with_orphans(batch, parent_keys, column, check.params["parent_column"], check.params.get("where"))
            derived.append(f"_orphan_{column}")
        if check.expect == "reject_rate":
            sources = [s.name for s in due_sources(ctx)]
            batch = with_reject_rates(batch, sources, int(check.params.get("min_rows_read", 0)))
            derived += [f"reject_rate_{name}" for name in sources]
        plan.planned += table_expectations(table.name, table.name, check, previous_rows=previous, sources=sources)
    used = {c for check in table.checks for c in _check_columns(check) if c in batch.columns} | {table.date_column}
    plan.batch = batch.select(*sorted(used), *[c for c in dict.fromkeys(derived) if c not in used])
    return plan


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


def plan_raw(ctx: RunContext, spec: QualitySpec, source: Source) -> SuitePlan:
    """The batch, expectations and up-front outcomes of one due extract."""
    suite = f"{RAW_PREFIX}{source.name}"
    plan = SuitePlan(suite, suite)
    checks = spec.raw_for(source.name)

    def note(check: str, expectation: str, status: str, observed: str) -> None:
        severity = checks.get(check, {}).get("severity", "critical")
        plan.outcomes.append(_note(suite, suite, expectation, severity, status, observed))

    if source.format == "jdbc":
        log.info("quality: %s is a jdbc source, its extract is not validated", source.name)
        note("extract_present", "expect_extract_to_exist", "skipped", "jdbc source: validated at ingest only")
        return plan
    pattern = source.path_for(ctx.ds, ctx.raw_root)
    if not list_extract_files(pattern):
        if source.mandatory and "extract_present" in checks:
            note("extract_present", "expect_extract_to_exist", "failed", f"no extract at {pattern}")
        else:
            log.info("quality: no extract for optional source %s at %s, suite skipped", source.name, pattern)
            note("extract_present", "expect_extract_to_exist", "skipped", f"no extract at {pattern} (optional source)")
        return plan
    try:
        extract = read_extract(ctx.spark, source, ctx.ds, ctx.raw_root)
    except SourceError as exc:
        if "contract_columns" not in checks:
            raise
        note("contract_columns", "expect_extract_columns_to_match_contract", "failed", mask_text(str(exc)))
        return plan
    set_aside = [f for f in extract.rejected_files if f.reason in ("missing_column", "duplicate_header")]
    if set_aside and "contract_columns" in checks:
        shown = "; ".join(f"{f.path.rsplit('/', 1)[-1]}: {f.message}" for f in set_aside[:5])
        note("contract_columns", "expect_extract_columns_to_match_contract", "failed", mask_text(shown))
    raw = extract.rows
    plan.batch = raw_batch(conform(raw, source), source, ctx.settings.ingest.country_code)
    plan.planned = raw_expectations(suite, source, checks, plan.batch.columns)
    return plan
