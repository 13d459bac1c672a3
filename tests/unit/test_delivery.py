"""Known-answer tests of the delivery layer: offers, ML predictions, subscriber_state, exports."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import date, timedelta
from types import SimpleNamespace

import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable
from pyspark.sql import functions as F

from jobs import exports, exports_jdbc, offers, predictions, subscriber_state
from jobs.config import DEFAULT_CONF_DIR, ConfigError, SettingsError, load_config
from jobs.lakehouse import Lakehouse
from jobs.settings import load_settings
from jobs.sources import conform, read_extract
from jobs.stages import exports as stage_exports

pytestmark = pytest.mark.unit

D = date(2025, 5, 10)
A, B, C = "a" * 64, "b" * 64, "c" * 64


# -- offers ------------------------------------------------------------------------------------


def test_offer_catalogue_loads_and_checks_its_fields(tmp_path):
    catalogue = offers.OfferCatalogue.load(DEFAULT_CONF_DIR / "offers.yaml")
    assert {"DATA_BOOST_10GB", "ROAM_PASS_7D", "WELCOME_DATA_1GB"} <= set(catalogue.ids)
    assert catalogue.offers["DATA_BOOST_10GB"].daily_max_grants == 300
    bad = tmp_path / "offers.yaml"
    bad.write_text("offers:\n  X1: {name: x, type: coupon, validity_days: 3}\n")
    with pytest.raises(ConfigError, match=r"offers\.X1\.type"):
        offers.OfferCatalogue.load(bad)


def test_a_template_naming_an_unknown_offer_is_rejected(tmp_path):
    from jobs.config import load_config

    root = tmp_path / "repo"
    shutil.copytree(DEFAULT_CONF_DIR, root / "conf")
    shutil.copytree(DEFAULT_CONF_DIR.parent / "templates", root / "templates")
    path = root / "templates" / "missions" / "roaming_traveller.yaml"
    path.write_text(path.read_text().replace('"ROAM_PASS_7D"', '"ROAM_PASS_UNKNOWN"'))
    config = load_config(root / "conf", env="test", environ={})
    with pytest.raises(
        SettingsError,
        match=r"roaming_traveller\.yaml:\d+:\d+: spec\.reward\.offer_id: unknown offer 'ROAM_PASS_UNKNOWN'",
    ) as raised:
        load_settings(config)
    assert len(raised.value.problems) == 1


def test_offer_grants_beyond_the_daily_budget_are_capped_not_dropped(spark):
    completions = spark.createDataFrame(
        [("as1", "OFF_A", D), ("as2", "OFF_A", D), ("as3", "OFF_B", D), ("as4", None, D)],
        "assignment_id string, offer_id string, completed_ds date",
    )
    catalogue = spark.createDataFrame(
        [("OFF_A", "Offer A", "data_bundle", 7, 1), ("OFF_B", "Offer B", "voice_bundle", 30, None)],
        "offer_id string, offer_name string, offer_type string, validity_days int, daily_max_grants int",
    )
    expected = spark.createDataFrame(
        [
            ("as1", "OFF_A", D, "Offer A", "data_bundle", D + timedelta(days=7), "granted", None),
            ("as2", "OFF_A", D, "Offer A", "data_bundle", None, "capped", "offer daily_max_grants of 1 reached"),
            ("as3", "OFF_B", D, "Offer B", "voice_bundle", D + timedelta(days=30), "granted", None),
            ("as4", None, D, None, None, None, None, None),
        ],
        "assignment_id string, offer_id string, completed_ds date, offer_name string, offer_type string, "
        "offer_valid_until date, offer_status string, offer_status_reason string",
    )
    actual = offers.with_offer_grants(completions, catalogue)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_a_segments_daily_offer_grants_cap_the_grants_left_by_the_offer_budgets(spark):
    completions = spark.createDataFrame(
        [
            ("as9", "OFF_B", D - timedelta(days=1), "vip"),  # completed earliest: first in line
            ("as1", "OFF_A", D, "vip"),
            ("as2", "OFF_A", D, "vip"),  # capped by OFF_A's own budget: not counted for the segment
            ("as3", "OFF_B", D, "vip"),  # the segment's third grant: capped
            ("as4", None, D, "vip"),
            ("as5", "OFF_B", D, "mass"),  # no segment budget
            ("as6", "OFF_B", D, None),
        ],
        "assignment_id string, offer_id string, completed_ds date, segment string",
    )
    catalogue = spark.createDataFrame(
        [("OFF_A", "Offer A", "data_bundle", 7, 1), ("OFF_B", "Offer B", "voice_bundle", 30, None)],
        "offer_id string, offer_name string, offer_type string, validity_days int, daily_max_grants int",
    )
    actual = offers.with_offer_grants(completions, catalogue, {"vip": 2}).select(
        "assignment_id", "offer_status", "offer_status_reason"
    )
    expected = spark.createDataFrame(
        [
            ("as9", "granted", None),
            ("as1", "granted", None),
            ("as2", "capped", "offer daily_max_grants of 1 reached"),
            ("as3", "capped", "segment vip daily_offer_grants of 2 reached"),
            ("as4", None, None),
            ("as5", "granted", None),
            ("as6", "granted", None),
        ],
        "assignment_id string, offer_status string, offer_status_reason string",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


# -- ML predictions ----------------------------------------------------------------------------


def test_prediction_rows_are_accepted_or_quarantined_with_the_first_failing_check(spark, tmp_path):
    folder = tmp_path / "ml_predictions" / D.isoformat()
    folder.mkdir(parents=True)
    rows = [
        f"{A},{D},0.2,20.0,OFF_A,0.7,m,1",  # accepted
        f"{A},{D},0.3,30.0,OFF_A,0.8,m,1",  # same (subscriber, date, model): duplicate
        f"{B},{D},1.7,20.0,,,m,1",  # churn probability out of range
        f"{B},{D - timedelta(days=1)},0.1,10.0,OFF_X,0.9,m2,1",  # unknown offer
        f"{B},{D},0.1,10.0,OFF_A,,m3,1",  # offer without score
        f"{B},{D - timedelta(days=9)},0.1,10.0,,,m,1",  # older than the lateness window
        f"{B},{D + timedelta(days=1)},0.1,10.0,,,m,1",  # after the run date
        f"{C},{D},0.1,10.0,,,m,1",  # not in the CRM snapshot
        f"12345,{D},0.1,10.0,,,m,1",  # not a pseudonym
        f"{B},{D},abc,10.0,,,m,1",  # not a number
        f"{B},{D},0.1,10.0,,,,1",  # model name missing
    ]
    header = (
        "subscriber_id,prediction_date,churn_probability,risk_score,nbo_offer_id,nbo_score,model_name,model_version"
    )
    (folder / "p.csv").write_text("\n".join([header, *rows]) + "\n")
    contract = predictions.PredictionContract.load(DEFAULT_CONF_DIR / "ml_predictions.yaml")
    source = contract.source
    conformed = conform(read_extract(spark, source, D, str(tmp_path)).rows, source)
    known = spark.createDataFrame([(A,), (B,)], "subscriber_id string")
    classified = predictions.classify_predictions(conformed, source.columns, D, 7, known, ["OFF_A"])
    actual = classified.select("_raw_model_name", "_raw_churn_probability", "prediction_date", "reject_reason")
    expected = spark.createDataFrame(
        [
            ("m", "0.2", D, None),
            ("m", "0.3", D, "duplicate"),
            ("m", "1.7", D, "out_of_range"),
            ("m2", "0.1", D - timedelta(days=1), "unknown_offer"),
            ("m3", "0.1", D, "incomplete_nbo"),
            ("m", "0.1", D - timedelta(days=9), "stale_prediction"),
            ("m", "0.1", D + timedelta(days=1), "future_prediction"),
            ("m", "0.1", D, "unknown_subscriber"),
            ("m", "0.1", D, "invalid_subscriber_id"),
            ("m", "abc", D, "invalid_type"),
            (None, "0.1", D, "missing_field"),
        ],
        "_raw_model_name string, _raw_churn_probability string, prediction_date date, reject_reason string",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
    assert predictions.counts(classified) == {"read": 11, "accepted": 1, "rejected": 9, "duplicate": 1}
    loaded = predictions.to_predictions(classified, D).collect()
    assert [(r.subscriber_id, r.ds, r.churn_probability, r.nbo_offer_id, r.loaded_ds) for r in loaded] == [
        (A, D, 0.2, "OFF_A", D)
    ]
    rejects = predictions.to_prediction_rejects(classified, source.columns, "ml_predictions", D)
    assert rejects.count() == 10 and rejects.select("reject_id").distinct().count() == 10


def test_an_unreadable_prediction_delivery_degrades_the_source_and_the_night_goes_on(spark, tmp_path):
    """A parquet delivery Spark cannot read (a file the data-science job left truncated) is
    recorded as `degraded`, as any optional source's failure: it does not fail the night; a
    delivery that is not there at all is `missing`."""
    from jobs.context import RunContext, build_lakehouse
    from jobs.stages import predictions as predictions_stage

    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    shutil.copytree(DEFAULT_CONF_DIR.parent / "templates", tmp_path / "templates")
    contract = conf / "ml_predictions.yaml"
    contract.write_text(contract.read_text().replace("format: csv ", "format: parquet ").replace("*.csv", "*.parquet"))
    raw = tmp_path / "raw"
    overrides = {"lakehouse.root": str(tmp_path / "lakehouse"), "raw.root": str(raw)}
    config = load_config(conf, env="test", overrides=overrides, environ={})
    ctx = RunContext(spark, config, build_lakehouse(spark, config), D)
    assert ctx.settings.predictions.source.format == "parquet"

    assert predictions_stage.run(ctx)["status"] == "missing"  # no folder for the day
    folder = raw / "ml_predictions" / D.isoformat()
    folder.mkdir(parents=True)
    (folder / "part-0.parquet").write_bytes(b"PAR1 truncated by the writer")
    assert predictions_stage.run(ctx) == {"status": "degraded", "read": 0, "accepted": 0}
    runs = ctx.lakehouse.read("pipeline_runs").filter(F.col("source") == "ml_predictions").collect()
    assert [(r.run_ds, r.stage, r.status) for r in runs] == [(D, "ingest", "degraded")]
    assert "part-0.parquet" in runs[0].message


def test_a_prediction_delivery_with_no_usable_file_is_quarantined_whole(spark, tmp_path):
    """Every file of the delivery is set aside: the source degrades, its lines are read and
    rejected, and each file is in the quarantine with its reason."""
    from jobs.context import RunContext, build_lakehouse
    from jobs.stages import predictions as predictions_stage

    raw = tmp_path / "raw"
    overrides = {"lakehouse.root": str(tmp_path / "lakehouse"), "raw.root": str(raw)}
    config = load_config(env="test", overrides=overrides, environ={})
    ctx = RunContext(spark, config, build_lakehouse(spark, config), D)
    folder = raw / "ml_predictions" / D.isoformat()
    folder.mkdir(parents=True)
    (folder / "a.csv").write_bytes(b"")
    (folder / "b.csv").write_bytes("subscriber_id,offer_id\ncaf\u00e9,x\n".encode("latin-1"))
    assert predictions_stage.run(ctx) == {"status": "degraded", "read": 2, "accepted": 0}
    quarantined = ctx.lakehouse.read("events_rejected").filter(F.col("source") == "ml_predictions").collect()
    assert sorted((r.source_file.rsplit("/", 1)[-1], r.reject_reason) for r in quarantined) == [
        ("a.csv", "empty_file"),
        ("b.csv", "encoding_error"),
    ]
    assert ctx.lakehouse.read("ml_predictions").count() == 0
    runs = ctx.lakehouse.read("pipeline_runs").filter(F.col("source") == "ml_predictions").collect()
    assert [(r.status, r.rows_read, r.rows_rejected) for r in runs] == [("degraded", 2, 2)]


def test_predictions_are_stale_when_no_prediction_day_is_recent_enough():
    days = ["2025-05-01", "2025-05-03"]
    assert predictions.newest_fresh_date(days, D, 7) == date(2025, 5, 3)
    assert predictions.newest_fresh_date(days, D, 6) is None
    assert predictions.newest_fresh_date([], D, 7) is None


def test_a_rerun_of_a_past_date_sees_only_the_predictions_loaded_by_then(spark, tmp_path):
    """A catch-up delivery loaded on D + 2 holds predictions for D - 1: fresh for the night of
    D + 2, but D's rerun does not use them (latest_predictions) and so counts them stale."""
    from jobs.context import RunContext, build_lakehouse
    from jobs.run_log import StageResult, record_stages
    from jobs.stages.scores import latest_predictions, stale_predictions
    from jobs.tables import ML_PREDICTIONS, schema_of

    config = load_config(env="test", overrides={"lakehouse.root": str(tmp_path / "lakehouse")}, environ={})
    lakehouse = build_lakehouse(spark, config)
    schema = schema_of(ML_PREDICTIONS)
    row = {"subscriber_id": "sub-1", "model_name": "churn", "churn_probability": 0.4}
    row |= {"ds": D - timedelta(days=1), "loaded_ds": D + timedelta(days=2)}
    catch_up = spark.createDataFrame([tuple(row.get(f.name) for f in schema.fields)], schema)
    lakehouse.write(catch_up, ML_PREDICTIONS, partition_by=["ds"], replace_where={"loaded_ds": row["loaded_ds"]})

    def night(ds):
        ctx = RunContext(spark, config, lakehouse, ds)
        return stale_predictions(ctx, ctx.settings.scoring), latest_predictions(ctx, ctx.settings.scoring).count()

    assert night(D + timedelta(days=2)) == (False, 1)
    assert night(D) == (False, 0)  # no later night recorded yet: the run log says no later load can exist
    record_stages(lakehouse, D + timedelta(days=2), [StageResult("scores", "succeeded", 1.0, "{}")])
    assert night(D) == (True, 0)
    assert night(D + timedelta(days=2)) == (False, 1)


def test_the_msisdn_mapping_is_read_by_column_name_and_ambiguous_subscribers_are_left_out(spark, tmp_path):
    extract = tmp_path / "mapping.csv"
    extract.write_text(
        "msisdn,subscriber_id\n"  # the columns in the other order than documented
        "33600000001,sub-a\n"
        "33600000002,sub-b\n33600000003,sub-b\n"  # two numbers for one subscriber: which one is theirs?
        "33600000004,sub-c\n33600000004,sub-c\n"  # the same pair twice
    )
    mapping = exports.read_mapping(spark, str(extract), "csv")
    assert sorted(map(tuple, mapping.collect())) == [("sub-a", "33600000001"), ("sub-c", "33600000004")]
    extract.write_text("subscriber,msisdn\nsub-a,33600000001\n")
    with pytest.raises(exports.ExportError, match=r"mapping.csv: no column\(s\) \['subscriber_id'\]"):
        exports.read_mapping(spark, str(extract), "csv")


# -- subscriber_state --------------------------------------------------------------------------


def test_subscriber_state_assembles_the_apps_picture_and_flags_changes(spark):
    subjects = spark.createDataFrame(
        [(A, "mass", 50.0, 40.0, 30.0, 20.0, 10.123, False), (B, "vip", 1.0, 2.0, 3.0, 4.0, 5.0, True)],
        "subscriber_id string, segment string, engagement double, revenue double, loyalty double, risk double, "
        "digital double, holdout boolean",
    )
    assignments = spark.createDataFrame(
        [
            ("as1", "Use data 3 days", "easy", "OFF_A"),
            ("as2", "Top up twice", "medium", None),
            ("as3", "Log in", "easy", None),
            ("as4", "Hold-out mission", "easy", None),
        ],
        "assignment_id string, description string, level string, offer_id string",
    )
    progress_cols = (
        "assignment_id string, subscriber_id string, mission_id string, template_id string, category string, "
        "period_end date, progress_value double, target_value double, progress_pct double, status string, "
        "completed_ds date, newly_completed boolean, reward_points int, progress_ds date"
    )
    progress = spark.createDataFrame(
        [
            ("as1", A, "m1", "t1", "engagement", D + timedelta(days=3), 1.0, 3.0, 33.3, "active", None, False, 50, D),
            ("as2", A, "m2", "t2", "revenue", D + timedelta(days=1), 2.0, 2.0, 100.0, "completed", D, True, 80, D),
            (
                "as3",
                A,
                "m3",
                "t3",
                "digital",
                D - timedelta(days=1),
                1.0,
                1.0,
                100.0,
                "completed",
                D - timedelta(days=3),
                True,
                20,
                D - timedelta(days=3),
            ),
            ("as4", B, "m4", "t4", "digital", D + timedelta(days=3), 0.0, 1.0, 0.0, "active", None, False, 20, D),
        ],
        progress_cols,
    )
    awards = spark.createDataFrame(
        [
            (A, "data_explorer", "bronze", 1, D - timedelta(days=5), False),
            (A, "data_explorer", "silver", 2, D - timedelta(days=1), False),
            (A, "comeback", "bronze", 1, D, False),
            (B, "comeback", "bronze", 1, D, True),
        ],
        "subscriber_id string, badge_type string, level string, level_rank int, awarded_ds date, holdout boolean",
    )
    ledger = spark.createDataFrame(
        [
            (A, 100, D + timedelta(days=10), D - timedelta(days=355)),
            (A, 40, D + timedelta(days=31), D - timedelta(days=334)),
            (A, 80, D + timedelta(days=365), D),
        ],
        "subscriber_id string, points int, expires_ds date, entry_ds date",
    )
    tiers = spark.createDataFrame(
        [(A, 220, "silver", 2), (B, 0, "member", 1)],  # loyalty_tiers ranks count from 1
        "subscriber_id string, points_balance long, tier string, tier_rank int",
    )
    ladder = subscriber_state.tier_ladder(
        [("member", "true"), ("silver", "points_balance >= 200"), ("gold", "points_balance >= 750 and loyalty >= 40")]
    )
    assert ladder == [(0, "member", None), (1, "silver", 200), (2, "gold", 750)]
    previous = spark.createDataFrame([(A, "old"), (B, "will-match")], "subscriber_id string, state_hash string")
    today = progress.filter(F.col("progress_ds") == F.lit(D))
    rows = subscriber_state.subscriber_state(
        subjects,
        subscriber_state.active_missions(today, assignments),
        subscriber_state.recent_completions(progress, assignments),
        subscriber_state.badges_held(awards),
        subscriber_state.expiring_points(ledger, D),
        subscriber_state.with_next_tier(tiers, ladder),
        previous,
        D,
    )
    a = rows.filter(F.col("subscriber_id") == A).first().asDict(recursive=True)
    assert a["digital"] == 10.12 and a["holdout"] is False and a["changed"] is True
    assert [
        (m["assignment_id"], m["text"], m["progress_value"], m["target_value"], m["offer_id"])
        for m in a["active_missions"]
    ] == [("as1", "Use data 3 days", 1.0, 3.0, "OFF_A")]
    assert [(m["assignment_id"], m["completed_ds"]) for m in a["recent_completions"]] == [
        ("as2", D),
        ("as3", D - timedelta(days=3)),
    ]
    assert [(b["badge_type"], b["level"]) for b in a["badges"]] == [("comeback", "bronze"), ("data_explorer", "silver")]
    assert (a["points_balance"], a["points_expiring_30d"], a["tier"], a["next_tier"], a["points_to_next_tier"]) == (
        220,
        100,
        "silver",
        "gold",
        530,
    )
    b = rows.filter(F.col("subscriber_id") == B).first().asDict(recursive=True)
    assert b["holdout"] is True
    assert (b["active_missions"], b["recent_completions"], b["badges"]) == ([], [], [])
    assert (b["points_balance"], b["points_expiring_30d"], b["tier"], b["next_tier"]) == (None, None, None, None)
    # unchanged against a previous row with the same hash
    again = subscriber_state.subscriber_state(
        subjects,
        subscriber_state.active_missions(today, assignments),
        subscriber_state.recent_completions(progress, assignments),
        subscriber_state.badges_held(awards),
        subscriber_state.expiring_points(ledger, D),
        subscriber_state.with_next_tier(tiers, ladder),
        rows.select("subscriber_id", "state_hash"),
        D + timedelta(days=1),
    )
    assert {r.subscriber_id: r.changed for r in again.collect()} == {A: False, B: False}


def test_changed_subscribers_names_each_reason_of_the_incremental_rule(spark):
    profile_schema = (
        "subscriber_id string, segment string, engagement double, revenue double, loyalty double, risk double, "
        "digital double, holdout boolean, points_balance long, tier string, next_tier string, "
        "points_to_next_tier long"
    )
    scored = "ABCEFGHIJK"
    profile = spark.createDataFrame(
        [
            (s, "mass", 55.0 if s == "B" else 50.0, 1.0, 2.0, 3.0, 4.0, False, 10, "member", "silver", 190)
            for s in scored
        ],
        profile_schema,
    )
    previous = profile.filter(F.col("subscriber_id") != "C").withColumn("engagement", F.lit(50.0))
    progress_schema = (
        "assignment_id string, subscriber_id string, period_end date, mission_id string, template_id string, "
        "category string, progress_value double, target_value double, progress_pct double, status string, "
        "reward_points int, newly_completed boolean, progress_ds date"
    )
    end = D + timedelta(days=3)

    def progress(aid, sid, value, day, status="active", new=False):
        return (aid, sid, end, "m", "t", "engagement", value, 4.0, value * 25, status, 50, new, day)

    before = D - timedelta(days=1)
    today = spark.createDataFrame(
        [progress("as1", "A", 1.0, D), progress("as2", "E", 2.0, D), progress("as3", "F", 4.0, D, "completed")],
        progress_schema,
    )
    yesterday = spark.createDataFrame(
        [progress("as1", "A", 1.0, before), progress("as2", "E", 1.0, before), progress("as3", "F", 3.0, before)],
        progress_schema,
    )
    window = spark.createDataFrame(
        [
            progress("as4", "G", 4.0, D - timedelta(days=7), "completed", True),  # leaves the recent window
            progress("as5", "H", 4.0, D - timedelta(days=3), "completed", True),  # still inside: no change
        ],
        progress_schema,
    )
    assigned = spark.createDataFrame([("K",)], "subscriber_id string")
    awards = spark.createDataFrame([("H", D), ("A", D - timedelta(days=2))], "subscriber_id string, awarded_ds date")
    ledger = spark.createDataFrame(
        [
            ("I", 20, D + timedelta(days=365), D),  # earned today
            ("J", 20, D + timedelta(days=30), D - timedelta(days=335)),  # enters the 30-day window today
            ("A", 20, D + timedelta(days=40), D - timedelta(days=325)),  # neither
            ("L", 20, D + timedelta(days=365), D),  # not scored today
        ],
        "subscriber_id string, points int, expires_ds date, entry_ds date",
    )
    actual = subscriber_state.changed_subscribers(
        profile, previous, today, yesterday, assigned, window, awards, ledger, D, before
    )
    expected = spark.createDataFrame(
        [
            ("B", "profile"),
            ("C", "new"),
            ("E", "missions"),
            ("F", "missions"),
            ("K", "missions"),
            ("G", "completions"),
            ("H", "badges"),
            ("I", "points"),
            ("J", "points"),
        ],
        "subscriber_id string, reason string",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
    carried = subscriber_state.carried_forward(previous.withColumn("changed", F.lit(True)), profile, actual, D)
    assert sorted(r.subscriber_id for r in carried.collect()) == ["A"]


# -- exports -----------------------------------------------------------------------------------


def test_audience_changes_are_joins_and_leaves(spark):
    schema = "audience string, subscriber_id string, audience_version string, audience_ds date"
    before = spark.createDataFrame([("x", A, "1", D - timedelta(days=1)), ("x", B, "1", D - timedelta(days=1))], schema)
    today = spark.createDataFrame([("x", B, "1", D), ("y", A, "1", D)], schema)
    expected = spark.createDataFrame(
        [("y", A, "joined", "1", D), ("x", A, "left", "1", D)],
        "audience string, subscriber_id string, change string, audience_version string, change_ds date",
    )
    assert_df_equality(
        exports.audience_changes(today, before, D), expected, ignore_row_order=True, ignore_nullable=True
    )


def test_msisdn_consumers_get_mapped_msisdns_and_unmapped_rows_are_held_back(spark):
    rows = spark.createDataFrame([("t1", A), ("t2", B)], "trigger_id string, subscriber_id string")
    mapping = spark.createDataFrame([(A, "+33600000001")], "subscriber_id string, msisdn string")
    consumer = exports.Consumer("crm", "files", "msisdn", ("campaign_triggers",))
    leaving, held = exports.with_identifier(rows, consumer, mapping)
    assert leaving.columns == ["trigger_id", "msisdn"]
    assert [tuple(r) for r in leaving.collect()] == [("t1", "+33600000001")]
    assert [tuple(r) for r in held.collect()] == [("t2", B)]
    pseudonymous = exports.Consumer("app", "files", "pseudonym", ("campaign_triggers",))
    assert exports.with_identifier(rows, pseudonymous, None)[0] is rows


def test_export_settings_validate_consumers(tmp_path):
    settings = exports.ExportSettings.load(DEFAULT_CONF_DIR / "exports.yaml", environ={})
    assert {c.name for c in settings.active} == {"campaign_system", "loyalty_platform", "app_feed"}
    enabled = exports.ExportSettings.load(
        DEFAULT_CONF_DIR / "exports.yaml",
        {"app_backend": {"active": True}},
        environ={"APP_DB_JDBC_URL": "jdbc:postgresql://db/app", "APP_DB_PASSWORD": "pw"},
    )
    backend = next(c for c in enabled.active if c.name == "app_backend")
    assert (backend.url, backend.password) == ("jdbc:postgresql://db/app", "pw")
    bad = tmp_path / "exports.yaml"
    bad.write_text("consumers:\n  x: {kind: files, identifier: pseudonym, datasets: [everything]}\n")
    with pytest.raises(ConfigError, match=r"consumers\.x\.datasets"):
        exports.ExportSettings.load(bad, environ={})
    bad.write_text(
        "consumers:\n  x: {kind: jdbc, identifier: pseudonym, datasets: [ledger_entries], password: hunter2}\n"
    )
    with pytest.raises(ConfigError, match=r"consumers\.x\.password"):
        exports.ExportSettings.load(bad, environ={})


def test_the_gate_holds_for_a_table_until_a_commit_for_its_date_follows_the_version_it_read(spark, tmp_path):
    assert sorted(exports.SOURCE_TABLE) == sorted(exports.DATASETS)  # every dataset's table is checked
    lakehouse = Lakehouse(spark, str(tmp_path / "lake"))
    run = SimpleNamespace(ds=D, lakehouse=lakehouse)

    def write(ds: date, stage: str) -> None:
        with lakehouse.committing(ds=ds.isoformat(), stage=stage, run_id=f"run-{stage}"):
            rows = spark.createDataFrame([(A, ds)], "subscriber_id string, state_ds date")
            lakehouse.write(rows, "state", partition_by=["state_ds"], replace_where={"state_ds": ds})

    def gate(version: int | None):
        results = spark.createDataFrame([("state", version), ("other", 7)], "table_name string, table_version long")
        return stage_exports.validated_versions(results)

    write(D, "subscriber_state")  # v1 (v0 created the table), read by the gate
    write(D + timedelta(days=1), "subscriber_state")  # v2: the next night, another date
    assert stage_exports.rewritten_since_gate(run, gate(1), ["state"]) == []
    assert stage_exports.rewritten_since_gate(run, gate(2), ["state"]) == []
    write(D, "missions")  # v3: the date rewritten after the gate
    assert stage_exports.rewritten_since_gate(run, gate(1), ["state"]) == [
        "state v3 by stage missions (run run-missions) after v1"
    ]
    assert stage_exports.rewritten_since_gate(run, gate(3), ["state"]) == []
    assert stage_exports.rewritten_since_gate(run, gate(None), ["state"]) == [
        "state: the gate's results name no version of it"
    ]
    assert stage_exports.rewritten_since_gate(run, gate(0), ["absent"]) == [
        "absent: the gate's results name no version of it"
    ]
    DeltaTable(lakehouse.uri("state")).create_checkpoint()
    (tmp_path / "lake" / "state" / "_delta_log" / f"{2:020d}.json").unlink()  # as the log's cleanup leaves it
    assert stage_exports.rewritten_since_gate(run, gate(1), ["state"]) == [
        "state: its log no longer holds the commits after version 1"
    ]


def _ledger(spark):
    return spark.createDataFrame(
        [("e2", B, "badge_award", 50, D), ("e1", A, "mission_completion", 120, D), ("e3", A, "expiry", -30, D)],
        "entry_id string, subscriber_id string, entry_type string, points int, entry_ds date",
    )


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_file_export_is_complete_checksummed_and_identical_on_rerun(spark, tmp_path, fmt):
    consumer = exports.Consumer("loyalty", "files", "pseudonym", ("ledger_entries",), format=fmt)
    manifest = exports.export_files(str(tmp_path), consumer, {"ledger_entries": _ledger(spark)}, {}, D)
    folder = tmp_path / "loyalty" / D.isoformat()
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    ext = "jsonl.gz" if fmt == "jsonl" else "csv.gz"
    assert names == ["_SUCCESS", "ledger_entries/ledger_entries-00000." + ext, "manifest.json"]
    assert [p.name for p in (tmp_path / "loyalty").iterdir()] == [D.isoformat()]  # no temporary folder left
    data = gzip.decompress((folder / "ledger_entries" / f"ledger_entries-00000.{ext}").read_bytes()).decode()
    if fmt == "jsonl":
        assert [json.loads(line)["entry_id"] for line in data.splitlines()] == ["e1", "e2", "e3"]
    else:
        assert data.splitlines() == [
            "entry_id,subscriber_id,entry_type,points,entry_ds",
            f"e1,{A},mission_completion,120,{D}",
            f"e2,{B},badge_award,50,{D}",
            f"e3,{A},expiry,-30,{D}",
        ]
    import hashlib

    written = json.loads((folder / "manifest.json").read_text())
    assert written == manifest
    entry = written["datasets"]["ledger_entries"]
    assert entry["rows"] == 3 and entry["keys"] == ["entry_id"]
    file_bytes = (folder / entry["files"][0]["path"]).read_bytes()
    assert entry["files"][0]["sha256"] == hashlib.sha256(file_bytes).hexdigest()
    before = {n: (folder / n).read_bytes() for n in names}
    exports.export_files(str(tmp_path), consumer, {"ledger_entries": _ledger(spark)}, {}, D)
    assert {n: (folder / n).read_bytes() for n in names} == before


def test_subscriber_state_export_keeps_the_newest_state(spark):
    consumer = exports.Consumer("app", "jdbc", "pseudonym", ("subscriber_state",), table_prefix="app_")
    schema = spark.createDataFrame([], "subscriber_id string, badges array<string>, state_ds date").schema
    statements = exports_jdbc.merge_statements(consumer, "subscriber_state", schema, "app_stage", D)
    assert statements[0] == (
        'CREATE TABLE IF NOT EXISTS app_subscriber_state ("subscriber_id" text, "badges" jsonb, "state_ds" date, '
        'PRIMARY KEY ("subscriber_id"))'
    )
    assert statements[1] == (
        'INSERT INTO app_subscriber_state ("subscriber_id", "badges", "state_ds") SELECT "subscriber_id", '
        'CAST("badges" AS jsonb), "state_ds" FROM app_stage ON CONFLICT ("subscriber_id") DO UPDATE SET '
        '"badges" = EXCLUDED."badges", "state_ds" = EXCLUDED."state_ds" WHERE app_subscriber_state."state_ds" <= '
        'EXCLUDED."state_ds"'
    )


def test_generated_mapping_and_predictions_follow_the_personas(tmp_path):
    import csv
    from collections import defaultdict

    from jobs.sample_data import generate

    generate(tmp_path, subscribers=400, days=2, start=D, seed=3, defect_rate=0.0)
    truth = list(csv.DictReader((tmp_path / "_truth" / "personas.csv").open()))
    mapping = list(csv.DictReader((tmp_path / "operator_mapping" / "msisdn_mapping.csv").open()))
    assert {(r["subscriber_id"], r["msisdn"]) for r in mapping} == {(r["subscriber_id"], r["msisdn"]) for r in truth}
    persona = {r["subscriber_id"]: r["persona"] for r in truth}
    day2 = D + timedelta(days=1)
    rows = list(
        csv.DictReader((tmp_path / "ml_predictions" / day2.isoformat() / f"predictions_{day2:%Y%m%d}.csv").open())
    )
    crm = (tmp_path / "crm_subscribers" / day2.isoformat() / f"subscribers_{day2:%Y%m%d}.csv").read_text().splitlines()
    assert len(rows) == len(crm) - 1 and {r["prediction_date"] for r in rows} == {day2.isoformat()}
    churn, offered = defaultdict(list), defaultdict(set)
    for r in rows:
        churn[persona[r["subscriber_id"]]].append(float(r["churn_probability"]))
        offered[persona[r["subscriber_id"]]].add(r["nbo_offer_id"])
    assert min(churn["churn_risk"]) >= 0.45 + 0.3  # the last day of the window: full drift
    assert max(churn["steady_loyal"]) <= 0.08 and max(churn["heavy_data"]) <= 0.15
    assert offered["heavy_data"] == {"DATA_BOOST_10GB", ""}
    assert offered["digital_native"] == {"PARTNER_STREAMING_3M", ""}
    assert offered["steady_loyal"] == offered["churn_risk"] == {""}


# -- badge links -------------------------------------------------------------------------------

LINKED_BADGE = """\
id: {id}
name: Test badge
version: 1
kind: badge
spec:
  description: "A test badge."
  unlock_order: {order}
  auto_award_rules:
    bronze:   "total_data_mb >= 10 or badge_missions >= 2"
    silver:   "total_data_mb >= 20"
    gold:     "total_data_mb >= 30"
    platinum: "total_data_mb >= 40"
  points: {{bronze: 1, silver: 2, gold: 3, platinum: 4}}
"""


def test_completed_missions_count_toward_the_badge_their_template_names(spark):
    from jobs import lifetime

    completions = spark.createDataFrame(
        [
            ("s1", "engagement", "streak"),
            ("s1", "revenue", "streak"),
            ("s1", "revenue", "data"),
            ("s2", "revenue", None),
        ],
        "subscriber_id string, category string, badge string",
    )
    activity = spark.createDataFrame([("s1", D, 5.0)], "subscriber_id string, activity_date date, data_mb double")
    metrics = {"total_data_mb": lifetime.LifetimeMetric("total_data_mb", "data_mb", "sum")}
    state = lifetime.advance(None, activity, completions, metrics, ["revenue"], ["streak", "data"], span=(D, D))
    values = {
        r.subscriber_id: dict(r.m)
        for r in state.select(
            "subscriber_id", lifetime.values(F.col("state"), metrics, ["revenue"], D, ["streak", "data"]).alias("m")
        ).collect()
    }
    assert values == {
        "s1": {
            "total_data_mb": 5.0,
            "missions_completed": 3.0,
            "missions_completed_revenue": 2.0,
            "missions_completed_for_streak": 2.0,
            "missions_completed_for_data": 1.0,
        },
        "s2": {
            "total_data_mb": 0.0,
            "missions_completed": 1.0,
            "missions_completed_revenue": 1.0,
            "missions_completed_for_streak": 0.0,
            "missions_completed_for_data": 0.0,
        },
    }


def test_badges_unlock_in_order_and_linked_missions_earn_them(spark, tmp_path):
    from jobs import badges

    (tmp_path / "first.yaml").write_text(LINKED_BADGE.format(id="first", order=1))
    (tmp_path / "second.yaml").write_text(
        LINKED_BADGE.format(id="second", order=2).replace("total_data_mb >= 10 or", "roaming_days >= 1 or")
    )
    types = badges.load_badges(tmp_path, ["total_data_mb", "roaming_days", "badge_missions"])
    subjects = spark.createDataFrame(
        [
            ("first_today", 15.0, 1.0, 0.0, 0.0, False),  # earns first today: second opens tomorrow
            ("locked", 5.0, 1.0, 0.0, 0.0, False),  # qualifies for second only: still locked
            ("held_first", 5.0, 1.0, 0.0, 0.0, False),  # holds first: second is open
            ("missions", 5.0, 0.0, 2.0, 3.0, False),  # two missions linked to first, three to second
            ("missions_held", 5.0, 0.0, 0.0, 2.0, False),  # holds first, two missions linked to second
        ],
        "subscriber_id string, total_data_mb double, roaming_days double, missions_completed_for_first double, "
        "missions_completed_for_second double, holdout boolean",
    )
    held = spark.createDataFrame(
        [("held_first", "first", 1), ("missions_held", "first", 1)],
        "subscriber_id string, badge_type string, held_rank int",
    )
    got = sorted((a.subscriber_id, a.badge_id) for a in badges.award(subjects, held, types, D).collect())
    assert got == [
        ("first_today", "first.bronze"),
        ("held_first", "second.bronze"),
        ("missions", "first.bronze"),
        ("missions_held", "second.bronze"),
    ]


def test_nested_struct_fields_are_written_nullable(spark):
    from jobs.frames import with_nullable_nesting

    df = spark.range(1).select(
        F.create_map(F.lit("k"), F.struct(F.lit(1.0).alias("w"))).alias("m"),
        F.array(F.struct(F.lit("x").alias("s"))).alias("a"),
    )
    assert df.schema["m"].dataType.valueType["w"].nullable is False
    out = with_nullable_nesting(df)
    assert out.schema["m"].dataType.simpleString() == "map<string,struct<w:double>>"
    assert out.schema["m"].dataType.valueType["w"].nullable is True
    assert out.schema["m"].dataType.valueContainsNull == df.schema["m"].dataType.valueContainsNull
    assert out.schema["a"].dataType.elementType["s"].nullable is True
    assert out.collect() == df.collect()
