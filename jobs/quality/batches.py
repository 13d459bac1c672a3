"""Pure transformations building the batches the expectations validate. Cross-table checks
become columns computed with Spark expressions (the orphan values of a reference, the reject
rate of each source in pipeline_runs) that plain expectations then validate; an extract becomes
its contract columns and the values that do not parse, with PII redacted.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs import expressions
from jobs.privacy import normalise_msisdn
from jobs.run_log import UNAVAILABLE
from jobs.sources import Source, flat

REDACTED = "<redacted>"


def with_orphans(
    child: DataFrame, parent_keys: DataFrame, column: str, parent_column: str, where: str | None = None
) -> DataFrame:
    """Add `_orphan_<column>`: the value when it is not null, matches `where` and has no
    `parent_column` in `parent_keys`; null otherwise."""
    keys = parent_keys.select(F.col(parent_column).alias("_parent_key")).distinct()
    joined = child.join(keys, child[column] == keys["_parent_key"], "left")
    applies = F.lit(True)
    if where:
        applies = F.coalesce(
            expressions.compile_expression(
                where, {f.name: expressions.name_column(f.name, f.dataType) for f in child.schema}
            ),
            F.lit(False),
        )
    orphan = applies & F.col(column).isNotNull() & F.col("_parent_key").isNull()
    return joined.withColumn(f"_orphan_{column}", F.when(orphan, F.col(column))).drop("_parent_key")


def with_reject_rates(runs: DataFrame, sources: Sequence[str], min_rows_read: int = 0) -> DataFrame:
    """Add `reject_rate_<source>` per source: rows_rejected / rows_read on that source's ingest
    row, null on every other row. 0 when it read fewer than `min_rows_read` rows, and for a
    source left without data (failed, degraded, held): its status says so, and an extract with
    no usable file has every line rejected. One column per source keeps every rate in one
    aggregation."""
    rate = F.coalesce(
        F.try_divide(F.col("rows_rejected").cast("double"), F.col("rows_read").cast("double")), F.lit(0.0)
    )
    judged = (F.col("rows_read") >= min_rows_read) & ~F.col("status").isin(*UNAVAILABLE)
    rate = F.when(judged, rate).otherwise(F.lit(0.0))
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
