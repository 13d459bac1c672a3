"""DuckDB reference of three nightly stages and the checks that Spark's tables agree with it.

The reference queries are plain SQL under bench/reference/ (parameters bound by DuckDB). They
read the same inputs as the Spark stage: the raw CDR files of the run date for ingest, the
`events` table for `daily_activity`, and `daily_activity` + `subscriber_profile` +
`ml_predictions` for the scores. Delta tables are read through the deltalake package (no DuckDB
extension to download). Each check returns the reference seconds, whether Spark agrees and the
figures behind the verdict; what cannot be reproduced exactly is named and left out.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from jobs.config import Config
from jobs.scoring import ScoringConfig
from jobs.settings import load_settings
from jobs.sources import Source, list_extract_files

REFERENCE_DIR = Path(__file__).parent / "reference"
FILE_REASONS = (
    "unreadable_file",
    "encoding_error",
    "compressed_mismatch",
    "empty_file",
    "duplicate_header",
    "missing_column",
)
SCORE_TOLERANCE = 0.5  # points on the 0-100 scale
VALUE_TOLERANCE = 1e-6  # relative, for sums of doubles added in another order
COMPONENT_TOLERANCE = 1e-4  # Spark's breakdown rounds component values to 4 decimals
PERCENTILE_STEP = 1 / 99  # one of the 99 cut points


@dataclass
class Check:
    """One stage compared: reference seconds, verdict and the figures behind it."""

    name: str
    reference_seconds: float = 0.0
    agree: bool = False
    details: dict[str, Any] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "reference_seconds": round(self.reference_seconds, 3),
            "agree": self.agree,
            "details": self.details,
            "excluded": self.excluded,
        }


def hmac_pads(key: str) -> tuple[bytes, bytes]:
    """Inner and outer HMAC-SHA256 pads of the key (RFC 2104), bound as blob parameters."""
    block = key.encode()
    if len(block) > 64:
        block = hashlib.sha256(block).digest()
    block = block.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)


def sql(name: str) -> str:
    return (REFERENCE_DIR / name).read_text(encoding="utf-8")


class Reference:
    """A DuckDB connection over one lakehouse, with the reference macros."""

    def __init__(
        self,
        lakehouse_root: str | Path,
        threads: int | None = None,
        memory_limit: str | None = None,
        spill_directory: str | Path | None = None,
    ) -> None:
        self.root = Path(lakehouse_root)
        config = {"threads": int(threads)} if threads else {}
        if memory_limit:
            config["memory_limit"] = memory_limit  # it shares the machine with the Spark driver
        if spill_directory:
            config["temp_directory"] = str(spill_directory)
        self.con = duckdb.connect(config=config)
        self.con.execute(sql("functions.sql"))

    def register(self, table: str, empty_schema: pa.Schema | None = None) -> bool:
        """Register a Delta table by name; an absent one as an empty relation when a schema is given."""
        path = self.root / table
        if DeltaTable.is_deltatable(str(path)):
            self.con.register(table, DeltaTable(str(path)).to_pyarrow_dataset())
            return True
        if empty_schema is not None:
            self.con.register(table, empty_schema.empty_table())
        return False

    def timed(self, statement: str, params: Mapping[str, Any]) -> float:
        started = time.perf_counter()
        self.con.execute(statement, dict(params)).fetchall()
        return time.perf_counter() - started

    def rows(self, query: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(query, dict(params or {})).fetchall()

    def close(self) -> None:
        self.con.close()


# -- CDR ingest -------------------------------------------------------------------------------


def check_cdr_ingest(ref: Reference, config: Config, ds: date) -> Check:
    """The CDR source's normalisation of the run date's files against Spark's events and
    events_rejected rows of that ingest: outcomes per event type/subtype/date and per reject
    reason, and the events themselves (id, subscriber, subtype, date, quantity)."""
    check = Check("cdr_ingest")
    spec = config.sources["cdr"]
    source = Source.from_config(spec, config.file_of("sources.cdr"))
    ref.register("events")
    ref.register("events_rejected")
    ref.register("subscriber_profile")
    set_aside = {
        row[0]
        for row in ref.rows(
            "select distinct source_file from events_rejected where ingest_date = $ds and source = 'cdr' "
            "and reject_reason in (select unnest($reasons))",
            {"ds": ds, "reasons": list(FILE_REASONS)},
        )
    }
    files = [f for f in list_extract_files(source.path_for(ds, str(config.require("raw.root")))) if f not in set_aside]
    files = [f for f in files if _uri(f) not in set_aside]
    expected_header = [c.path for c in source.contract]
    other_layout = [f for f in files if _header(f, str(source.options.get("sep", ","))) != expected_header]
    if other_layout or not files:
        check.details["error"] = f"reference reads files in contract column order; {len(other_layout)} file(s) differ"
        return check
    if set_aside:
        check.excluded.append(f"{len(set_aside)} file(s) quarantined whole by Spark's file screening (not re-screened)")
    inner, outer = hmac_pads(str(config.require("privacy.pseudonymisation_key")))
    ingest = load_settings(config).ingest
    lateness = ingest.max_lateness_days
    params = {
        "files": files,
        "delim": "\x01",
        "ds": ds,
        "earliest": ds - timedelta(days=lateness),
        "known_from": ds - timedelta(days=ingest.subscriber_lookback_days),
        "country_code": ingest.country_code,
        "inner_pad": inner,
        "outer_pad": outer,
    }
    check.reference_seconds = ref.timed(
        f"create or replace temp table cdr_reference as {sql('cdr_ingest.sql')}", params
    )
    outcome_query = """
        with spark as (
            select 'accepted' as outcome, event_type || '/' || event_subtype as detail, event_date,
                   count(*) as rows, sum(quantity) as quantity, count(distinct subscriber_id) as subscribers
            from events where ingest_date = $ds and source = 'cdr'
            group by all
            union all
            select 'rejected', reject_reason, null, count(*), null, count(distinct subscriber_id)
            from events_rejected
            where ingest_date = $ds and source = 'cdr' and reject_reason not in (select unnest($reasons))
            group by all
        ),
        reference as (
            select case when reject_reason is null then 'accepted' else 'rejected' end as outcome,
                   coalesce(reject_reason, event_type || '/' || event_subtype) as detail,
                   event_date, count(*) as rows, sum(quantity) as quantity,
                   count(distinct subscriber_id) as subscribers
            from cdr_reference
            group by all
        )
        select coalesce(s.outcome, r.outcome) as outcome, coalesce(s.detail, r.detail) as detail,
               coalesce(s.event_date, r.event_date) as event_date,
               s.rows, r.rows, s.quantity, r.quantity, s.subscribers, r.subscribers
        from spark s
        full join reference r
            on s.outcome = r.outcome and s.detail = r.detail and s.event_date is not distinct from r.event_date
        order by all
    """
    outcomes = ref.rows(outcome_query, {"ds": ds, "reasons": list(FILE_REASONS)})
    table, differing = [], []
    for outcome, detail, event_date, s_rows, r_rows, s_qty, r_qty, s_subs, r_subs in outcomes:
        same = s_rows == r_rows and s_subs == r_subs and _close(s_qty, r_qty)
        row = {
            "outcome": outcome,
            "detail": detail,
            "event_date": event_date.isoformat() if event_date else None,
            "spark_rows": s_rows,
            "reference_rows": r_rows,
        }
        table.append(row)
        if not same:
            differing.append({**row, "spark_quantity": s_qty, "reference_quantity": r_qty})
    only_spark, only_reference = events_apart(ref, ds)
    check.details = {
        "files": len(files),
        "outcomes": table,
        "differing_outcomes": differing,
        "events_only_in_spark": only_spark,
        "events_only_in_reference": only_reference,
    }
    check.agree = bool(outcomes) and not differing and only_spark == 0 and only_reference == 0
    return check


def events_apart(ref: Reference, ds: date) -> tuple[int, int]:
    """Spark's CDR events of the ingest of `ds` (`events`) against the reference's accepted rows
    (`cdr_reference`), field by field: how many are only in Spark and how many only in the
    reference, copies counted. Each event is compared as a 64-bit hash of its compared fields,
    so the multisets compared are of integers: an EXCEPT ALL of the rows themselves spilled
    38 GB to disk at 1M subscribers (20 M events a side). A difference goes unseen only if the
    two rows' hashes collide (about one chance in 2^64)."""
    fields = """hash(event_id::varchar, subscriber_id::varchar, event_subtype::varchar, event_date::date,
                     round(quantity::double, 9), attributes['cell_id']::varchar,
                     attributes['roaming']::varchar, attributes['counterpart_id']::varchar)"""
    query = f"""
        with spark as (select {fields} as event from events where ingest_date = $ds and source = 'cdr'),
        reference as (select {fields} as event from cdr_reference where reject_reason is null)
        select (select count(*) from (from spark except all from reference)),
               (select count(*) from (from reference except all from spark))
    """
    only_spark, only_reference = ref.rows(query, {"ds": ds})[0]
    return int(only_spark), int(only_reference)


def _uri(path: str) -> str:
    return path if "://" in path else "file://" + str(Path(path).resolve())


def _header(path: str, sep: str) -> list[str]:
    with open(path, "rb") as handle:
        first = handle.readline().decode("utf-8-sig", errors="replace").rstrip("\r\n")
    return [c.strip().strip('"').strip() for c in first.split(sep)]


def _close(a: Any, b: Any, tolerance: float = VALUE_TOLERANCE) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= tolerance * max(1.0, abs(float(a)), abs(float(b)))


# -- daily_activity ---------------------------------------------------------------------------


def check_daily_activity(ref: Reference, config: Config, ds: date) -> Check:
    """daily_activity of the run date from `events`, every metric and flag of conf/metrics.yaml."""
    check = Check("daily_activity")
    ref.register("events")
    ref.register("daily_activity")
    check.reference_seconds = ref.timed(
        f"create or replace temp table activity_reference as {sql('daily_activity.sql')}", {"ds": ds}
    )
    metrics = load_settings(config).metrics.names
    spark = "(select * from daily_activity where activity_date = $ds)"
    check.details = compare_rows(ref, spark, "activity_reference", "subscriber_id", metrics, {"ds": ds})
    check.agree = _rows_agree(check.details)
    return check


# -- scores -----------------------------------------------------------------------------------


def check_scores(ref: Reference, config: Config, ds: date) -> Check:
    """behavior_features and behavior_scores of the run date: every feature, every component
    value of the breakdowns and the five scores (within SCORE_TOLERANCE points)."""
    check = Check("scores")
    settings = load_settings(config)
    cfg = settings.scoring
    for table in ("daily_activity", "subscriber_profile", "behavior_features", "behavior_scores"):
        ref.register(table)
    ref.register("ml_predictions", _ml_schema())
    params = {
        "ds": ds,
        "lookback": settings.ingest.subscriber_lookback_days,
        "ml_max_age": cfg.ml_max_age_days,
    }
    seconds = ref.timed(f"create or replace temp table features as {sql('scoring_features.sql')}", params)
    seconds += ref.timed(f"create or replace temp table scores_reference as {sql('scoring_scores.sql')}", {})
    check.reference_seconds = seconds

    feature_columns = ", ".join(f"features['{n}'] as {n}" for n in cfg.feature_names)
    spark_features = f"(select subscriber_id, {feature_columns} from behavior_features where score_date = $ds)"
    features = compare_rows(ref, spark_features, "features", "subscriber_id", list(cfg.feature_names), {"ds": ds})

    percentile = {f"{s}__{c.name}" for s, cs in cfg.scores.items() for c in cs if c.method == "percentile"}
    (subscribers,) = ref.rows("select count(*) from features")[0]
    values = [
        f"{score}_breakdown['{c.name}'].normalized as {score}__{c.name}" for score, cs in cfg.scores.items() for c in cs
    ]
    spark_scores = f"(select subscriber_id, {', '.join(cfg.scores)}, {', '.join(values)} from behavior_scores where score_date = $ds)"
    exact = [f"{s}__{c.name}" for s, cs in cfg.scores.items() for c in cs if f"{s}__{c.name}" not in percentile]
    compare = functools.partial(compare_rows, ref, spark_scores, "scores_reference", "subscriber_id", params={"ds": ds})
    components = compare(exact, tolerance=COMPONENT_TOLERANCE, absolute=True)
    ranks = compare(sorted(percentile), tolerance=PERCENTILE_STEP + COMPONENT_TOLERANCE, absolute=True)
    scores = compare(list(cfg.scores), tolerance=SCORE_TOLERANCE, absolute=True)
    # Spark's percentile_approx (accuracy 1000) keeps a sketch whose cut points may sit a few
    # ranks away from the exact ones (rank error up to n/1000, and merged partial sketches are
    # approximate even on small data): a value next to a cut point can land one percentile step
    # apart. The percentile components are checked within that step, and the scores without
    # their contributions.
    check.excluded.append(
        f"exact values of the percentile components {sorted(percentile)} (Spark's approximate cut points): "
        "checked within one percentile step (1/99); scores checked without their contributions"
    )
    partial = compare_rows(
        ref,
        _without_percentile(spark_scores, cfg, percentile),
        _without_percentile("scores_reference", cfg, percentile),
        "subscriber_id",
        list(cfg.scores),
        {"ds": ds},
        SCORE_TOLERANCE,
        absolute=True,
    )
    check.details = {
        "subscribers": subscribers,
        "features": features,
        "components": components,
        "percentile_components": ranks,
        "scores_without_percentile_components": partial,
        "scores": scores,
    }
    agree = _rows_agree(features) and _rows_agree(components) and _rows_agree(ranks) and _rows_agree(partial)
    check.agree = agree
    return check


def _without_percentile(relation: str, cfg: ScoringConfig, percentile: set[str]) -> str:
    """Each score minus the contributions of its percentile components (weights as scored:
    rescaled over the counted components)."""
    columns = []
    for score, components in cfg.scores.items():
        total = " + ".join(
            f"(case when {c.feature} is not null then {c.weight} else 0 end)"
            if c.missing == "exclude"
            else str(c.weight)
            for c in components
        )
        taken = " + ".join(
            f"100 * {score}__{c.name} * {c.weight} / ({total})"
            for c in components
            if f"{score}__{c.name}" in percentile
        )
        columns.append(f"{score} - ({taken or '0'}) as {score}" if taken else score)
    features = {c.feature for cs in cfg.scores.values() for c in cs if c.missing == "exclude"}
    joined = f"{relation} x join features f using (subscriber_id)"
    selected = ", ".join(f"f.{name}" for name in sorted(features))
    return f"(select subscriber_id, {', '.join(columns)} from (select x.*, {selected} from {joined}))"


def _ml_schema() -> pa.Schema:
    return pa.schema(
        [
            ("subscriber_id", pa.string()),
            ("churn_probability", pa.float64()),
            ("risk_score", pa.float64()),
            ("model_name", pa.string()),
            ("ds", pa.date32()),
            ("loaded_ds", pa.date32()),
        ]
    )


# -- comparison -------------------------------------------------------------------------------


def compare_rows(
    ref: Reference,
    spark: str,
    reference: str,
    key: str,
    columns: Sequence[str],
    params: Mapping[str, Any],
    tolerance: float = VALUE_TOLERANCE,
    *,
    absolute: bool = False,
) -> dict[str, Any]:
    """Rows of two relations joined on `key`: keys on one side only, and per column the rows
    whose values differ (both null counts as equal) and the largest difference."""
    diffs = []
    for c in columns:
        a, b = f"s.{c}::double", f"r.{c}::double"
        bound = str(tolerance) if absolute else f"{tolerance} * greatest(1.0, abs({a}), abs({b}))"
        diffs.append(
            f"count(*) filter (where s.{key} is not null and r.{key} is not null and "
            f"(({a} is null) <> ({b} is null) or abs({a} - {b}) > {bound})) as {c}__differ, "
            f"max(abs({a} - {b})) as {c}__max"
        )
    query = f"""
        select count(s.{key}) as spark_rows, count(r.{key}) as reference_rows,
               count(*) filter (where r.{key} is null) as only_spark,
               count(*) filter (where s.{key} is null) as only_reference,
               {", ".join(diffs)}
        from {spark} s full join {reference} r on s.{key} = r.{key}
    """
    result = ref.con.execute(query, {k: v for k, v in params.items() if f"${k}" in query})
    names = [d[0] for d in result.description]
    row = dict(zip(names, result.fetchall()[0], strict=True))
    differing = {
        c: {"rows": row[f"{c}__differ"], "max_difference": row[f"{c}__max"]} for c in columns if row[f"{c}__differ"]
    }
    largest = max((row[f"{c}__max"] or 0.0 for c in columns), default=0.0)
    return {
        "spark_rows": row["spark_rows"],
        "reference_rows": row["reference_rows"],
        "only_spark": row["only_spark"],
        "only_reference": row["only_reference"],
        "columns_compared": len(columns),
        "differing_columns": differing,
        "max_difference": largest,
    }


def _rows_agree(result: Mapping[str, Any]) -> bool:
    return (
        result["spark_rows"] > 0
        and result["only_spark"] == 0
        and result["only_reference"] == 0
        and not result["differing_columns"]
    )
