"""ML predictions from the data-science team: contract (conf/ml_predictions.yaml), checks and
loading into the `ml_predictions` table.

Each delivery is a dated folder of parquet or CSV files. Every row is accepted or quarantined in
`events_rejected` (source `ml_predictions`) with the first failing check, and the counts go to
`pipeline_runs` (stage `predictions`) as for any source: rows read = accepted + rejected +
duplicates. Scoring uses the newest accepted prediction per subscriber at most
`ml.max_age_days` old (conf/scoring.yaml); with none that fresh, the ML components are marked
degraded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from jobs.config import ConfigError, load_yaml
from jobs.sources import CORRUPT, SOURCE_FILE, ContractColumn, Source, _contract_column

SOURCE_NAME = "ml_predictions"
FORMATS = ("csv", "parquet")
REQUIRED_COLUMNS = (
    "subscriber_id",
    "prediction_date",
    "churn_probability",
    "risk_score",
    "nbo_offer_id",
    "nbo_score",
    "model_name",
    "model_version",
)
RANGES = {"churn_probability": (0.0, 1.0), "risk_score": (0.0, 100.0), "nbo_score": (0.0, 1.0)}
ACCEPTED, REJECTED, DUPLICATE = "accepted", "rejected", "duplicate"


@dataclass(frozen=True)
class PredictionContract:
    source: Source
    max_lateness_days: int
    active: bool = True

    @classmethod
    def load(cls, path: str | Path) -> PredictionContract:
        path = Path(path)
        data = load_yaml(path) or {}
        if data.get("format") not in FORMATS:
            raise ConfigError(path, "format", f"must be one of {', '.join(FORMATS)}")
        if "{ds" not in str((data.get("connection") or {}).get("path", "")):
            raise ConfigError(path, "connection.path", "must be a path template containing {ds}")
        contract = data.get("contract") or {}
        missing = [c for c in REQUIRED_COLUMNS if c not in contract]
        if missing:
            raise ConfigError(path, "contract", f"lacks column(s) {missing}")
        lateness = data.get("max_lateness_days", 7)
        if not isinstance(lateness, int) or lateness < 0:
            raise ConfigError(path, "max_lateness_days", "must be a non-negative integer")
        source = Source(
            name=str(data.get("name", SOURCE_NAME)),
            kind="ml_predictions",
            format=data["format"],
            sync_frequency="daily",
            connection=data["connection"],
            contract=tuple(_contract_column(p, v) for p, v in contract.items()),
            natural_key=tuple(data.get("natural_key") or ("subscriber_id", "prediction_date", "model_name")),
            subscriber_column="subscriber_id",
            mappings=(),
            active=bool(data.get("active", True)),
            options=data.get("options") or {},
            config_file=str(path),
        )
        return cls(source, lateness, source.active)


# -- pure transformations ---------------------------------------------------------------------


def classify_predictions(
    conformed: DataFrame,
    columns: Mapping[str, ContractColumn],
    ds: date,
    max_lateness_days: int,
    known_subscribers: DataFrame,
    offer_ids: Sequence[str],
) -> DataFrame:
    """Conformed rows (typed columns, `_raw_<name>`, `_source_file`, `_corrupt_record`) -> the
    same rows plus reject_reason, reject_message and `_status` (accepted | rejected | duplicate).

    Checks, first failure wins: malformed_record, missing_field, invalid_type,
    invalid_subscriber_id (not a pseudonym), out_of_range, incomplete_nbo (offer without score
    or score without offer), future_prediction, stale_prediction (older than the lateness
    window), unknown_offer (not in conf/offers.yaml), unknown_subscriber, duplicate.
    """
    reasons: list[tuple[Column, str, Column]] = [
        (F.col(CORRUPT).isNotNull(), "malformed_record", F.lit("line could not be parsed into the contract columns"))
    ]
    for name, column in columns.items():
        raw = F.col(f"_raw_{name}")
        blank = raw.isNull() | (F.trim(raw) == "")
        if not column.nullable:
            reasons.append((blank, "missing_field", F.lit(f"required field '{column.path}' is missing")))
        reasons.append(
            (
                ~blank & F.col(name).isNull(),
                "invalid_type",
                F.format_string(f"field '{column.path}' value '%s' is not a valid {column.type}", raw),
            )
        )
    reasons.append(
        (
            ~F.col("subscriber_id").rlike("^[0-9a-f]{64}$"),
            "invalid_subscriber_id",
            F.lit("field 'subscriber_id' is not a subscriber pseudonym (64 lowercase hex digits)"),
        )
    )
    for name, (low, high) in RANGES.items():
        reasons.append(
            (
                ~F.col(name).between(low, high),
                "out_of_range",
                F.format_string(f"field '{name}' value %s is outside [{low:g}, {high:g}]", F.col(name)),
            )
        )
    reasons.append(
        (
            F.col("nbo_offer_id").isNull() != F.col("nbo_score").isNull(),
            "incomplete_nbo",
            F.lit("nbo_offer_id and nbo_score must both be set or both be empty"),
        )
    )
    reasons.append(
        (
            F.col("prediction_date") > F.lit(ds),
            "future_prediction",
            F.format_string(f"prediction date %s is after the run date {ds}", F.col("prediction_date").cast("string")),
        )
    )
    reasons.append(
        (
            F.col("prediction_date") < F.lit(ds - timedelta(days=max_lateness_days)),
            "stale_prediction",
            F.format_string(
                f"prediction date %s is more than {max_lateness_days} days before {ds}",
                F.col("prediction_date").cast("string"),
            ),
        )
    )
    reasons.append(
        (
            F.col("nbo_offer_id").isNotNull() & ~F.col("nbo_offer_id").isin(list(offer_ids)),
            "unknown_offer",
            F.format_string("nbo_offer_id '%s' is not in the offer catalogue", F.col("nbo_offer_id")),
        )
    )
    first = F.when(reasons[0][0], F.struct(F.lit(reasons[0][1]).alias("reason"), reasons[0][2].alias("message")))
    for condition, code, text in reasons[1:]:
        first = first.when(condition, F.struct(F.lit(code).alias("reason"), text.alias("message")))

    known = known_subscribers.select("subscriber_id", F.lit(True).alias("_known")).distinct()
    df = conformed.withColumn("_reject", first).join(known, "subscriber_id", "left")
    unknown = F.col("_reject").isNull() & F.col("_known").isNull()
    df = df.select(
        *conformed.columns,
        F.when(unknown, F.lit("unknown_subscriber")).otherwise(F.col("_reject.reason")).alias("reject_reason"),
        F.when(unknown, F.lit("subscriber is not in the CRM snapshot"))
        .otherwise(F.col("_reject.message"))
        .alias("reject_message"),
    )
    raw_text = F.concat_ws("\u0001", F.col(CORRUPT), *[F.col(f"_raw_{n}") for n in columns])
    key = Window.partitionBy(*[F.col(n) for n in ("subscriber_id", "prediction_date", "model_name")]).orderBy(
        F.col("reject_reason").isNotNull(), raw_text, F.col(SOURCE_FILE)
    )
    df = df.withColumn("_rank", F.row_number().over(key))
    duplicate = F.col("reject_reason").isNull() & (F.col("_rank") > 1)
    df = df.withColumn(
        "reject_message",
        F.when(
            duplicate, F.lit("same prediction (subscriber, date, model) already accepted in this delivery")
        ).otherwise(F.col("reject_message")),
    ).withColumn("reject_reason", F.when(duplicate, F.lit("duplicate")).otherwise(F.col("reject_reason")))
    status = (
        F.when(F.col("reject_reason").isNull(), F.lit(ACCEPTED))
        .when(F.col("reject_reason") == "duplicate", F.lit(DUPLICATE))
        .otherwise(F.lit(REJECTED))
    )
    return df.withColumn("_status", status)


def to_predictions(classified: DataFrame, ds: date) -> DataFrame:
    """Accepted rows -> ml_predictions rows (partitioned by the prediction date `ds`)."""
    return classified.filter(F.col("_status") == ACCEPTED).select(
        "subscriber_id",
        F.col("prediction_date").alias("ds"),
        "churn_probability",
        "risk_score",
        "nbo_offer_id",
        "nbo_score",
        "model_name",
        "model_version",
        F.lit(ds).alias("loaded_ds"),
    )


def to_prediction_rejects(classified: DataFrame, columns: Mapping[str, ContractColumn], source: str, ds: date):
    """Quarantined rows -> events_rejected rows (the raw record as JSON: no MSISDN is in it)."""
    raw = F.to_json(F.struct(*[F.col(f"_raw_{n}").alias(c.path) for n, c in columns.items()]))
    raw = F.when(F.col(CORRUPT).isNotNull(), F.col(CORRUPT)).otherwise(raw)
    rejected = classified.filter(F.col("_status") != ACCEPTED).withColumn("_raw_json", raw)
    return rejected.select(
        F.sha2(
            F.concat_ws("|", F.lit(source), F.col(SOURCE_FILE), F.col("_raw_json"), F.col("_rank").cast("string")), 256
        ).alias("reject_id"),
        F.lit(source).alias("source"),
        F.col(SOURCE_FILE).alias("source_file"),
        "reject_reason",
        "reject_message",
        F.col("_raw_json").alias("raw_record"),
        F.when(F.col("subscriber_id").rlike("^[0-9a-f]{64}$"), F.col("subscriber_id")).alias("subscriber_id"),
        F.lit(f"{source}-{ds.strftime('%Y%m%d')}").alias("ingest_batch_id"),
        F.lit(ds).alias("ingest_date"),
    )


def counts(classified: DataFrame) -> dict[str, Any]:
    """Rows read, accepted, rejected and duplicate, in one aggregation."""
    row = classified.agg(
        F.count(F.lit(1)).alias("read"),
        *[F.sum((F.col("_status") == s).cast("int")).alias(s) for s in (ACCEPTED, REJECTED, DUPLICATE)],
    ).first()
    return {k: int(row[k] or 0) for k in ("read", ACCEPTED, REJECTED, DUPLICATE)}


def newest_fresh_date(partition_dates: Sequence[str], ds: date, max_age_days: int) -> date | None:
    """The newest prediction date in [ds - max_age_days, ds], or None when predictions are stale."""
    fresh = [d for d in partition_dates if (ds - timedelta(days=max_age_days)).isoformat() <= d <= ds.isoformat()]
    return date.fromisoformat(max(fresh)) if fresh else None
