"""A second operator, configured in YAML only (tests/integration/other_operator/conf): its own
column names and formats, '00'-prefixed numbers, one file per day, a bare subscriber list and
no app, network, DWH or care data. The whole night runs (the quality gates aside)."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.config import DEFAULT_CONF_DIR, load_config
from jobs.pipeline import STAGES, RunContext, build_lakehouse, run_stages
from jobs.tables import PIPELINE_RUNS
from jobs.validation import config_problems

pytestmark = pytest.mark.integration

OPERATOR = Path(__file__).parent / "other_operator" / "conf"
DAYS = [date(2025, 3, 1), date(2025, 3, 2)]
SUBSCRIBERS = 30
KEY = "other-operator-demo-key-not-secret"
SHARED = ("metrics.yaml", "scoring.yaml", "segments.yaml", "missions.yaml", "loyalty.yaml", "campaigns.yaml")
SHARED += ("quality.yaml", "airflow.yaml", "offers.yaml", "exports.yaml")  # no ml_predictions.yaml: no ML delivery


def number(i: int) -> str:
    return f"0022670{i:06d}"  # '00' + country code 226 + an 8-digit national number


def subscriber_id(i: int) -> str:
    return hmac.new(KEY.encode(), f"22670{i:06d}".encode(), hashlib.sha256).hexdigest()


def operator_conf(root: Path) -> Path:
    """The operator's own files plus the generic ones, with the metrics pointed at its source names."""
    conf = root / "conf"
    shutil.copytree(OPERATOR, conf)
    for name in SHARED:
        shutil.copy(DEFAULT_CONF_DIR / name, conf / name)
    shutil.copytree(DEFAULT_CONF_DIR.parent / "templates", root / "templates")
    metrics = (conf / "metrics.yaml").read_text()
    metrics = metrics.replace("sources: [cdr]", "sources: [voice_sms, data_usage]").replace(
        "sources: [billing]", "sources: [topups]"
    )
    (conf / "metrics.yaml").write_text(metrics)
    return conf


def write_day(raw: Path, ds: date) -> dict[str, float]:
    """One day of every extract; returns what the test expects from it."""
    stamp = ds.strftime("%Y%m%d")
    files = {
        raw / "subscribers" / ds.isoformat() / f"subs_{stamp}.txt": "MSISDN|STATE\n"
        + "".join(f"{number(i)}|{'A' if i % 5 else 'S'}\n" for i in range(SUBSCRIBERS)),
        raw
        / "voice_sms"
        / stamp
        / f"voice_sms_{stamp}.csv": "CALL_REF,A_NUMBER,B_NUMBER,EVENT_TYPE,DURATION_SEC,START_DT\n"
        + "".join(
            f"V{stamp}{i},{number(i)},{number(i + 1)},VOICE,{60 * (i + 1)},{ds} 10:{i:02d}:00\n"
            f"S{stamp}{i},{number(i)},{number(i + 2)},SMS,0,{ds} 11:{i:02d}:00\n"
            for i in range(SUBSCRIBERS)
        ),
        raw / "data_usage" / ds.isoformat() / "sessions.jsonl": "".join(
            json.dumps({"session": f"D{stamp}{i}", "subscriber": {"number": number(i)}, "mb": 10.5, "day": str(ds)})
            + "\n"
            for i in range(0, SUBSCRIBERS, 2)
        ),
        raw / "topups" / ds.isoformat() / f"topups_{stamp}.csv": "TXN;PHONE;AMOUNT_XOF;TS\n"
        + "".join(f"T{stamp}{i};{number(i)};500.00;{ds:%d/%m/%Y} 09:30\n" for i in range(0, SUBSCRIBERS, 3)),
        raw / "momo" / ds.isoformat() / "momo.jsonl": "".join(
            json.dumps(
                {
                    "id": f"M{stamp}{i}",
                    "wallet": number(i),
                    "txn_type": "P2P",
                    "amount": 1000.0,
                    "at": f"{ds}T12:00:00Z",
                }
            )
            + "\n"
            for i in range(0, SUBSCRIBERS, 4)
        ),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {
        "voice_minutes": sum(60 * (i + 1) for i in range(SUBSCRIBERS)) / 60,
        "rows": {"subscribers": 30, "voice_sms": 60, "data_usage": 15, "topups": 10, "momo": 8},
    }


@pytest.fixture(scope="module")
def night(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("other_operator")
    conf = operator_conf(root)
    expected = {ds: write_day(root / "raw", ds) for ds in DAYS}
    config = load_config(
        conf,
        env="test",
        overrides={
            "raw.root": str(root / "raw"),
            "lakehouse.root": str(root / "lh"),
            "exports.root": str(root / "out"),
            "exports.require_gate": False,  # its nights skip the quality gate
        },
        environ={},
    )
    lakehouse = build_lakehouse(spark, config)
    for ds in DAYS:
        run_stages(RunContext(spark, config, lakehouse, ds), [s for s in STAGES if s != "quality"])
    return {"config": config, "lakehouse": lakehouse, "expected": expected, "conf": conf}


def test_the_operator_configuration_validates(night):
    assert config_problems(night["config"]) == []


def test_every_source_is_ingested_and_accounted_for(night):
    runs = night["lakehouse"].read(PIPELINE_RUNS).filter(F.col("stage") == "ingest")
    for ds in DAYS:
        got = {r.source: (r.status, r.rows_read, r.rows_accepted) for r in runs.filter(F.col("run_ds") == ds).collect()}
        assert got == {s: ("succeeded", n, n) for s, n in night["expected"][ds]["rows"].items()}


def test_subscriber_ids_are_the_hmac_of_the_e164_digits(night):
    profile = night["lakehouse"].read("subscriber_profile").filter(F.col("snapshot_date") == DAYS[-1])
    assert sorted(r.subscriber_id for r in profile.collect()) == sorted(subscriber_id(i) for i in range(SUBSCRIBERS))
    status = {r.subscriber_id: r.status for r in profile.collect()}
    assert status[subscriber_id(5)] == "SUSPENDED" and status[subscriber_id(6)] == "ACTIVE"


def test_activity_counts_the_operators_events(night):
    activity = night["lakehouse"].read("daily_activity").filter(F.col("activity_date") == DAYS[-1])
    total = activity.agg(F.sum("voice_minutes").alias("v"), F.sum("recharge_count").alias("r")).first()
    assert total.v == pytest.approx(night["expected"][DAYS[-1]]["voice_minutes"])
    assert total.r == 10


def test_missing_kinds_are_degraded_and_unknown_tenure_is_not_new(night):
    scores = night["lakehouse"].read("behavior_scores").filter(F.col("score_date") == DAYS[-1])
    rows = scores.select("subscriber_id", "degraded_sources").collect()
    assert len(rows) == SUBSCRIBERS
    assert {tuple(r.degraded_sources) for r in rows} == {  # the kinds it lacks, and no ML delivery
        ("app", "crm_interactions", "dwh_monthly_kpis", "ml_predictions", "network", "xiva")
    }
    segments = night["lakehouse"].read("subscriber_segments").filter(F.col("segment_date") == DAYS[-1])
    assert segments.count() == SUBSCRIBERS
    assert segments.filter(F.col("segment") == "new_joiners").count() == 0


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        (
            "momo.yaml",
            "event_subtype: {map: txn_type, values: {P2P: p2p_transfer, MERCHANT: merchant_payment}, default: other}",
            "event_subtype: {expr: \"'wallet_' + txn_type\"}",
            "'+' needs numbers (strings cannot be joined)",
        ),
        (
            "momo.yaml",
            "  wallet: string\n",
            "  wallet: string\n  subscriber_id: string\n",
            "raw column 'subscriber_id'",
        ),
        ("topups.yaml", "rule: AMOUNT_XOF > 0", "rule: AMOUNT_XOF > 'zero'", "cannot compare a number with a string"),
        (
            "voice_sms.yaml",
            "quantity: {expr: DURATION_SEC / 60.0}",
            "quantity: {expr: DURATION / 60.0}",
            "unknown name",
        ),
    ],
)
def test_mapping_mistakes_are_found_at_validate_time(night, tmp_path, file, old, new, message):
    conf = tmp_path / "conf"
    shutil.copytree(night["conf"], conf)
    shutil.copytree(night["conf"].parent / "templates", tmp_path / "templates")
    path = conf / "sources" / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    problems = config_problems(load_config(conf, env="test", environ={}))
    assert len(problems) == 1 and file in problems[0] and message in problems[0], problems


def test_the_rest_of_the_night_ran(night):
    runs = night["lakehouse"].read(PIPELINE_RUNS).filter(F.col("run_ds") == DAYS[-1])
    stages = {r.stage: r.status for r in runs.filter(F.col("stage") != "ingest").collect()}
    assert stages == {s: "succeeded" for s in STAGES if s not in ("ingest", "quality")}
    assert night["lakehouse"].read("subscriber_segments").count() == SUBSCRIBERS * len(DAYS)
