"""Event normalization: every due source's raw extract becomes rows of the `events` table.

Each raw row ends in exactly one place: accepted (one or more events), rejected (quarantined in
`events_rejected` with a reason code and message), or duplicate (also quarantined, counted apart).
The transformations here are pure; `run_ingest` does the I/O: each source is read, classified and
accounted (`prepare_source`), then the sources of a run are written together (`write_sources`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs import expressions
from jobs.lakehouse import Lakehouse
from jobs.privacy import _ASCII_DIGITS as ASCII_DIGITS
from jobs.privacy import _OTHER_DIGITS as OTHER_DIGITS
from jobs.privacy import mask_digit_runs, mask_text, normalise_msisdn, pseudonymise, with_hmac_key
from jobs.profiles import profile_as_of
from jobs.sources import CORRUPT, SOURCE_FILE, Extract, FileReject, Source, SourceError, conform, read_extract
from jobs.tables import EVENTS, EVENTS_REJECTED, PIPELINE_RUNS, SUBSCRIBER_PROFILE, schema_of
from jobs.templates import value_position

log = logging.getLogger(__name__)

ACCEPTED, REJECTED, DUPLICATE = "accepted", "rejected", "duplicate"


@dataclass(frozen=True)
class IngestContext:
    """Run-wide parameters every source needs."""

    ds: date
    timezone: str
    country_code: str
    key: str
    max_lateness_days: int = 7

    @property
    def batch_suffix(self) -> str:
        return self.ds.strftime("%Y%m%d")


@dataclass(frozen=True)
class SourceResult:
    source: str
    status: str
    rows_read: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rows_duplicate: int = 0
    events_written: int = 0
    duration_s: float = 0.0
    message: str = ""

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_accepted + self.rows_rejected + self.rows_duplicate


# -- pure transformations ---------------------------------------------------------------------


def value_column(spec: Any, source: Source, ctx: IngestContext, *, where: str) -> Column:
    """Compile one declarative value spec from a mapping (literal, column, expr, map, ...)."""
    if not isinstance(spec, Mapping):
        return F.lit(spec)
    if len(spec) != 1 and "map" not in spec:
        raise SourceError(
            f"{source.config_file}: {where}: a value spec has exactly one of column/expr/map/pseudonymise/days_late"
        )
    if "column" in spec:
        return F.col(_known_column(spec["column"], source, where))
    if "expr" in spec:
        return expressions.compile_expression(
            str(spec["expr"]), _expression_names(source, ctx), source=f"{source.config_file}#{where}"
        )
    if "pseudonymise" in spec:
        column = _known_column(spec["pseudonymise"], source, where)
        return pseudonymise(F.col(column), ctx.country_code)
    if "map" in spec:
        column = F.col(_known_column(spec["map"], source, where))
        mapped = F.lit(spec.get("default"))
        for raw, canonical in reversed(list(spec["values"].items())):
            mapped = F.when(column == F.lit(raw), F.lit(canonical)).otherwise(mapped)
        return mapped
    if "days_late" in spec:
        when_col, due_col = (_known_column(c, source, where) for c in spec["days_late"])
        local_day = F.to_date(F.from_utc_timestamp(F.col(when_col).cast("timestamp"), ctx.timezone))
        return F.datediff(local_day, F.col(due_col))
    raise SourceError(f"{source.config_file}: {where}: unknown value spec {dict(spec)}")


def _known_column(path: str, source: Source, where: str) -> str:
    name = path.replace(".", "_")
    if name not in source.columns and name not in ("event_ts", "event_date"):
        raise SourceError(f"{source.config_file}: {where}: {path!r} is not a contract column of {source.name}")
    return name


def _expression_names(source: Source, ctx: IngestContext) -> dict[str, Column]:
    names = {name: F.col(name) for name, column in source.columns.items() if not column.pii}
    names["ds"] = F.lit(ctx.ds)
    return names


# Columns the pipeline adds next to the raw ones: a contract column may not take these names.
ADDED_COLUMNS = frozenset(
    {
        "subscriber_id",
        "event_ts",
        "event_date",
        "record_key",
        "reject_reason",
        "reject_message",
        "ds",
        SOURCE_FILE,
        CORRUPT,
    }
)
_VALUE_SPECS = ("column", "expr", "map", "pseudonymise", "days_late")
_MAPPING_VALUES = ("event_subtype", "quantity", "unit", "amount", "currency", "channel")


def expression_types(source: Source) -> dict[str, str]:
    """Expression type of every name a source's rules may use."""
    types = {name: expressions.value_type(column.type) for name, column in source.columns.items() if not column.pii}
    types["ds"] = expressions.DATE
    return types


def source_problems(source: Source) -> list[str]:
    """Every problem of one source's rules, mappings and value specs, found without Spark or
    data: names, types, columns and collisions, each as `file:line:column: message` (or
    `file: key: message` when the position is not known)."""
    problems: list[str] = []
    root = _yaml_root(source.config_file)
    names = [name for name, column in source.columns.items() if not column.pii] + ["ds"]
    types = expression_types(source)

    def problem(keys: tuple[str | int, ...], message: str) -> None:
        line, column = value_position(root, keys) if root is not None else (0, 0)
        where = f"{source.config_file}:{line}:{column}" if line else f"{source.config_file}: {_key_text(keys)}"
        problems.append(f"{where}: {message}")

    def expression(keys: tuple[str | int, ...], text: Any, expect: str | None) -> None:
        line, column = value_position(root, keys) if root is not None else (1, 1)
        try:
            expressions.validate(
                str(text), names, types=types, expect=expect, source=source.config_file, line=line, column=column
            )
        except expressions.ExpressionError as exc:
            problems.append(str(exc).split("\n", 1)[0] + f" (in {_key_text(keys)})")

    def column_ref(keys: tuple[str | int, ...], path: Any) -> None:
        name = str(path).replace(".", "_")
        if name not in source.columns and name not in ("event_ts", "event_date"):
            known = ", ".join(c.path for c in source.contract)
            problem(keys, f"{path!r} is not a contract column of {source.name} (known: {known})")

    def value_spec(keys: tuple[str | int, ...], spec: Any) -> None:
        if not isinstance(spec, Mapping):
            return
        kinds = [k for k in _VALUE_SPECS if k in spec]
        if len(kinds) != 1 or (kinds != ["map"] and len(spec) != 1):
            problem(keys, f"a value spec has exactly one of {', '.join(_VALUE_SPECS)}, got {sorted(spec)}")
            return
        kind = kinds[0]
        if kind == "expr":
            expression((*keys, "expr"), spec["expr"], None)
        elif kind == "days_late":
            pair = spec["days_late"]
            if not isinstance(pair, list) or len(pair) != 2:
                problem((*keys, "days_late"), "must list two columns: [timestamp_column, due_date_column]")
            else:
                for i, path in enumerate(pair):
                    column_ref((*keys, "days_late", i), path)
        elif kind == "map":
            column_ref((*keys, "map"), spec["map"])
            if not isinstance(spec.get("values"), Mapping):
                problem((*keys, "values"), "a map needs values: {raw: canonical, ...}")
        else:
            column_ref((*keys, kind), spec[kind])

    for column in source.contract:
        if column.name in ADDED_COLUMNS or column.name.startswith("_"):
            problem(
                ("contract", column.path),
                f"raw column {column.path!r} has the name of a column the pipeline adds "
                f"({', '.join(sorted(c for c in ADDED_COLUMNS if not c.startswith('_')))}, or any name starting "
                "with '_'): rename it in the contract",
            )
    for i, check in enumerate(source.checks):
        if not isinstance(check, Mapping) or "rule" not in check:
            problem(("checks", i), "a check needs a rule (and a reason)")
            continue
        expression(("checks", i, "rule"), check["rule"], expressions.BOOLEAN)
    for i, mapping in enumerate(source.mappings):
        if "when" in mapping:
            expression(("mappings", i, "when"), mapping["when"], expressions.BOOLEAN)
        for key in _MAPPING_VALUES:
            value_spec(("mappings", i, key), mapping.get(key))
        for name, spec in (mapping.get("attributes") or {}).items():
            value_spec(("mappings", i, "attributes", name), spec)
    for name, spec in source.attributes.items():
        value_spec(("attributes", name), spec)
    if source.profile is not None:
        for name, spec in (source.profile.get("columns") or {}).items():
            value_spec(("profile", "columns", name), spec)
    if source.event_time is not None:
        column_ref(("event_time", "column"), source.event_time.get("column"))
    return problems


def _key_text(keys: tuple[str | int, ...]) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")


def _yaml_root(path: str) -> Any:
    try:
        return yaml.compose(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None


def with_subscriber_and_time(df: DataFrame, source: Source, ctx: IngestContext) -> DataFrame:
    """Add subscriber_id (pseudonymised), event_ts (UTC) and event_date (operator-local day)."""
    msisdn = F.col(source.subscriber_column)
    spec = source.event_time
    if spec is None:
        local_midnight = F.lit(datetime.combine(ctx.ds, datetime.min.time())).cast("timestamp")
        event_ts = F.to_utc_timestamp(local_midnight, ctx.timezone)
    else:
        column = F.col(spec["column"].replace(".", "_"))
        type_name = source.columns[spec["column"].replace(".", "_")].type
        event_ts = F.try_to_timestamp(column, F.lit(spec["format"])) if "format" in spec else column.cast("timestamp")
        if spec.get("zone") == "local" or type_name == "date":
            event_ts = F.to_utc_timestamp(event_ts, ctx.timezone)
    digits = normalise_msisdn(msisdn, ctx.country_code)
    return df.select(
        "*",
        F.coalesce(F.length(digits).between(8, 15), F.lit(False)).alias("_msisdn_ok"),  # "N/A" is not ok
        pseudonymise(msisdn, ctx.country_code).alias("subscriber_id"),
        event_ts.alias("event_ts"),
    ).withColumn("event_date", F.to_date(F.from_utc_timestamp(F.col("event_ts"), ctx.timezone)))


def with_record_key(df: DataFrame, source: Source) -> DataFrame:
    """Deterministic id of the raw record: source + natural key, with the MSISDN replaced by
    its pseudonym (a plain hash of a phone number would be trivially reversible)."""
    parts = [
        F.col("subscriber_id")
        if name == source.subscriber_column
        else F.coalesce(F.col(name).cast("string"), F.lit(""))
        for name in source.natural_key
    ]
    return df.withColumn("record_key", F.sha2(F.concat_ws("|", F.lit(source.name), *parts), 256))


def with_reject_reason(df: DataFrame, source: Source, ctx: IngestContext) -> DataFrame:
    """First failing check per row as (reject_reason, reject_message); null when the row is fine.

    Order: malformed line, missing field, bad type, bad MSISDN, bad timestamp, configured rules,
    event date outside [ds - max_lateness, ds], no mapping applies.
    """
    reasons: list[tuple[Column, Column, Column]] = [
        (
            F.col(CORRUPT).isNotNull(),
            F.lit("malformed_record"),
            F.lit("line could not be parsed into the contract columns"),
        ),
    ]
    for name, column in source.columns.items():
        raw = F.col(f"_raw_{name}")
        if not column.nullable:
            reasons.append(
                (
                    raw.isNull() | (F.trim(raw) == ""),
                    F.lit("missing_field"),
                    F.lit(f"required field '{column.path}' is missing"),
                )
            )
        shown = F.lit("<redacted>") if column.pii or name == source.subscriber_column else raw
        reasons.append(
            (
                raw.isNotNull() & (F.trim(raw) != "") & F.col(name).isNull(),
                F.lit("invalid_type"),
                F.format_string(f"field '{column.path}' value '%s' is not a valid {column.type}", shown),
            )
        )
    reasons.append(
        (
            ~F.col("_msisdn_ok"),
            F.lit("invalid_msisdn"),
            F.lit(f"field '{source.subscriber_column}' is not a valid MSISDN"),
        )
    )
    if source.event_time is not None:
        time_path = source.event_time["column"]
        time_fmt = source.event_time.get("format", "timestamp")
        reasons.append(
            (
                F.col("event_ts").isNull(),
                F.lit("invalid_timestamp"),
                F.format_string(
                    f"field '{time_path}' value '%s' does not match {time_fmt}",
                    F.col(f"_raw_{time_path.replace('.', '_')}"),
                ),
            )
        )
    names = _expression_names(source, ctx)
    for i, check in enumerate(source.checks):
        where = f"{source.config_file}#checks[{i}].rule"
        node = expressions.parse(str(check["rule"]), source=where)
        expressions.check_names(node, names, text=str(check["rule"]), source=where, line=1, column=1)
        rule = expressions.compile_node(node, names.__getitem__)
        shown = [
            F.format_string(f"{n}=%s", F.coalesce(names[n].cast("string"), F.lit("null")))
            for n in sorted(expressions.names(node))
            if n != "ds"
        ]
        message = (
            F.concat(
                F.lit(f"rule '{expressions.to_text(node)}' failed"), F.lit(" ("), F.concat_ws(", ", *shown), F.lit(")")
            )
            if shown
            else F.lit(f"rule '{expressions.to_text(node)}' failed")
        )
        reasons.append((~F.coalesce(rule, F.lit(False)), F.lit(check.get("reason", f"check_{i}")), message))
    earliest = ctx.ds - timedelta(days=ctx.max_lateness_days)
    reasons.append(
        (
            F.col("event_date") > F.lit(ctx.ds),
            F.lit("future_event"),
            F.format_string(f"event date %s is after the run date {ctx.ds}", F.col("event_date").cast("string")),
        )
    )
    reasons.append(
        (
            F.col("event_date") < F.lit(earliest),
            F.lit("too_late"),
            F.format_string(
                f"event date %s is more than {ctx.max_lateness_days} days before {ctx.ds}",
                F.col("event_date").cast("string"),
            ),
        )
    )
    if source.profile is None:  # snapshot rows feed the profile even when no event applies
        reasons.append(
            (F.col("_mapped") == 0, F.lit("unmapped_record"), F.lit("no event mapping applies to this record"))
        )

    first = F.when(reasons[0][0], F.struct(reasons[0][1].alias("reason"), reasons[0][2].alias("message")))
    for condition, code, text in reasons[1:]:  # one flat CASE: the first failing check wins
        first = first.when(condition, F.struct(code.alias("reason"), text.alias("message")))
    return df.withColumn("_reject", first).select(
        *[c for c in df.columns],
        F.col("_reject.reason").alias("reject_reason"),
        F.col("_reject.message").alias("reject_message"),
    )


def mapping_conditions(source: Source, ctx: IngestContext) -> list[Column]:
    names = _expression_names(source, ctx)
    conditions = []
    for i, mapping in enumerate(source.mappings):
        if "when" not in mapping:
            conditions.append(F.lit(True))
            continue
        where = f"{source.config_file}#mappings[{i}].when"
        conditions.append(
            F.coalesce(expressions.compile_expression(str(mapping["when"]), names, source=where), F.lit(False))
        )
    return conditions


def with_mapped_count(df: DataFrame, source: Source, ctx: IngestContext) -> DataFrame:
    total = sum((c.cast("int") for c in mapping_conditions(source, ctx)), F.lit(0))
    return df.withColumn("_mapped", total)


def classify(df: DataFrame, source: Source, ctx: IngestContext, known_subscribers: DataFrame | None) -> DataFrame:
    """Conformed raw rows -> the same rows with subscriber/time/record key and a final
    `_status` (accepted | rejected | duplicate) with reject_reason and reject_message."""
    df = (
        with_hmac_key(df, ctx.key)
        .transform(lambda d: with_subscriber_and_time(d, source, ctx))
        .transform(lambda d: with_mapped_count(d, source, ctx))
        .transform(lambda d: with_reject_reason(d, source, ctx))
        .transform(lambda d: with_record_key(d, source))
    )
    if known_subscribers is not None:
        known = known_subscribers.select("subscriber_id", F.lit(True).alias("_known")).distinct()
        df = (
            df.join(known, "subscriber_id", "left")
            .withColumn(
                "reject_reason",
                F.when(
                    F.col("reject_reason").isNull() & F.col("_known").isNull(), F.lit("unknown_subscriber")
                ).otherwise(F.col("reject_reason")),
            )
            .withColumn(
                "reject_message",
                F.when(
                    F.col("reject_reason") == "unknown_subscriber", F.lit("subscriber is not in the CRM snapshot")
                ).otherwise(F.col("reject_message")),
            )
        )
    ranked = F.row_number().over(
        _window_by_record_key().orderBy(F.col("reject_reason").isNotNull(), _raw_text(source), F.col(SOURCE_FILE))
    )
    df = df.withColumn("_rank", ranked)
    duplicate_in_batch = F.col("reject_reason").isNull() & (F.col("_rank") > 1)
    df = df.select(  # both from the same input: the condition reads the reason before it changes
        *[c for c in df.columns if c not in ("reject_reason", "reject_message")],
        F.when(duplicate_in_batch, F.lit("duplicate")).otherwise(F.col("reject_reason")).alias("reject_reason"),
        F.when(duplicate_in_batch, F.lit("same record already accepted in this extract"))
        .otherwise(F.col("reject_message"))
        .alias("reject_message"),
    )
    return df.withColumn("_status", _status())


def _raw_text(source: Source) -> Column:
    """The raw values as one string: a cheap total order among copies of a record."""
    return F.concat_ws("\u0001", F.col(CORRUPT), *[F.col(f"_raw_{name}") for name in source.columns])


def _status() -> Column:
    return (
        F.when(F.col("reject_reason").isNull(), F.lit(ACCEPTED))
        .when(F.col("reject_reason") == "duplicate", F.lit(DUPLICATE))
        .otherwise(F.lit(REJECTED))
    )


def with_prior_duplicates(classified: DataFrame, prior_keys: DataFrame) -> DataFrame:
    """Accepted rows whose record an earlier run already wrote become duplicates."""
    prior = prior_keys.groupBy("record_key").agg(F.min("ingest_date").alias("_prior_ingest"))
    df = classified.join(prior, "record_key", "left")
    earlier = F.col("reject_reason").isNull() & F.col("_prior_ingest").isNotNull()
    return (
        df.withColumn(
            "reject_message",
            F.when(
                earlier,
                F.format_string("record already ingested by the run of %s", F.col("_prior_ingest").cast("string")),
            ).otherwise(F.col("reject_message")),
        )
        .withColumn("reject_reason", F.when(earlier, F.lit("duplicate")).otherwise(F.col("reject_reason")))
        .withColumn("_status", _status())
        .drop("_prior_ingest")
    )


def _window_by_record_key():
    from pyspark.sql.window import Window

    return Window.partitionBy("record_key")


def _raw_json(source: Source, ctx: IngestContext) -> Column:
    """The raw record as delivered, as JSON; PII fields replaced by their pseudonym and
    unparseable lines with phone-number-like digit runs masked."""
    fields = []
    for name, column in source.columns.items():
        raw = F.col(f"_raw_{name}")
        if name == source.subscriber_column:
            raw = F.col("subscriber_id")
        elif column.pii:
            raw = pseudonymise(raw, ctx.country_code)
        fields.append(raw.alias(column.path))
    parsed = F.to_json(F.struct(*fields))
    return F.when(F.col(CORRUPT).isNotNull(), _masked_line(F.col(CORRUPT))).otherwise(parsed)


def _masked_line(line: Column) -> Column:
    """An unparseable line with its phone numbers masked: digits of other scripts and Unicode
    spaces (no-break, narrow, tabs) made plain first, so '٠٦١٢...' or '06 12 34...' written
    with no-break spaces is masked like '06 12 34...'."""
    plain = F.translate(F.regexp_replace(line, r"[\p{Z}\t\x0B\f]", " "), OTHER_DIGITS, ASCII_DIGITS)
    return mask_digit_runs(plain)


def to_events(classified: DataFrame, source: Source, ctx: IngestContext) -> DataFrame:
    """Accepted rows -> normalized events: one per matching mapping, exploded in one pass."""
    if not source.mappings:  # a snapshot source that only feeds the profile
        return classified.sparkSession.createDataFrame([], schema_of(EVENTS))
    conditions = mapping_conditions(source, ctx)
    candidates = []
    for i, (mapping, condition) in enumerate(zip(source.mappings, conditions, strict=True)):
        where = f"mappings[{i}]"
        subtype = value_column(mapping["event_subtype"], source, ctx, where=f"{where}.event_subtype")
        mapping_id = mapping.get("id") or f"{mapping['event_type']}/{_describe(mapping['event_subtype'])}"
        attributes = {**source.attributes, **(mapping.get("attributes") or {})}
        event = F.struct(
            F.lit(mapping_id).alias("mapping_id"),
            F.lit(mapping["event_type"]).alias("event_type"),
            subtype.cast("string").alias("event_subtype"),
            _optional(mapping, "quantity", source, ctx, where).try_cast("double").alias("quantity"),
            _optional(mapping, "unit", source, ctx, where).cast("string").alias("unit"),
            _optional(mapping, "amount", source, ctx, where).try_cast("decimal(18,4)").alias("amount"),
            _optional(mapping, "currency", source, ctx, where).cast("string").alias("currency"),
            _optional(mapping, "channel", source, ctx, where).cast("string").alias("channel"),
            _attributes(attributes, source, ctx, where).alias("attributes"),
        )
        candidates.append(F.when(condition, event))
    exploded = classified.filter(F.col("_status") == ACCEPTED).select(
        "*", F.explode(F.filter(F.array(*candidates), lambda e: e.isNotNull())).alias("_event")
    )
    return exploded.select(
        F.sha2(F.concat_ws("|", F.col("record_key"), F.col("_event.mapping_id")), 256).alias("event_id"),
        "subscriber_id",
        "_event.event_type",
        "_event.event_subtype",
        F.lit(source.name).alias("source"),
        "event_ts",
        "event_date",
        "_event.quantity",
        "_event.unit",
        "_event.amount",
        "_event.currency",
        "_event.channel",
        "_event.attributes",
        "record_key",
        F.lit(f"{source.name}-{ctx.batch_suffix}").alias("ingest_batch_id"),
        F.lit(ctx.ds).alias("ingest_date"),
        F.when(F.col("event_date") < F.lit(ctx.ds), F.lit("late_arrival"))
        .otherwise(F.lit("normalized"))
        .alias("processing_status"),
    )


def _describe(spec: Any) -> str:
    return (
        spec
        if isinstance(spec, str)
        else "|".join(str(v) for v in spec.values() if not isinstance(v, Mapping)) or "mapped"
    )


def _optional(mapping: Mapping[str, Any], key: str, source: Source, ctx: IngestContext, where: str) -> Column:
    if key not in mapping or mapping[key] is None:
        return F.lit(None)
    return value_column(mapping[key], source, ctx, where=f"{where}.{key}")


def _attributes(specs: Mapping[str, Any], source: Source, ctx: IngestContext, where: str) -> Column:
    if not specs:
        return F.create_map().cast("map<string,string>")
    pairs = []
    for name, spec in sorted(specs.items()):
        pairs += [F.lit(name), value_column(spec, source, ctx, where=f"{where}.attributes.{name}").cast("string")]
    entries = F.map_from_arrays(F.array(*pairs[0::2]), F.array(*pairs[1::2]))
    return F.map_filter(entries, lambda _k, v: v.isNotNull())


def to_rejects(classified: DataFrame, source: Source, ctx: IngestContext) -> DataFrame:
    """Quarantined rows (rejected and duplicates) with the raw record, PII pseudonymised."""
    rejected = classified.filter(F.col("_status") != ACCEPTED).withColumn("_raw_json", _raw_json(source, ctx))
    return rejected.select(
        F.sha2(
            F.concat_ws("|", F.lit(source.name), F.col(SOURCE_FILE), F.col("_raw_json"), F.col("_rank").cast("string")),
            256,
        ).alias("reject_id"),
        F.lit(source.name).alias("source"),
        F.col(SOURCE_FILE).alias("source_file"),
        "reject_reason",
        "reject_message",
        F.col("_raw_json").alias("raw_record"),
        F.when(F.col("_msisdn_ok"), F.col("subscriber_id")).alias("subscriber_id"),
        F.lit(f"{source.name}-{ctx.batch_suffix}").alias("ingest_batch_id"),
        F.lit(ctx.ds).alias("ingest_date"),
    )


def to_profile(classified: DataFrame, source: Source, ctx: IngestContext) -> DataFrame:
    """Accepted CRM snapshot rows -> subscriber_profile (one row per subscriber per day)."""
    assert source.profile is not None
    columns = [
        value_column(spec, source, ctx, where=f"profile.columns.{name}").alias(name)
        for name, spec in source.profile["columns"].items()
    ]
    profile = classified.filter(F.col("_status") == ACCEPTED).select("subscriber_id", *columns)
    return profile.select(
        *[
            (F.col(f.name) if f.name in profile.columns else F.lit(None)).cast(f.dataType).alias(f.name)
            for f in schema_of(SUBSCRIBER_PROFILE).fields
            if f.name != "snapshot_date"
        ],
        F.lit(ctx.ds).alias("snapshot_date"),
    )


def accounting(classified: DataFrame, ds: date | None = None) -> dict[str, Any]:
    """Rows per status, events produced and (with `ds`) the late event dates accepted, in one
    aggregation whose result is a single small row."""
    accepted = F.col("_status") == ACCEPTED
    late = F.collect_set(F.when(accepted & (F.col("event_date") < F.lit(ds)), F.col("event_date"))) if ds else F.array()
    row = classified.agg(
        F.count(F.lit(1)).alias("read"),
        F.sum(F.when(accepted, 1).otherwise(0)).alias(ACCEPTED),
        F.sum(F.when(F.col("_status") == REJECTED, 1).otherwise(0)).alias(REJECTED),
        F.sum(F.when(F.col("_status") == DUPLICATE, 1).otherwise(0)).alias(DUPLICATE),
        F.sum(F.when(accepted, F.col("_mapped")).otherwise(0)).alias("events"),
        late.alias("late_dates"),
    ).first()
    counts: dict[str, Any] = {k: int(row[k] or 0) for k in ("read", ACCEPTED, REJECTED, DUPLICATE, "events")}
    if ds:
        counts["late_dates"] = sorted(row["late_dates"])  # at most max_lateness_days dates
    return counts


# -- I/O --------------------------------------------------------------------------------------


def known_subscribers(lakehouse: Lakehouse, ds: date, lookback_days: int) -> DataFrame:
    """Subscribers of the newest CRM snapshot within [ds - lookback, ds]."""
    profile = profile_as_of(lakehouse, ds, lookback_days)
    if profile is None:
        raise SourceError(
            f"no CRM snapshot between {ds - timedelta(days=lookback_days)} and {ds}: cannot check subscribers"
        )
    return profile.select("subscriber_id")


def prior_record_keys(
    lakehouse: Lakehouse, source: Source, ctx: IngestContext, late_dates: Sequence[date]
) -> DataFrame | None:
    """Record keys of `source` that earlier runs already wrote on the given (late) event dates."""
    if not late_dates or not lakehouse.exists(EVENTS):
        return None
    events = lakehouse.read(EVENTS, partitions=[("event_date", "in", list(late_dates))])
    return events.filter((F.col("source") == source.name) & (F.col("ingest_date") < F.lit(ctx.ds))).select(
        "record_key", "ingest_date"
    )


@dataclass(frozen=True)
class ShrinkGuard:
    """An extract far smaller than the source's last successful run is not allowed to replace
    that day's rows silently: `fail` fails the source, `hold` keeps what was there and marks the
    source degraded. `min_ratio` of the previous rows read, checked once the previous run read
    at least `min_previous_rows`."""

    min_ratio: float = 0.1
    min_previous_rows: int = 100
    action: str = "fail"

    @classmethod
    def from_config(cls, spec: Mapping[str, Any] | None) -> ShrinkGuard:
        spec = spec or {}
        guard = cls(
            float(spec.get("min_ratio", cls.min_ratio)),
            int(spec.get("min_previous_rows", cls.min_previous_rows)),
            str(spec.get("action", cls.action)),
        )
        if guard.action not in ("fail", "hold") or not 0 <= guard.min_ratio <= 1:
            raise ValueError("ingest.shrink_guard: action must be fail or hold, min_ratio between 0 and 1")
        return guard

    def problem(self, rows_read: int, previous: int | None) -> str | None:
        if previous is None or previous < self.min_previous_rows or rows_read >= self.min_ratio * previous:
            return None
        return (
            f"extract shrank to {rows_read:,} rows from {previous:,} at the last run "
            f"(below {self.min_ratio:.0%}): not written ({self.action})"
        )


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


def file_rejects(spark: Any, rejects: Sequence[FileReject], source: Source, ctx: IngestContext) -> DataFrame:
    """One events_rejected row per quarantined file (its lines are counted as rejected)."""
    rows = [
        (
            hashlib.sha256(f"{source.name}|{r.path}|file".encode()).hexdigest(),
            source.name,
            r.path,
            r.reason,
            mask_text(f"{r.message}; the file's {r.lines:,} line(s) were not read"),
            None,
            None,
            f"{source.name}-{ctx.batch_suffix}",
            ctx.ds,
        )
        for r in rejects
    ]
    return spark.createDataFrame(rows, schema_of(EVENTS_REJECTED))


class ExtractShrank(SourceError):
    """The extract is suspiciously smaller than the last run's: nothing was written."""

    def __init__(self, message: str, action: str, result: SourceResult) -> None:
        super().__init__(message)
        self.action, self.result = action, result


@dataclass
class PreparedSource:
    """One source read, classified (cached) and accounted for the run date; nothing written yet."""

    source: Source
    extract: Extract
    classified: DataFrame
    counts: dict[str, Any]
    seconds: float
    cached: list[DataFrame]

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
) -> PreparedSource:
    """Read and classify one source, count its rows (one job) and apply the shrink guard."""
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
        prior = prior_record_keys(lakehouse, source, ctx, prepared.counts["late_dates"])
        if prior is not None:  # late records: drop those an earlier run already wrote
            prepared.classified = with_prior_duplicates(classified, prior).persist(StorageLevel.MEMORY_AND_DISK)
            prepared.cached.append(prepared.classified)
            prepared.counts = accounting(prepared.classified)
    except BaseException:
        prepared.release()
        raise
    prepared.seconds = time.monotonic() - started
    return prepared


def write_sources(lakehouse: Lakehouse, batch: Sequence[PreparedSource], ctx: IngestContext) -> float:
    """Events, quarantine and profile rows of every source in `batch`: one commit per table,
    replacing exactly what these sources wrote for the run date before. Returns the seconds."""
    started = time.monotonic()
    names = [p.source.name for p in batch]
    profiles = [to_profile(p.classified, p.source, ctx) for p in batch if p.source.profile is not None]
    if profiles:
        lakehouse.write(
            _union(profiles),
            SUBSCRIBER_PROFILE,
            partition_by=["snapshot_date"],
            replace_where={"snapshot_date": ctx.ds},
        )
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


def _union(frames: Sequence[DataFrame]) -> DataFrame:
    return functools.reduce(DataFrame.unionByName, frames)


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


def run_ingest(
    lakehouse: Lakehouse,
    sources: Sequence[Source],
    ctx: IngestContext,
    raw_root: str,
    subscriber_lookback_days: int,
    guard: ShrinkGuard | None = None,
) -> list[SourceResult]:
    """Ingest every due, active source and record pipeline_runs.

    CRM snapshot sources go first and are committed on their own (the others check subscribers
    against today's snapshot); the other sources are read and accounted one by one, then
    written together: one commit per table. Should that combined write fail, each source is
    written alone, so a failure stays with the source that caused it.

    Whatever goes wrong with one source (its configuration, its files, Spark) is recorded for
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
                problems = source_problems(source)
                if problems:
                    raise SourceError(
                        f"source {source.name}: {len(problems)} configuration problem(s): " + "; ".join(problems)
                    )
                if source.check_known_subscriber and known is None:
                    known = known_subscribers(lakehouse, ctx.ds, subscriber_lookback_days).cache()
                ready = prepare_source(lakehouse, source, ctx, raw_root, known, guard, previous.get(source.name))
                if source.profile is None:
                    prepared.append(ready)
                    continue
                try:  # a snapshot source is committed now: the next sources check against it
                    results[source.name] = ready.result(ready.seconds + write_sources(lakehouse, [ready], ctx))
                finally:
                    ready.release()
            except Exception as exc:  # one source never stops the others
                results[source.name] = _failure(source, exc, time.monotonic() - started)
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
        return {p.source.name: p.result(p.seconds + seconds) for p in batch}
    except Exception as exc:
        log.warning("combined write of %d sources failed (%s): writing each source alone", len(batch), exc)
    results = {}
    for p in batch:
        try:
            results[p.source.name] = p.result(p.seconds + write_sources(lakehouse, [p], ctx))
        except Exception as exc:
            results[p.source.name] = _failure(p.source, exc, p.seconds)
    return results


def _failure(source: Source, exc: Exception, seconds: float) -> SourceResult:
    if isinstance(exc, ExtractShrank):
        status = "held" if exc.action == "hold" else ("failed" if source.mandatory else "degraded")
        result = dataclasses.replace(exc.result, status=status, message=describe_failure(exc))
    else:
        absent = isinstance(exc, SourceError) and str(exc).startswith(f"source {source.name}: no extract for")
        status = "failed" if source.mandatory else ("missing" if absent else "degraded")
        result = SourceResult(source.name, status, duration_s=round(seconds, 3), message=describe_failure(exc))
    log.error("source %s: %s", source.name, result.message)
    return result


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
