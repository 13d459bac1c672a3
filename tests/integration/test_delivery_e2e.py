"""Delivery on the generated operator: ML-driven missions, subscriber_state and the file exports."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F

from jobs.config import DEFAULT_CONF_DIR
from jobs.context import PipelineError
from jobs.pipeline import STAGES
from jobs.tables import (
    BADGE_AWARDS,
    BEHAVIOR_FEATURES,
    BEHAVIOR_SCORES,
    CAMPAIGN_TRIGGERS,
    EVENTS_REJECTED,
    LOYALTY_LEDGER,
    LOYALTY_TIERS,
    MISSION_ASSIGNMENTS,
    MISSION_PROGRESS,
    ML_PREDICTIONS,
    PIPELINE_RUNS,
    QUALITY_RESULTS,
    SUBSCRIBER_SEGMENTS,
    SUBSCRIBER_STATE,
    schema_of,
)
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.integration

DAYS = 1  # one night through every stage (change detection across days: unit tests)


@pytest.fixture(scope="module")
def pipeline(spark, tmp_path_factory) -> Pipeline:
    """A small generated operator run through every stage but the quality gate on each day."""
    pipe = Pipeline(spark, tmp_path_factory.mktemp("delivery"), subscribers=250, days=DAYS)
    for ds in pipe.days:
        pipe.run(ds, stages=[s for s in STAGES if s != "quality"])
    return pipe


OFFER_PERSONAS = {"heavy_data", "voice_centric", "digital_native", "new_joiner", "high_value_postpaid"}


def truth(pipeline) -> dict[str, dict[str, str]]:
    with (pipeline.raw / "_truth" / "personas.csv").open() as fh:
        return {r["subscriber_id"]: r for r in csv.DictReader(fh)}


def test_predictions_are_loaded_with_every_row_accounted_for(pipeline):
    lakehouse, ds = pipeline.lakehouse, pipeline.last_day
    run = (
        lakehouse.read(PIPELINE_RUNS, partitions=[("run_ds", "=", ds)])
        .filter((F.col("stage") == "ingest") & (F.col("source") == "ml_predictions"))
        .first()
    )
    written = pipeline.manifest["ml_predictions"][ds.isoformat()]
    assert run.status == "succeeded" and run.rows_read == written["rows"]
    assert run.rows_read == run.rows_accepted + run.rows_rejected + run.rows_duplicate
    loaded = lakehouse.read(ML_PREDICTIONS, partitions=[("ds", "=", ds)]).filter(F.col("loaded_ds") == F.lit(ds))
    assert loaded.count() == run.rows_accepted
    rejected = lakehouse.read(EVENTS_REJECTED, partitions=[("ingest_date", "=", ds)]).filter(
        F.col("source") == "ml_predictions"
    )
    assert rejected.count() == run.rows_rejected + run.rows_duplicate
    reasons = {r.reject_reason for r in rejected.select("reject_reason").distinct().collect()}
    assert reasons <= {"unknown_offer", "out_of_range"}  # the generator's defects


def test_nbo_and_churn_missions_go_to_the_expected_personas(pipeline):
    personas = truth(pipeline)
    rows = pipeline.lakehouse.read(MISSION_ASSIGNMENTS).filter(~F.col("holdout"))
    by_template: dict[str, list] = defaultdict(list)
    for r in (
        rows.filter(F.col("template_id").isin("nbo_bundle_offer", "nbo_partner_offer", "use_line_this_week"))
        .select("template_id", "subscriber_id", "offer_id", "assigned_ds")
        .collect()
    ):
        by_template[r.template_id].append(r)
    nbo = by_template["nbo_bundle_offer"] + by_template["nbo_partner_offer"]
    assert by_template["nbo_bundle_offer"] and by_template["nbo_partner_offer"]
    assert {personas[r.subscriber_id]["persona"] for r in nbo} <= OFFER_PERSONAS
    # the offer is the subscriber's own next-best offer of that day
    predicted = {
        (r.subscriber_id, r.score_date): r.nbo_offer_id
        for r in pipeline.lakehouse.read(BEHAVIOR_SCORES)
        .filter(F.col("nbo_offer_id").isNotNull())
        .select("subscriber_id", "score_date", "nbo_offer_id")
        .collect()
    }
    assert all(r.offer_id == predicted[(r.subscriber_id, r.assigned_ds)] for r in nbo)
    # the churn branch: churn_risk subscribers whose ML churn probability qualifies them
    scores = {
        (r.subscriber_id, r.score_date): r
        for r in pipeline.lakehouse.read(BEHAVIOR_SCORES)
        .select("subscriber_id", "score_date", "churn_probability", "risk")
        .collect()
    }
    churn_missions = {
        r.subscriber_id
        for r in by_template["use_line_this_week"]
        if personas[r.subscriber_id]["persona"] == "churn_risk"
        and scores[(r.subscriber_id, r.assigned_ds)].churn_probability >= 0.4
    }
    # expected independently: rewarded churn_risk subscribers the churn branch of the template's
    # eligibility admits (segment listed, ML churn probability >= 0.4, active within 14 days); one
    # left without the mission must already hold the most missions a subscriber may get
    lakehouse, ds = pipeline.lakehouse, pipeline.last_day
    template = yaml.safe_load((DEFAULT_CONF_DIR.parent / "templates/missions/use_line_this_week.yaml").read_text())[
        "spec"
    ]
    cap = yaml.safe_load((DEFAULT_CONF_DIR / "missions.yaml").read_text())["max_active_per_subscriber"]
    day = [("score_date", "=", ds)]
    segments = lakehouse.read(SUBSCRIBER_SEGMENTS, partitions=[("segment_date", "=", ds)])
    state = lakehouse.read(SUBSCRIBER_STATE, partitions=[("state_ds", "=", ds)])
    admitted = {
        r.subscriber_id
        for r in lakehouse.read(BEHAVIOR_SCORES, partitions=day)
        .select("subscriber_id", "churn_probability")
        .join(segments.select("subscriber_id", "segment"), "subscriber_id")
        .join(lakehouse.read(BEHAVIOR_FEATURES, partitions=day).select("subscriber_id", "features"), "subscriber_id")
        .join(state.select("subscriber_id", "holdout"), "subscriber_id")
        .filter(
            ~F.col("holdout")
            & (F.col("churn_probability") >= 0.4)
            & F.col("segment").isin(*template["segments"])
            & (F.element_at("features", F.lit("days_since_active")) < 14)
        )
        .select("subscriber_id")
        .collect()
        if personas[r.subscriber_id]["persona"] == "churn_risk"
    }
    held = Counter(r.subscriber_id for r in rows.filter(F.col("assigned_ds") == ds).select("subscriber_id").collect())
    assert churn_missions <= admitted
    assert {s: held[s] for s in admitted - churn_missions} == {s: cap for s in admitted - churn_missions}
    assert len(admitted - churn_missions) < len(admitted)  # the sample's model flags churn_risk subscribers


def test_one_subscribers_state_is_what_the_underlying_tables_say(pipeline):
    lakehouse, ds = pipeline.lakehouse, pipeline.last_day
    state = lakehouse.read(SUBSCRIBER_STATE, partitions=[("state_ds", "=", ds)])
    scored = lakehouse.read(BEHAVIOR_SCORES, partitions=[("score_date", "=", ds)])
    assert state.count() == scored.count() == state.select("subscriber_id").distinct().count()
    # the subscriber with the most going on: live missions, then badges, then points
    row = (
        state.filter(~F.col("holdout") & (F.size("active_missions") > 0))
        .orderBy(F.size("badges").desc(), F.col("points_balance").desc(), "subscriber_id")
        .first()
    )
    assert row is not None, "no subscriber with live missions"
    sid = row.subscriber_id
    mine = F.col("subscriber_id") == sid

    live = lakehouse.read(MISSION_PROGRESS, partitions=[("progress_ds", "=", ds)]).filter(
        mine & F.col("status").isin("assigned", "active")
    )
    texts = {r.assignment_id: r.description for r in lakehouse.read(MISSION_ASSIGNMENTS).filter(mine).collect()}
    expected_missions = sorted(
        (r.assignment_id, r.progress_value, r.target_value, r.period_end, texts[r.assignment_id])
        for r in live.collect()
    )
    assert (
        sorted((m.assignment_id, m.progress_value, m.target_value, m.period_end, m.text) for m in row.active_missions)
        == expected_missions
    )
    best: dict[str, tuple[int, str]] = {}
    for a in lakehouse.read(BADGE_AWARDS).filter(mine & (F.col("awarded_ds") <= F.lit(ds))).collect():
        best[a.badge_type] = max(best.get(a.badge_type, (0, "")), (a.level_rank, a.level))
    assert {b.badge_type: b.level for b in row.badges} == {t: lvl for t, (_, lvl) in best.items()}
    entries = lakehouse.read(LOYALTY_LEDGER).filter(mine & (F.col("entry_ds") <= F.lit(ds))).collect()
    assert row.points_balance == sum(e.points for e in entries)
    soon = [e for e in entries if e.points > 0 and ds < e.expires_ds <= ds + timedelta(days=30)]
    assert row.points_expiring_30d == sum(e.points for e in soon)
    tier = lakehouse.read(LOYALTY_TIERS, partitions=[("tier_ds", "=", ds)]).filter(mine).first()
    assert (row.tier, row.points_balance) == (tier.tier, tier.points_balance)
    score = scored.filter(mine).first()
    assert (row.engagement, row.risk, row.digital) == tuple(
        round(score[s], 2) for s in ("engagement", "risk", "digital")
    )
    holdout = state.filter(F.col("holdout"))
    assert holdout.count() > 0
    assert (
        holdout.filter((F.size("active_missions") > 0) | (F.size("badges") > 0) | F.col("tier").isNotNull()).count()
        == 0
    )


def delivery(pipeline, consumer: str) -> dict[str, bytes]:
    root = Path(pipeline.config.get("exports.root")) / consumer / pipeline.last_day.isoformat()
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_exports_refuse_a_date_no_quality_gate_validated(pipeline, tmp_path):
    """With `exports.require_gate` (the default; these fixtures' nights skip the gate), a date
    the gate never validated is not exported; once the gate has run, the same delivery leaves.
    A table recomputed for the date after the gate read it is not validated either."""
    ds = pipeline.last_day
    gated = pipeline.copy(tmp_path, overrides={"exports.require_gate": True})
    message = rf"exports for {ds}: no quality gate has validated this date; nothing leaves unvalidated"
    with pytest.raises(PipelineError, match=message):
        gated.run(ds, stages=["exports"])
    assert not (tmp_path / "exports").exists()
    gated.run(ds, stages=["quality", "exports"])
    consumers = ("campaign_system", "loyalty_platform", "app_feed")
    expected = {c: delivery(pipeline, c) for c in consumers}
    assert {c: delivery(gated, c) for c in consumers} == expected

    validated = gated.lakehouse.version(SUBSCRIBER_STATE)
    gated.run(ds, stages=["subscriber_state"])  # a partial rerun without the gate
    message = (
        rf"exports for {ds}: rows to deliver changed after the quality gate validated them "
        rf"\(subscriber_state v{validated + 1} by stage subscriber_state \(run cli-\w+\) after v{validated}\)"
    )
    with pytest.raises(PipelineError, match=message):  # until a gate reads the new version (tests/unit)
        gated.run(ds, stages=["exports"])


def test_file_exports_are_complete_and_identical_on_rerun(pipeline, tmp_path):
    ds = pipeline.last_day
    before = {c: delivery(pipeline, c) for c in ("campaign_system", "loyalty_platform", "app_feed")}
    for files in before.values():
        manifest = json.loads(files["manifest.json"])
        assert "_SUCCESS" in files and manifest["run_ds"] == ds.isoformat()
        for entry in manifest["datasets"].values():
            for f in entry["files"]:
                assert hashlib.sha256(files[f["path"]]).hexdigest() == f["sha256"]
    lakehouse = pipeline.lakehouse
    app = json.loads(before["app_feed"]["manifest.json"])["datasets"]["subscriber_state"]
    changed = lakehouse.read(SUBSCRIBER_STATE, partitions=[("state_ds", "=", ds)]).filter(F.col("changed")).count()
    assert app["rows"] == changed > 0
    crm = json.loads(before["campaign_system"]["manifest.json"])
    triggers = lakehouse.read(CAMPAIGN_TRIGGERS, partitions=[("trigger_ds", "=", ds)]).count()
    assert crm["identifier"] == "msisdn"
    assert (
        crm["datasets"]["campaign_triggers"]["rows"] + crm["datasets"]["campaign_triggers"]["held_back_unmapped"]
        == triggers
    )
    first = gzip.decompress(before["campaign_system"][crm["datasets"]["campaign_triggers"]["files"][0]["path"]])
    msisdns = {r["msisdn"] for r in truth(pipeline).values()}
    line = json.loads(first.splitlines()[0])
    assert "subscriber_id" not in line and line["msisdn"] in msisdns

    rerun = pipeline.copy(tmp_path)  # the shared lakehouse stays as the night left it
    rerun.run(ds, stages=["exports"])
    assert {c: delivery(rerun, c) for c in before} == before


def test_exports_refuse_a_date_whose_quality_gate_failed_a_critical_check(pipeline, tmp_path):
    ds = pipeline.last_day
    copy = pipeline.copy(tmp_path)
    lakehouse = copy.lakehouse
    schema = schema_of(QUALITY_RESULTS)
    recorded = lakehouse.read(QUALITY_RESULTS, partitions=[("run_ds", "=", ds)]).localCheckpoint()
    assert recorded.filter(F.col("suite") != "export_runs").count() == 0  # no gate ran on this operator

    def record(*checks):
        rows = [
            tuple({"run_ds": ds, "suite": suite, "table_name": suite, "expectation": expectation, "column": column,
                   "severity": severity, "status": "failed", "success": False}.get(f.name) for f in schema.fields)
            for suite, expectation, column, severity in checks
        ]  # fmt: skip
        frame = copy.spark.createDataFrame(rows, schema).unionByName(recorded)
        lakehouse.write(frame, QUALITY_RESULTS, partition_by=["run_ds"], replace_where={"run_ds": ds})

    record(
        ("behavior_scores", "expect_column_values_to_not_be_null", "engagement", "critical"),
        ("events", "expect_table_row_count_to_be_between", None, "warning"),
    )
    message = (
        rf"exports for {ds}: the quality gate recorded failed critical checks on this date "
        r"\(behavior_scores expect_column_values_to_not_be_null engagement\); nothing leaves"
    )
    with pytest.raises(PipelineError, match=message):
        copy.run(ds, stages=["exports"])
    runs = lakehouse.read(PIPELINE_RUNS, partitions=[("run_ds", "=", ds)]).filter(F.col("stage") == "exports")
    assert runs.filter(F.col("status") == "failed").count() == 1

    record(("events", "expect_table_row_count_to_be_between", None, "warning"))  # a warning lets it out
    copy.run(ds, stages=["exports"])
    consumers = ("campaign_system", "loyalty_platform", "app_feed")
    assert {c: delivery(copy, c) for c in consumers} == {c: delivery(pipeline, c) for c in consumers}
