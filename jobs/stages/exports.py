"""The exports stage: the run date's changed subscriber_state rows (and, on a rerun, those an
earlier delivery of the date carried), triggers, audience changes and ledger entries -> one
delivery per active consumer of conf/exports.yaml (files or JDBC, with the identifier each
consumer takes), recorded in export_runs; then the quality suites that validate export_runs. A
date whose quality gate recorded a failed critical check is not exported, whichever stages the
run selected, nor (`exports.require_gate`) a date no gate validated or whose delivered tables
were rewritten for the date after the gate read them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.context import PipelineError, RunContext
from jobs.exports import (
    SOURCE_TABLE,
    Consumer,
    as_pseudonyms,
    audience_changes,
    delivered_file_keys,
    export_files,
    read_mapping,
    state_rows,
    with_identifier,
)
from jobs.exports_jdbc import delivered_jdbc_keys, export_jdbc
from jobs.frames import local_frame
from jobs.sources import list_extract_files, render_template, template_values
from jobs.stages import quality
from jobs.stages.readers import latest_before, read_day
from jobs.tables import (
    CAMPAIGN_AUDIENCES,
    CAMPAIGN_TRIGGERS,
    EXPORT_RUNS,
    LOYALTY_LEDGER,
    QUALITY_RESULTS,
    SUBSCRIBER_STATE,
    schema_of,
)

__all__ = ["delivered_state_keys", "rewritten_since_gate", "run", "validated_versions"]

log = logging.getLogger(__name__)


def run(ctx: RunContext) -> dict[str, Any]:
    """The run date's changed subscriber_state rows, triggers, audience changes and ledger
    entries -> one delivery per active consumer of conf/exports.yaml; export_runs."""
    settings = ctx.settings.exports
    lakehouse, ds = ctx.lakehouse, ctx.ds
    after = [name for name, table in ctx.settings.quality.tables.items() if table.validated_by == "exports"]
    gate = gate_results(ctx, exempt=after)
    failed = failed_gate_checks(gate)
    if failed:
        raise PipelineError(
            f"exports for {ds}: the quality gate recorded failed critical checks on this date "
            f"({'; '.join(failed)}); nothing leaves until the gate passes (rerun it after fixing the data)"
        )
    if ctx.settings.exports_require_gate:
        validated = validated_versions(gate)
        if not validated:
            raise PipelineError(
                f"exports for {ds}: no quality gate has validated this date; nothing leaves unvalidated "
                f"(gamify run --ds {ds} --stages quality,exports)"
            )
        gated = {name for name, t in ctx.settings.quality.tables.items() if t.validated_by == "quality"}
        delivered = {SOURCE_TABLE[name] for consumer in settings.active for name in consumer.datasets}
        stale = rewritten_since_gate(ctx, validated, sorted(delivered & gated))
        if stale:
            raise PipelineError(
                f"exports for {ds}: rows to deliver changed after the quality gate validated them "
                f"({'; '.join(stale)}); nothing leaves unvalidated (gamify run --ds {ds} --stages quality,exports)"
            )
    previous_audience_day = latest_before(ctx, CAMPAIGN_AUDIENCES, "audience_ds")
    before = (
        None
        if previous_audience_day is None
        else read_day(ctx, CAMPAIGN_AUDIENCES, "audience_ds", previous_audience_day)
    )
    state = read_day(ctx, SUBSCRIBER_STATE, "state_ds")
    datasets = {  # subscriber_state: per consumer, below
        "campaign_triggers": read_day(ctx, CAMPAIGN_TRIGGERS, "trigger_ds"),
        "audience_changes": audience_changes(read_day(ctx, CAMPAIGN_AUDIENCES, "audience_ds"), before, ds),
        "ledger_entries": read_day(ctx, LOYALTY_LEDGER, "entry_ds"),
    }
    mapping = None
    if any(c.identifier == "msisdn" for c in settings.active):
        path = render_template(settings.mapping_path, template_values(ds, ctx.raw_root))
        if not list_extract_files(path):
            raise PipelineError(f"{settings.file}: msisdn_mapping.path: no MSISDN mapping extract at {path}")
        mapping = read_mapping(ctx.spark, path, settings.mapping_format).localCheckpoint()
    root = ctx.settings.exports_root
    records, summary = [], {}
    for consumer in settings.active:
        log.info(
            "export %s for %s: %s via %s, subscriber identifier %s",
            consumer.name,
            ds,
            ", ".join(consumer.datasets),
            consumer.kind,
            consumer.identifier,
        )
        chosen, held = {}, {}
        for name in consumer.datasets:
            if name == "subscriber_state":  # with the rows an earlier delivery of the date carried
                frame = state_rows(state, delivered_state_keys(ctx.spark, root, consumer, ds, mapping))
            else:
                frame = datasets[name]
            leaving, held_back = with_identifier(frame, consumer, mapping)
            chosen[name] = leaving
            held[name] = held_back.count()
            if held[name]:
                log.warning(
                    "export %s %s: %d row(s) without an MSISDN mapping held back", consumer.name, name, held[name]
                )
        if consumer.kind == "files":
            manifest = export_files(root, consumer, chosen, held, ds)
            location = f"{root}/{consumer.name}/{ds.isoformat()}"
            rows = {n: d["rows"] for n, d in manifest["datasets"].items()}
            checksums = {n: ",".join(f["sha256"] for f in d["files"]) for n, d in manifest["datasets"].items()}
        else:
            rows = export_jdbc(ctx.spark, consumer, chosen, ds)
            location, checksums = f"{consumer.table_prefix}*", {}
        summary[consumer.name] = rows
        records += [
            (
                ds,
                consumer.name,
                consumer.kind,
                n,
                consumer.identifier,
                int(rows[n]),
                location,
                checksums.get(n),
                "delivered",
            )
            for n in consumer.datasets
        ]
    lakehouse.write(
        local_frame(ctx.spark, records, schema_of(EXPORT_RUNS)).coalesce(1),
        EXPORT_RUNS,
        partition_by=["run_ds"],
        replace_where={"run_ds": ds},
    )
    # the suites of conf/quality.yaml validated by this stage (export_runs): after the gate, a
    # critical failure fails the run once the delivery is made
    if after:
        quality.run(ctx, after)
    return summary


def delivered_state_keys(
    spark: SparkSession, root: str, consumer: Consumer, ds: date, mapping: DataFrame | None
) -> DataFrame | None:
    """The subscribers (subscriber_id) of the subscriber_state rows `consumer` already received
    with `ds`, read back from its delivery folder or table; None when it received none."""
    if consumer.kind == "files":
        keys, column = delivered_file_keys(spark, root, consumer, ds)
    else:
        keys, column = delivered_jdbc_keys(spark, consumer, ds), consumer.id_column
    pseudonyms = None if keys is None else as_pseudonyms(keys, column, consumer, ds, mapping)
    return (
        None if pseudonyms is None else pseudonyms.localCheckpoint()
    )  # read now: a files delivery replaces its folder


def gate_results(ctx: RunContext, exempt: list[str]) -> DataFrame | None:
    """The quality gate's results for the run date, the suites this stage validates itself
    aside; None when no result was ever recorded."""
    if not ctx.lakehouse.exists(QUALITY_RESULTS):
        return None
    results = ctx.lakehouse.read(QUALITY_RESULTS, partitions=[("run_ds", "=", ctx.ds)])
    return results.filter(~F.col("suite").isin(exempt))


def validated_versions(gate: DataFrame | None) -> dict[str, int | None]:
    """The version of each table (or extract: None) the gate's results validated; empty when the
    date has none."""
    if gate is None:
        return {}
    rows = gate.groupBy("table_name").agg(F.max("table_version").alias("version")).collect()  # one row per suite
    return {r.table_name: r.version for r in rows}


def rewritten_since_gate(ctx: RunContext, validated: Mapping[str, int | None], tables: list[str]) -> list[str]:
    """Why the gate's results (`validated_versions`) do not hold for `tables` now: for each table,
    a commit for the run date after the version the gate read (the stage and run that made it),
    or no version to compare with. Commits for other dates and maintenance (no run date) change no
    row of the date. Reads the tables' logs only (no Spark job)."""
    stale, day = [], ctx.ds.isoformat()
    for table in tables:
        version = validated.get(table)
        if version is None:
            stale.append(f"{table}: the gate's results name no version of it")
            continue
        newer = ctx.lakehouse.version(table) - version
        if newer <= 0:
            continue
        commits = ctx.lakehouse.history(table, limit=newer)
        if min((c["version"] for c in commits), default=None) != version + 1:
            stale.append(f"{table}: its log no longer holds the commits after version {version}")
            continue
        for commit in sorted(commits, key=lambda c: c["version"]):
            info = commit["user_metadata"]
            if info.get("ds") == day:
                stage, run = info.get("stage", "?"), info.get("run_id", "?")
                stale.append(f"{table} v{commit['version']} by stage {stage} (run {run}) after v{version}")
                break
    return stale


def failed_gate_checks(gate: DataFrame | None, shown: int = 5) -> list[str]:
    """The critical checks of the gate's results that failed (suite, expectation, column), at
    most `shown` of them."""
    if gate is None:
        return []
    failed = gate.filter((F.col("severity") == "critical") & (F.col("status") == "failed"))
    rows = failed.select("suite", "expectation", "column").orderBy("suite", "expectation", "column").limit(shown)
    return [" ".join(str(v) for v in (r.suite, r.expectation, r.column) if v) for r in rows.collect()]
