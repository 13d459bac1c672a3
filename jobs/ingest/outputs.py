"""What the classified rows become: normalized `events` (one per matching mapping), quarantined
`events_rejected` rows (rejected and duplicate records with the raw record as JSON, PII
pseudonymised and phone numbers masked, plus one row per quarantined file), `subscriber_profile`
rows from a CRM snapshot, and the accounting of rows per status. No reading or writing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.frames import local_frame, string_map
from jobs.ingest.classify import mapping_conditions
from jobs.ingest.context import ACCEPTED, DUPLICATE, REJECTED, IngestContext
from jobs.ingest.values import value_column
from jobs.privacy import mask_phone_numbers, mask_text, pseudonymise, with_hmac_key
from jobs.sources import CORRUPT, SOURCE_FILE, FileReject, Source
from jobs.tables import EVENTS, EVENTS_REJECTED, SUBSCRIBER_PROFILE, schema_of


def _raw_json(source: Source, ctx: IngestContext) -> Column:
    """The raw record as delivered, as JSON; PII fields replaced by their pseudonym, and
    phone-number-like digit runs masked in the other fields (a number delivered in the wrong
    column) and in unparseable lines."""
    fields = []
    for name, column in source.columns.items():
        raw = F.col(f"_raw_{name}")
        if name == source.subscriber_column:
            raw = F.col("subscriber_id")
        elif column.pii:
            raw = pseudonymise(raw, ctx.country_code)
        else:
            raw = mask_phone_numbers(raw)
        fields.append(raw.alias(column.path))
    parsed = F.to_json(F.struct(*fields))
    return F.when(F.col(CORRUPT).isNotNull(), mask_phone_numbers(F.col(CORRUPT))).otherwise(parsed)


def to_events(classified: DataFrame, source: Source, ctx: IngestContext) -> DataFrame:
    """Accepted rows -> normalized events: one per matching mapping.

    The explode only numbers the matching mappings; each field is then one CASE over that
    number, and the attributes every mapping shares are computed once per record. Building
    whole event structs inside the explode would repeat every value per mapping in one
    generated method, outside common-subexpression elimination."""
    if not source.mappings:  # a snapshot source that only feeds the profile
        return local_frame(classified.sparkSession, [], schema_of(EVENTS))
    conditions = mapping_conditions(source, ctx)
    per_mapping = [_mapping_fields(i, mapping, source, ctx) for i, mapping in enumerate(source.mappings)]
    is_mapping = [F.col(_MAPPING) == i for i in range(len(source.mappings))]  # shared by every field's CASE
    shared, attributes = _attribute_values(source, ctx, is_mapping)
    # exploded with its nulls, then filtered: dropping them inside the array takes a lambda,
    # which would keep the whole projection out of generated code
    numbered = (
        with_hmac_key(classified.filter(F.col("_status") == ACCEPTED), ctx.key)  # for `pseudonymise` values
        .select(
            "*",
            *[value.alias(name) for name, value in shared.items()],
            F.explode(F.array(*[F.when(c, F.lit(i)) for i, c in enumerate(conditions)])).alias(_MAPPING),
        )
        .filter(F.col(_MAPPING).isNotNull())
    )

    def field(name: str) -> Column:
        return _by_mapping([fields[name] for fields in per_mapping], is_mapping).alias(name)

    return numbered.select(
        F.sha2(
            F.concat_ws("|", F.col("record_key"), _by_mapping([f["mapping_id"] for f in per_mapping], is_mapping)), 256
        ).alias("event_id"),
        "subscriber_id",
        field("event_type"),
        field("event_subtype"),
        F.lit(source.name).alias("source"),
        "event_ts",
        "event_date",
        field("quantity"),
        field("unit"),
        field("amount"),
        field("currency"),
        field("channel"),
        string_map(attributes).alias("attributes"),
        "record_key",
        F.lit(f"{source.name}-{ctx.batch_suffix}").alias("ingest_batch_id"),
        F.lit(ctx.ds).alias("ingest_date"),
        F.when(F.col("event_date") < F.lit(ctx.ds), F.lit("late_arrival"))
        .otherwise(F.lit("normalized"))
        .alias("processing_status"),
    )


_MAPPING = "_mapping"  # which of the source's mappings an exploded row is


def _by_mapping(values: Sequence[Column], is_mapping: Sequence[Column]) -> Column:
    """The value of the mapping this event came from (`is_mapping[i]`: the event is mapping i's)."""
    if len(values) == 1:
        return values[0]
    chosen = F.when(is_mapping[0], values[0])
    for condition, value in zip(is_mapping[1:], values[1:], strict=True):
        chosen = chosen.when(condition, value)
    return chosen


def _mapping_fields(i: int, mapping: Mapping[str, Any], source: Source, ctx: IngestContext) -> dict[str, Column]:
    where = f"mappings[{i}]"
    subtype = value_column(mapping["event_subtype"], source, ctx, where=f"{where}.event_subtype")
    return {
        "mapping_id": F.lit(mapping.get("id") or f"{mapping['event_type']}/{_describe(mapping['event_subtype'])}"),
        "event_type": F.lit(mapping["event_type"]),
        "event_subtype": subtype.cast("string"),
        "quantity": _optional(mapping, "quantity", source, ctx, where).try_cast("double"),
        "unit": _optional(mapping, "unit", source, ctx, where).cast("string"),
        "amount": _optional(mapping, "amount", source, ctx, where).try_cast("decimal(18,4)"),
        "currency": _optional(mapping, "currency", source, ctx, where).cast("string"),
        "channel": _optional(mapping, "channel", source, ctx, where).cast("string"),
    }


def _attribute_values(
    source: Source, ctx: IngestContext, is_mapping: Sequence[Column]
) -> tuple[dict[str, Column], dict[str, Column]]:
    """The attributes of an event by name (a mapping's own attributes override the source's),
    and the values to compute once per record before the explode (`_attribute_<name>`): the
    source's attributes no mapping overrides."""
    names = sorted({*source.attributes, *(k for m in source.mappings for k in m.get("attributes") or {})})
    shared: dict[str, Column] = {}
    attributes: dict[str, Column] = {}
    for name in names:
        if not any(name in (m.get("attributes") or {}) for m in source.mappings):
            column = f"_attribute_{name}"
            shared[column] = value_column(source.attributes[name], source, ctx, where=f"attributes.{name}")
            attributes[name] = F.col(column)
            continue
        values = []
        for i, mapping in enumerate(source.mappings):
            spec = {**source.attributes, **(mapping.get("attributes") or {})}.get(name)
            where = f"mappings[{i}].attributes.{name}"
            values.append(F.lit(None) if spec is None else value_column(spec, source, ctx, where=where))
        attributes[name] = _by_mapping(values, is_mapping)
    return shared, attributes


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


def to_rejects(classified: DataFrame, source: Source, ctx: IngestContext) -> DataFrame:
    """Quarantined rows (rejected and duplicates) with the raw record, PII pseudonymised."""
    rejected = with_hmac_key(classified.filter(F.col("_status") != ACCEPTED), ctx.key).withColumn(
        "_raw_json", _raw_json(source, ctx)
    )
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
    profile = with_hmac_key(classified.filter(F.col("_status") == ACCEPTED), ctx.key).select("subscriber_id", *columns)
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
    return local_frame(spark, rows, schema_of(EVENTS_REJECTED))
