"""Classification of conformed raw rows: each row gets its pseudonymised subscriber, event
time and deterministic record key, the number of event mappings that apply, and one final
status: accepted, rejected (the first failing check as reject_reason/reject_message) or
duplicate (a copy within the extract, or a record an earlier run already wrote). Pure
DataFrame-in, DataFrame-out transformations.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs import expressions
from jobs.ingest.context import ACCEPTED, DUPLICATE, REJECTED, IngestContext
from jobs.ingest.values import expression_names
from jobs.privacy import mask_phone_numbers, normalise_msisdn, pseudonymise, with_hmac_key, without_hmac_key
from jobs.sources import CORRUPT, SOURCE_FILE, Source


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
        shown = F.lit("<redacted>") if column.pii or name == source.subscriber_column else mask_phone_numbers(raw)
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
                    mask_phone_numbers(F.col(f"_raw_{time_path.replace('.', '_')}")),
                ),
            )
        )
    names = expression_names(source, ctx)
    for i, check in enumerate(source.checks):
        where = f"{source.config_file}#checks[{i}].rule"
        node = expressions.parse(str(check["rule"]), source=where)
        expressions.check_names(node, names, text=str(check["rule"]), source=where, line=1, column=1)
        rule = expressions.compile_node(node, names.__getitem__)
        shown = [
            F.format_string(f"{n}=%s", mask_phone_numbers(F.coalesce(names[n].cast("string"), F.lit("null"))))
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
    reasons_of = {"reject_reason": F.col("_reject.reason"), "reject_message": F.col("_reject.message")}
    # added, then the struct dropped: naming every kept column would cost JVM round trips each
    return df.withColumn("_reject", first).withColumns(reasons_of).drop("_reject")


def mapping_conditions(source: Source, ctx: IngestContext) -> list[Column]:
    names = expression_names(source, ctx)
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
        .transform(without_hmac_key)  # the outputs that pseudonymise add the pads back: never cached or shuffled
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
    df = df.withColumns(  # both from the same input: the condition reads the reason before it changes
        {
            "reject_reason": F.when(duplicate_in_batch, F.lit("duplicate")).otherwise(F.col("reject_reason")),
            "reject_message": F.when(
                duplicate_in_batch, F.lit("same record already accepted in this extract")
            ).otherwise(F.col("reject_message")),
        }
    )
    return df.withColumn("_status", _status())


def _raw_text(source: Source) -> Column:
    """The raw values as one string: a cheap total order among copies of a record. A null reads
    as its own mark, so copies that differ only in which field is empty never tie."""
    values = [F.col(CORRUPT), *[F.col(f"_raw_{name}") for name in source.columns]]
    return F.concat_ws("\u0001", *[F.coalesce(v, F.lit("\u0002")) for v in values])


def _status() -> Column:
    return (
        F.when(F.col("reject_reason").isNull(), F.lit(ACCEPTED))
        .when(F.col("reject_reason") == "duplicate", F.lit(DUPLICATE))
        .otherwise(F.lit(REJECTED))
    )


def with_prior_duplicates(classified: DataFrame, prior_keys: DataFrame) -> DataFrame:
    """Accepted rows whose record another run already wrote become duplicates."""
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
