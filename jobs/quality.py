"""Data-quality gates for one run date: suites declared in conf/quality.yaml, validated with
Great Expectations.

Suites:

* ``raw.<source>``: the extract of every active file source due on the run date, against its
  input contract (extract present, contract columns, keys not null, typed values parse).
* ``<table>``: the run date's rows of a lakehouse table (nulls, ranges, unique keys, references
  to a catalog of the same date, row count against the previous day, ingest reject rates).

Cross-table checks are computed with Spark expressions into columns of the batch (the orphan
values of a reference, the reject rate of each source in pipeline_runs) that plain expectations then
validate, so every check goes through GX and shows in Data Docs. A suite's batch is projected to
the columns its checks use and persisted while GX computes its metrics.

`run_quality` writes one row per expectation to `quality_results`, builds the run date's Data
Docs site, and raises QualityError when a critical expectation fails; warnings only log.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs import expressions
from jobs.config import ConfigError, load_yaml
from jobs.context import PipelineError, RunContext
from jobs.privacy import mask_text, normalise_msisdn
from jobs.sources import Source, SourceError, conform, flat, list_extract_files, read_extract
from jobs.tables import PIPELINE_RUNS, QUALITY_RESULTS, schema_of

log = logging.getLogger(__name__)

SEVERITIES = ("critical", "warning")
VALIDATING_STAGES = ("quality", "exports")  # the gate, or the exports stage for what it writes itself
TABLE_CHECKS = ("not_null", "between", "in_set", "unique", "min_rows", "row_count_change", "references", "reject_rate")
RAW_CHECKS = (
    "extract_present",
    "contract_columns",
    "min_rows",
    "keys_not_null",
    "required_not_null",
    "types_parse",
    "msisdn_valid",
)
RAW_PREFIX = "raw."
REDACTED = "<redacted>"
SITE_NAME = "quality"
RESULTS_DIR = "_results"  # validation results (JSON) inside a date's site folder


class QualityError(PipelineError):
    """A critical expectation failed; `failures` holds every failed critical outcome."""

    def __init__(self, message: str, failures: Sequence[Outcome] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


# -- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One configured table check; `columns` are the table columns it reads."""

    expect: str
    severity: str
    columns: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TableSpec:
    name: str
    date_column: str
    partition_column: str
    lookback_days: int | None = None  # when partitioned by another date: partitions read back from ds
    optional: bool = False
    checks: tuple[Check, ...] = ()
    validated_by: str = "quality"  # the stage that validates the suite (exports: after delivering)


@dataclass(frozen=True)
class QualitySpec:
    tables: Mapping[str, TableSpec]
    raw_checks: Mapping[str, Mapping[str, Any]]
    raw_overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    data_docs_dir: str | None = None
    sample_size: int = 5

    def raw_for(self, source: str) -> dict[str, dict[str, Any]]:
        """Raw checks of one source: the defaults with its overrides merged in."""
        merged = {name: dict(spec) for name, spec in self.raw_checks.items()}
        for name, spec in (self.raw_overrides.get(source) or {}).items():
            merged[name] = {**merged.get(name, {}), **spec}
        return merged


def load_spec(path: str | Path, overlay: Mapping[str, Any] | None = None) -> QualitySpec:
    """Read conf/quality.yaml, merge `overlay` (the `quality:` block of the run configuration)
    over it, and validate; errors name the file and the key."""
    path = Path(path)
    data = load_yaml(path) if path.exists() else {}
    if not isinstance(data, dict):
        raise ConfigError(path, "-", "top level must be a mapping")
    data = _deep_merge(data, overlay or {})

    def fail(key: str, message: str) -> None:
        raise ConfigError(path, key, message)

    sample_size = data.get("sample_size", 5)
    if not isinstance(sample_size, int) or sample_size < 0:
        fail("sample_size", f"must be a non-negative integer, got {sample_size!r}")
    raw = data.get("raw") or {}
    raw_checks = raw.get("checks") or {}
    overrides = raw.get("sources") or {}
    for name, spec in [*raw_checks.items(), *((f"{s}.{k}", v) for s, o in overrides.items() for k, v in o.items())]:
        key = name.rpartition(".")[2]
        if key not in RAW_CHECKS:
            fail(f"raw.checks.{name}", f"unknown raw check; known: {', '.join(RAW_CHECKS)}")
        _check_common(spec, f"raw.checks.{name}", fail, required_severity=False)
    tables = {}
    for name, spec in (data.get("tables") or {}).items():
        tables[name] = _table_spec(name, spec or {}, fail)
    return QualitySpec(
        tables=tables,
        raw_checks=raw_checks,
        raw_overrides=overrides,
        data_docs_dir=data.get("data_docs_dir"),
        sample_size=sample_size,
    )


def _deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _check_common(spec: Any, key: str, fail: Any, *, required_severity: bool = True) -> None:
    if not isinstance(spec, Mapping):
        fail(key, "must be a mapping")
    severity = spec.get("severity", "critical" if required_severity else None)
    if severity is not None and severity not in SEVERITIES:
        fail(f"{key}.severity", f"must be critical or warning, got {severity!r}")
    mostly = spec.get("mostly")
    if mostly is not None and not (isinstance(mostly, int | float) and 0 <= mostly <= 1):
        fail(f"{key}.mostly", f"must be a fraction in [0, 1], got {mostly!r}")
    floor = spec.get("min_rows")
    if floor is not None:
        if not isinstance(floor, int) or isinstance(floor, bool) or floor < 0:
            fail(f"{key}.min_rows", f"must be a non-negative integer, got {floor!r}")
        if mostly is None:
            fail(f"{key}.min_rows", "applies to a ratio check: set `mostly` too")


def _table_spec(name: str, spec: Mapping[str, Any], fail: Any) -> TableSpec:
    key = f"tables.{name}"
    date_column = spec.get("date_column")
    if not isinstance(date_column, str) or not date_column:
        fail(f"{key}.date_column", "is required: the column equal to the run date on the run's rows")
    lookback = spec.get("lookback_days")
    if lookback is not None and (not isinstance(lookback, int) or lookback < 0):
        fail(f"{key}.lookback_days", f"must be a non-negative integer, got {lookback!r}")
    optional = spec.get("optional", False)
    if not isinstance(optional, bool):
        fail(f"{key}.optional", "must be true or false")
    validated_by = spec.get("validated_by", "quality")
    if validated_by not in VALIDATING_STAGES:
        fail(f"{key}.validated_by", f"must be one of {', '.join(VALIDATING_STAGES)}, got {validated_by!r}")
    checks = []
    for i, check in enumerate(spec.get("checks") or []):
        checks.append(_check(check, f"{key}.checks[{i}]", fail))
    return TableSpec(
        name=name,
        date_column=date_column,
        partition_column=spec.get("partition_column") or date_column,
        lookback_days=lookback,
        optional=optional,
        checks=tuple(checks),
        validated_by=validated_by,
    )


def _check(spec: Any, key: str, fail: Any) -> Check:
    _check_common(spec, key, fail)
    expect = spec.get("expect")
    if expect not in TABLE_CHECKS:
        fail(f"{key}.expect", f"unknown check {expect!r}; known: {', '.join(TABLE_CHECKS)}")
    params = {k: v for k, v in spec.items() if k not in ("expect", "severity", "column", "columns")}
    columns = spec.get("columns")
    if spec.get("column") is not None:
        columns = [spec["column"]]
    if expect in ("not_null", "between", "in_set", "unique", "references"):
        if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
            fail(f"{key}.columns", f"{expect} needs `column: name` or `columns: [names]`")
    else:
        columns = []
    if expect == "between" and params.get("min") is None and params.get("max") is None:
        fail(key, "between needs min, max or both")
    if expect == "in_set" and not isinstance(params.get("values"), list):
        fail(f"{key}.values", "in_set needs a list of values")
    if expect == "min_rows" and not (isinstance(params.get("value"), int) and params["value"] >= 0):
        fail(f"{key}.value", "min_rows needs a non-negative integer value")
    if expect == "row_count_change" and not (
        isinstance(params.get("tolerance"), int | float) and params["tolerance"] >= 0
    ):
        fail(f"{key}.tolerance", "row_count_change needs a non-negative tolerance, e.g. 0.5 for +-50%")
    if expect == "references":
        if len(columns) != 1:
            fail(f"{key}.column", "references checks one column")
        for required in ("table", "parent_column"):
            if not isinstance(params.get(required), str):
                fail(f"{key}.{required}", "is required for references")
        if params.get("where") is not None:
            expressions.parse(str(params["where"]), source=f"{key}.where")
    if expect == "reject_rate":
        rates = [params.get("max"), *(params.get("per_source") or {}).values()]
        if not all(isinstance(r, int | float) and 0 <= r <= 1 for r in rates):
            fail(f"{key}.max", "reject_rate needs max (and per_source values) as fractions in [0, 1]")
    return Check(expect=expect, severity=spec.get("severity", "critical"), columns=tuple(columns), params=params)


# -- outcomes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one expectation found: one row of quality_results."""

    suite: str
    table: str
    expectation: str
    column: str | None
    severity: str
    status: str  # passed | failed | skipped
    observed: str = ""
    scope: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool | None:
        return None if self.status == "skipped" else self.status == "passed"

    def describe(self) -> str:
        target = f"{self.table}.{self.column}" if self.column else self.table
        scope = f" [{self.scope}]" if self.scope else ""
        return f"{target} {self.expectation}{scope}: {self.observed}"


@dataclass(frozen=True)
class Planned:
    """A GX expectation and the outcome it reports (status and observed filled in later).

    `min_rows`: the floor of a ratio check (one with `mostly`): on a batch of fewer rows the
    check allows as many unexpected rows as it would on `min_rows` rows, so a handful of rows
    cannot fail the run."""

    expectation: Any
    outcome: Outcome
    min_rows: int | None = None


def small_batch_allowance(mostly: float | None, min_rows: int | None) -> int | None:
    """Unexpected rows a ratio check tolerates on a batch below its floor: (1 - mostly) x min_rows,
    rounded down; None when the check has no floor."""
    if mostly is None or not min_rows:
        return None
    return math.floor(round((1 - mostly) * min_rows, 9))


def passes_below_floor(result: Mapping[str, Any], mostly: float | None, min_rows: int | None) -> bool:
    """True when a failed ratio check ran on fewer than `min_rows` rows and its unexpected rows
    are within `small_batch_allowance`."""
    allowance = small_batch_allowance(mostly, min_rows)
    rows, unexpected = result.get("element_count"), result.get("unexpected_count")
    if allowance is None or rows is None or unexpected is None:
        return False
    return rows < min_rows and unexpected <= allowance


@dataclass
class SuitePlan:
    name: str
    table: str
    batch: DataFrame | None = None
    planned: list[Planned] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)  # decided without GX


def _note(suite: str, table: str, expectation: str, severity: str, status: str, observed: str, **kw: Any) -> Outcome:
    return Outcome(suite, table, expectation, kw.pop("column", None), severity, status, observed, **kw)


# -- batches: pure transformations ------------------------------------------------------------


def with_orphans(
    child: DataFrame, parent_keys: DataFrame, column: str, parent_column: str, where: str | None = None
) -> DataFrame:
    """Add `_orphan_<column>`: the value when it is not null, matches `where` and has no
    `parent_column` in `parent_keys`; null otherwise."""
    keys = parent_keys.select(F.col(parent_column).alias("_parent_key")).distinct()
    joined = child.join(keys, child[column] == keys["_parent_key"], "left")
    applies = F.lit(True)
    if where:
        applies = F.coalesce(expressions.compile_expression(where, child.columns), F.lit(False))
    orphan = applies & F.col(column).isNotNull() & F.col("_parent_key").isNull()
    return joined.withColumn(f"_orphan_{column}", F.when(orphan, F.col(column))).drop("_parent_key")


def with_reject_rates(runs: DataFrame, sources: Sequence[str], min_rows_read: int = 0) -> DataFrame:
    """Add `reject_rate_<source>` per source: rows_rejected / rows_read on that source's ingest
    row (0 when it read fewer than `min_rows_read` rows), null on every other row. One column
    per source keeps every rate in one aggregation."""
    rate = F.coalesce(
        F.try_divide(F.col("rows_rejected").cast("double"), F.col("rows_read").cast("double")), F.lit(0.0)
    )
    rate = F.when(F.col("rows_read") >= min_rows_read, rate).otherwise(F.lit(0.0))
    ingest = F.col("stage") == "ingest"
    return runs.select(
        "*", *[F.when(ingest & (F.col("source") == name), rate).alias(f"reject_rate_{name}") for name in sources]
    )


def raw_batch(conformed: DataFrame, source: Source, country_code: str) -> DataFrame:
    """A conformed extract as validated: each contract column as delivered (blank -> null),
    `_unparsed_<name>` for a value that does not cast to its contract type (and
    `_unparsed_event_time` for an event time not in its format), `_invalid_msisdn` for a
    subscriber value that is no phone number. PII never leaves as a value: the subscriber and
    pii columns only say whether a value is there."""
    columns = []
    for name, column in source.columns.items():
        raw = F.col(f"_raw_{name}")
        text = F.when(F.trim(raw) != "", raw)
        private = column.pii or name == source.subscriber_column
        shown = F.lit(REDACTED) if private else raw
        columns.append((F.when(text.isNotNull(), F.lit(REDACTED)) if private else text).alias(name))
        if column.type != "string":
            columns.append(F.when(text.isNotNull() & F.col(name).isNull(), shown).alias(f"_unparsed_{name}"))
    spec = source.event_time or {}
    if "format" in spec:
        raw = F.col(f"_raw_{flat(spec['column'])}")
        text = F.when(F.trim(raw) != "", raw)
        parsed = F.try_to_timestamp(text, F.lit(spec["format"]))
        columns.append(F.when(text.isNotNull() & parsed.isNull(), raw).alias("_unparsed_event_time"))
    msisdn = F.col(f"_raw_{source.subscriber_column}")
    valid = F.coalesce(F.length(normalise_msisdn(msisdn, country_code)).between(8, 15), F.lit(False))
    columns.append(
        F.when(msisdn.isNotNull() & (F.trim(msisdn) != "") & ~valid, F.lit(REDACTED)).alias("_invalid_msisdn")
    )
    return conformed.select(*columns)


# -- expectations -----------------------------------------------------------------------------


def _gx() -> Any:
    """Great Expectations, imported on first use (it is slow to import), with analytics off and
    its INFO chatter quiet unless a level was set for it."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    gx_log = logging.getLogger("great_expectations")
    if gx_log.level == logging.NOTSET:
        gx_log.setLevel(logging.WARNING)
    return gx


def _kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"mostly": params["mostly"]} if params.get("mostly") is not None else {}


def table_expectations(
    suite: str, table: str, check: Check, *, previous_rows: int | None = None, sources: Sequence[str] = ()
) -> list[Planned]:
    """The GX expectations of one table check (references and reject_rate read columns that
    `with_orphans` / `with_reject_rates` add; row_count_change needs the previous day's rows)."""
    E = _gx().expectations
    p, severity = check.params, check.severity

    def planned(expectation: Any, column: str | None, scope: str | None = None) -> Planned:
        return Planned(
            expectation,
            Outcome(suite, table, expectation.expectation_type, column, severity, "", "", scope),
            p.get("min_rows") if p.get("mostly") is not None else None,
        )

    if check.expect == "not_null":
        return [planned(E.ExpectColumnValuesToNotBeNull(column=c, **_kwargs(p)), c) for c in check.columns]
    if check.expect == "between":
        bounds = {"min_value": p.get("min"), "max_value": p.get("max")}
        return [planned(E.ExpectColumnValuesToBeBetween(column=c, **bounds, **_kwargs(p)), c) for c in check.columns]
    if check.expect == "in_set":
        return [
            planned(E.ExpectColumnValuesToBeInSet(column=c, value_set=list(p["values"]), **_kwargs(p)), c)
            for c in check.columns
        ]
    if check.expect == "unique":
        if len(check.columns) == 1:
            return [planned(E.ExpectColumnValuesToBeUnique(column=check.columns[0]), check.columns[0])]
        return [planned(E.ExpectCompoundColumnsToBeUnique(column_list=list(check.columns)), ",".join(check.columns))]
    if check.expect == "min_rows":
        return [planned(E.ExpectTableRowCountToBeBetween(min_value=p["value"]), None)]
    if check.expect == "row_count_change":
        if not previous_rows:
            raise ValueError("row_count_change needs the previous day's row count")
        low = math.floor(previous_rows * (1 - p["tolerance"]))
        high = math.ceil(previous_rows * (1 + p["tolerance"]))
        scope = f"previous day {previous_rows} rows +-{p['tolerance']:.0%}"
        description = f"Row count within {low}..{high}: {scope}."
        expectation = E.ExpectTableRowCountToBeBetween(min_value=max(low, 0), max_value=high, description=description)
        return [planned(expectation, None, scope)]
    if check.expect == "references":
        column = check.columns[0]
        where = p.get("where")
        scope = f"not in {p['table']}.{p['parent_column']}" + (f", where {where}" if where else "")
        description = (
            f"Every {column}{f' (where {where})' if where else ''} exists in "
            f"{p['table']}.{p['parent_column']} on the same date: `_orphan_{column}` holds those that do not."
        )
        return [
            planned(E.ExpectColumnValuesToBeNull(column=f"_orphan_{column}", description=description), column, scope)
        ]
    if check.expect == "reject_rate":
        per_source = p.get("per_source") or {}
        out = []
        for name in sources:
            limit = per_source.get(name, p["max"])
            description = f"Share of the rows of source {name} rejected at ingest is at most {limit:g}."
            expectation = E.ExpectColumnMaxToBeBetween(
                column=f"reject_rate_{name}", max_value=limit, description=description
            )
            out.append(planned(expectation, "reject_rate", f"source {name}"))
        return out
    raise ValueError(f"unknown check {check.expect!r}")


def raw_expectations(
    suite: str, source: Source, checks: Mapping[str, Mapping[str, Any]], columns: Sequence[str]
) -> list[Planned]:
    """The GX expectations of one extract's batch (see `raw_batch`)."""
    E = _gx().expectations
    out: list[Planned] = []

    def add(check: str, expectation: Any, column: str | None, scope: str | None = None) -> None:
        severity = checks[check].get("severity", "critical")
        floor = checks[check].get("min_rows") if check != "min_rows" else None
        out.append(
            Planned(
                expectation,
                Outcome(suite, suite, expectation.expectation_type, column, severity, "", "", scope),
                floor,
            )
        )

    if "min_rows" in checks:
        add("min_rows", E.ExpectTableRowCountToBeBetween(min_value=checks["min_rows"].get("value", 1)), None)
    keys = [*source.natural_key, source.subscriber_column]
    for name, column in source.columns.items():
        check = "keys_not_null" if name in keys else None if column.nullable else "required_not_null"
        if check in checks:
            add(check, E.ExpectColumnValuesToNotBeNull(column=name, **_kwargs(checks[check])), name)
    if "types_parse" in checks:
        for column in (c for c in columns if c.startswith("_unparsed_")):
            name = column.removeprefix("_unparsed_")
            contract = source.columns.get(name)
            wanted = f"a {contract.type}" if contract else f"the format {(source.event_time or {}).get('format')}"
            description = f"Values of {name} parse as {wanted}: `{column}` holds those that do not."
            expectation = E.ExpectColumnValuesToBeNull(
                column=column, description=description, **_kwargs(checks["types_parse"])
            )
            add("types_parse", expectation, name, "values that do not parse")
    if "msisdn_valid" in checks:
        description = f"{source.subscriber_column} normalises to an E.164 number of 8 to 15 digits."
        expectation = E.ExpectColumnValuesToBeNull(
            column="_invalid_msisdn", description=description, **_kwargs(checks["msisdn_valid"])
        )
        add("msisdn_valid", expectation, source.subscriber_column, "not a phone number")
    return out


# -- planning: reading the batches ------------------------------------------------------------


def read_day(ctx: RunContext, spec: TableSpec, ds: date) -> DataFrame:
    """The rows of `spec.name` whose date column is `ds`, reading only the partitions that can hold
    them: [ds - lookback_days, ds] when partitioned by another date (default: the ingest lateness)."""
    low = ds
    if spec.partition_column != spec.date_column:
        lookback = spec.lookback_days
        low = ds - timedelta(days=ctx.config.get("ingest.max_lateness_days", 7) if lookback is None else lookback)
    partitions = [(spec.partition_column, ">=", low), (spec.partition_column, "<=", ds)]
    df = ctx.lakehouse.read(spec.name, partitions=partitions).filter(F.col(spec.date_column) == F.lit(ds))
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
    try:
        batch = read_day(ctx, table, ctx.ds)
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
            parent_keys = read_day(ctx, parent, ctx.ds)
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
    plan.batch = raw_batch(conform(raw, source), source, str(ctx.config.require("operator.country_code")))
    plan.planned = raw_expectations(suite, source, checks, plan.batch.columns)
    return plan


# -- validation -------------------------------------------------------------------------------


def _gx_context(site: str | None) -> Any:
    """An ephemeral GX context; with a site folder, validation results are kept in it as JSON
    so a later run of other suites for the same date adds to the same Data Docs."""
    gx = _gx()
    from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults

    defaults = InMemoryStoreBackendDefaults()
    sites = {}
    if site:
        sites[SITE_NAME] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": site},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
        defaults.stores[defaults.validation_results_store_name]["store_backend"] = {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": f"{site}/{RESULTS_DIR}",
        }
    config = DataContextConfig(
        store_backend_defaults=defaults,
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars={"globally": False},
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def validate(context: Any, plan: SuitePlan, run_id: Any, sample_size: int) -> list[Outcome]:
    """Run one suite through a GX Checkpoint over its persisted batch; one outcome per expectation.

    The checkpoint counts unexpected rows only; expectations that failed are validated again
    for up to `sample_size` unexpected values, so a passing suite costs no extra Spark job."""
    gx = _gx()
    expectations = []
    for i, planned in enumerate(plan.planned):
        planned.expectation.meta = {**(planned.expectation.meta or {}), "quality_id": i}
        expectations.append(planned.expectation)
    asset = context.data_sources.get("lakehouse").add_dataframe_asset(name=plan.name)
    batch_definition = asset.add_batch_definition_whole_dataframe(plan.name)
    suite = context.suites.add(gx.ExpectationSuite(name=plan.name, expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=plan.name, data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=plan.name,
            validation_definitions=[definition],
            result_format={"result_format": "BASIC", "partial_unexpected_count": 0},
        )
    )
    batch = plan.batch.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        run = checkpoint.run(batch_parameters={"dataframe": batch}, run_id=run_id)
        results = {r.expectation_config.meta["quality_id"]: r for v in run.run_results.values() for r in v.results}
        floored = {
            i
            for i, r in results.items()
            if not r.success
            and passes_below_floor(r.result, r.expectation_config.kwargs.get("mostly"), plan.planned[i].min_rows)
        }
        failed = [
            i for i, r in results.items() if not r.success and r.result.get("unexpected_count") and i not in floored
        ]
        samples = {}
        if failed and sample_size:
            gx_batch = batch_definition.get_batch(batch_parameters={"dataframe": batch})
            result_format = {"result_format": "BASIC", "partial_unexpected_count": sample_size}
            for i in failed:
                again = gx_batch.validate(results[i].expectation_config.to_domain_obj(), result_format=result_format)
                samples[i] = again.result.get("partial_unexpected_list") or []
    finally:
        batch.unpersist()
    outcomes = []
    for i in sorted(results):
        r, template = results[i], plan.planned[i].outcome
        result = {**r.result, "partial_unexpected_list": samples[i]} if i in samples else r.result
        observed = observed_text(result, r.exception_info)
        floor = plan.planned[i].min_rows
        if i in floored:
            allowance = small_batch_allowance(r.expectation_config.kwargs.get("mostly"), floor)
            observed += f"; passes: below {floor} rows up to {allowance} may be unexpected"
        outcomes.append(
            Outcome(
                template.suite,
                template.table,
                template.expectation,
                template.column,
                template.severity,
                "passed" if r.success or i in floored else "failed",
                observed,
                template.scope,
                {"kwargs": _plain(r.expectation_config.kwargs), "result": _plain(result), "min_rows": floor},
            )
        )
    return outcomes


def observed_text(result: Mapping[str, Any], exception_info: Mapping[str, Any] | None) -> str:
    """A short readable account of a GX result: the observed value, or unexpected rows and a sample."""
    error = _exception_message(exception_info or {})
    if error:
        return f"error: {error}"
    if "observed_value" in result:
        value = result["observed_value"]
        return "observed nothing: no row in scope" if value is None else f"observed {_short(value)}"
    if "unexpected_count" in result:
        total = result.get("element_count")
        percent = result.get("unexpected_percent") or 0.0
        text = f"{result['unexpected_count']} of {total} rows unexpected ({percent:.2f}%)"
        sample = [v for v in result.get("partial_unexpected_list") or [] if v is not None]
        if sample:
            text += f", e.g. {', '.join(_short(v) for v in sample[:5])}"
        return text
    return ""


def _exception_message(info: Mapping[str, Any]) -> str | None:
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, Mapping) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# -- entry point ------------------------------------------------------------------------------


def quality_spec(ctx: RunContext) -> QualitySpec:
    return load_spec(ctx.conf_path("quality.yaml"), ctx.config.get("quality") or {})


def site_dir(ctx: RunContext, spec: QualitySpec) -> str | None:
    """The local folder of the run date's Data Docs site, or None when the configured place is remote."""
    configured = str(spec.data_docs_dir or f"{ctx.lakehouse.root}/_data_docs")
    path = configured.removeprefix("file://")
    if "://" in path:
        log.warning("quality: Data Docs need a local folder, %s is not one: no Data Docs built", configured)
        return None
    return str(Path(path).resolve() / ctx.ds.isoformat())


def suite_names(ctx: RunContext, spec: QualitySpec) -> list[str]:
    """Every suite the configuration defines (raw ones for every configured source)."""
    return [*(f"{RAW_PREFIX}{name}" for name in ctx.config.sources), *spec.tables]


def selected(names: Sequence[str], patterns: Sequence[str] | None) -> list[str]:
    """Suite names matching any of `patterns` (exact names or globs like `raw.*`); all when None."""
    if not patterns:
        return list(names)
    unknown = [p for p in patterns if not any(fnmatch(n, p) for n in names)]
    if unknown:
        raise PipelineError(f"unknown quality suite(s) {unknown}; known: {', '.join(names)}")
    return [n for n in names if any(fnmatch(n, p) for p in patterns)]


def run_quality(ctx: RunContext, suites: Sequence[str] | None = None) -> dict[str, Any]:
    """Validate the run date's raw extracts and tables, record the outcomes in quality_results,
    build Data Docs, and raise QualityError if a critical expectation failed."""
    started = time.monotonic()
    spec = quality_spec(ctx)
    wanted = set(selected(suite_names(ctx, spec), suites))
    plans = [plan_raw(ctx, spec, s) for s in due_sources(ctx) if f"{RAW_PREFIX}{s.name}" in wanted]
    if suites is None:  # the gate: suites another stage validates wait for it
        wanted -= {name for name, t in spec.tables.items() if t.validated_by != "quality"}
    plans += [plan_table(ctx, spec, t) for name, t in spec.tables.items() if name in wanted]

    site = site_dir(ctx, spec)
    if site and suites is None:
        shutil.rmtree(site, ignore_errors=True)  # a full rerun replaces the date's site
    context = _gx_context(site)
    context.data_sources.add_spark("lakehouse")
    run_id = _gx().RunIdentifier(
        run_name=f"quality-{ctx.ds.isoformat()}", run_time=datetime.combine(ctx.ds, datetime.min.time(), UTC)
    )
    outcomes: list[Outcome] = []
    for plan in plans:
        outcomes += plan.outcomes
        if plan.batch is not None and plan.planned:
            suite_started = time.monotonic()
            outcomes += validate(context, plan, run_id, spec.sample_size)
            log.info(
                "quality suite %s: %d expectations in %.1fs",
                plan.name,
                len(plan.planned),
                time.monotonic() - suite_started,
            )
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
    return ctx.spark.createDataFrame(rows, schema_of(QUALITY_RESULTS))


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
