"""Data-quality gates on tiny crafted lakehouses: good data passes, each kind of defect is caught
with the table, column and observed value named, warnings never fail the run."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.config import DEFAULT_CONF_DIR, ConfigError, load_config
from jobs.context import PipelineError, RunContext, build_lakehouse
from jobs.quality import (
    QUALITY_RESULTS,
    QualityError,
    TableSpec,
    load_spec,
    passes_below_floor,
    raw_batch,
    read_day,
    selected,
    small_batch_allowance,
    with_orphans,
    with_reject_rates,
)
from jobs.quality.plan import plan_table
from jobs.sources import Source, conform
from jobs.stages.quality import run as run_quality
from jobs.tables import PIPELINE_RUNS, schema_of

pytestmark = pytest.mark.unit

D1, D2, D3 = date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)
SCORES = ("engagement", "revenue", "loyalty", "risk", "digital")
CDR_HEADER = "record_id|msisdn|record_type|start_time|duration_s|bytes_up|bytes_down|cell_id|roaming_flag|other_party"


# -- building tiny lakehouses -------------------------------------------------------------------


REWARD_TABLES = (
    "mission_progress", "badge_catalog", "badge_awards", "loyalty_ledger", "loyalty_tiers", "campaign_triggers",
    "campaign_audiences",
)  # fmt: skip


def config_for(root: Path, **quality: object):
    overrides = {
        "lakehouse.root": str(root / "lake"),
        "raw.root": str(root / "raw"),
        "quality.data_docs_dir": str(root / "docs"),
        # the tiny lakehouses here hold only the tables a test needs
        **{f"quality.tables.{t}.optional": True for t in REWARD_TABLES},
        **{f"quality.{key}": value for key, value in quality.items()},
    }
    return load_config(env="test", overrides=overrides, environ={})


def context(spark, root: Path, ds: date, **quality: object) -> RunContext:
    config = config_for(root, **quality)
    return RunContext(spark, config, build_lakehouse(spark, config), ds, only_sources=["cdr"])


def write_cdr(root: Path, ds: date, msisdns: list[str | None]) -> None:
    folder = root / "raw" / "cdr" / ds.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = ds.strftime("%Y%m%d") + "101500"
    lines = [f"r{ds:%d}{i}|{m or ''}|MOC|{stamp}|60|0|0|CELL1|N|0611111111" for i, m in enumerate(msisdns)]
    (folder / "part-00.csv").write_text("\n".join([CDR_HEADER, *lines]) + "\n")


# table -> (schema, date partition column): the columns the shipped suites read, or None for the table's own
TABLES = {
    "behavior_scores": (
        "subscriber_id string, " + ", ".join(f"{c} double" for c in SCORES) + ", score_date date",
        "score_date",
    ),
    "events": (
        "event_id string, subscriber_id string, event_type string, source string, event_ts timestamp, "
        "event_date date, ingest_date date",
        "event_date",
    ),
    "events_rejected": ("reject_id string, source string, reject_reason string, ingest_date date", "ingest_date"),
    PIPELINE_RUNS: (None, "run_ds"),  # the real schema
    "mission_catalog": ("mission_id string, catalog_date date", "catalog_date"),
    "mission_assignments": (
        "assignment_id string, subscriber_id string, mission_id string, is_dynamic boolean, assigned_ds date",
        "assigned_ds",
    ),
    "badge_catalog": ("badge_id string, catalog_date date", "catalog_date"),
    "badge_awards": ("award_id string, subscriber_id string, badge_id string, awarded_ds date", "awarded_ds"),
    "subscriber_state": (None, "state_ds"),
    "export_runs": (None, "run_ds"),
}


def state_row(s: str, ds: date, balance: int = 100) -> tuple:
    """A subscriber_state row (the real schema): rewarded, no missions, a silver tier."""
    return (s, "mass", *[50.0] * 5, False, [], [], [], balance, 0, "silver", "gold", 650, f"h-{s}", True, ds)


def good_day(ds: date, subscribers: int) -> dict[str, list[tuple]]:
    """Rows of one run date of every required table, all of which pass."""
    subs = [f"s{i}" for i in range(subscribers)]
    at = datetime(ds.year, ds.month, ds.day, 10)
    return {
        "behavior_scores": [(s, *[50.0] * 5, ds) for s in subs],
        "events": [(f"e{ds:%d}-{s}", s, "cdr", "cdr", at, ds, ds) for s in subs],
        "events_rejected": [("x1", "cdr", "missing_field", ds)],
        PIPELINE_RUNS: [(ds, "ingest", "cdr", "succeeded", 1000, 990, 10, 0, 990, 1.0, "")],
        "mission_catalog": [("m1", ds), ("m2", ds)],
        "mission_assignments": [(f"a{ds:%d}1", "s0", "m1", False, ds), (f"a{ds:%d}2", "s1", "dyn-s1", True, ds)],
        "subscriber_state": [state_row(s, ds) for s in subs],
        "export_runs": [(ds, "app_feed", "files", "subscriber_state", "pseudonym", 10, "/x", "ab", "delivered")],
    }


def write_tables(spark, lakehouse, days: dict[date, dict[str, list[tuple]]]) -> None:
    """Each table once, with the rows of every day given."""
    for table in sorted({t for rows in days.values() for t in rows}):
        schema, partition = TABLES[table]
        rows = [row for day in days.values() for row in day.get(table, [])]
        frame = spark.createDataFrame(rows, schema or schema_of(table))
        lakehouse.write(frame, table, partition_by=[partition], replace_where={partition: sorted(days)})


def results_of(ctx: RunContext, ds: date) -> list:
    return ctx.lakehouse.read(QUALITY_RESULTS, partitions=[("run_ds", "=", ds)]).collect()


@pytest.fixture(scope="module")
def good(spark, tmp_path_factory):
    """A lakehouse that passes on D2; on D3 most rows are gone (a warning only)."""
    root = tmp_path_factory.mktemp("good")
    ctx = context(spark, root, D2)
    write_tables(spark, ctx.lakehouse, {D1: good_day(D1, 10), D2: good_day(D2, 10), D3: good_day(D3, 3)})
    for ds in (D2, D3):
        write_cdr(root, ds, ["0611111111", "+33 6 22 22 22 22", "0633333333"])
    return root, ctx, run_quality(ctx)


@pytest.fixture(scope="module")
def bad(spark, tmp_path_factory):
    """Every defect at once on D2: the run fails, naming each."""
    root = tmp_path_factory.mktemp("bad")
    ctx = context(spark, root, D2)
    day = good_day(D2, 4)
    day["behavior_scores"][0] = ("s0", 101.0, *[50.0] * 4, D2)
    day["behavior_scores"][1] = ("s1", 50.0, 50.0, 50.0, None, 50.0, D2)
    day["events"][1] = (day["events"][0][0], *day["events"][1][1:])  # a repeated event_id
    day["mission_assignments"].append(("a3", "s2", "m-gone", False, D2))  # a catalog mission not in the catalog
    day[PIPELINE_RUNS] = [(D2, "ingest", "cdr", "succeeded", 1000, 880, 120, 0, 880, 1.0, "")]
    day["badge_catalog"] = [("b1", D2)]
    day["badge_awards"] = [("w1", "s0", "b1", D2), ("w2", "s1", "b-unknown", D2)]
    day["subscriber_state"] = [state_row("s0", D2), state_row("s1", D2, balance=-5), state_row("s9", D2)]
    earlier = good_day(D1, 4)
    for rows in (day, earlier):
        del rows["events_rejected"]  # a required table is absent
    write_tables(spark, ctx.lakehouse, {D1: earlier, D2: day})
    write_cdr(root, D2, ["0611111111", None, None, "0644444444"])
    with pytest.raises(QualityError) as raised:
        run_quality(ctx, DEFECTIVE)
    return ctx, raised.value


DEFECTIVE = [
    "raw.cdr", "behavior_scores", "events*", "pipeline_runs", "mission_assignments", "badge_awards",
    "subscriber_state",
]  # fmt: skip


# -- end to end ---------------------------------------------------------------------------------


def test_a_good_lakehouse_passes_records_results_and_builds_data_docs(good):
    root, ctx, summary = good
    assert (summary["failed_critical"], summary["failed_warning"]) == (0, 0)
    assert summary["suites"] == 16  # raw.cdr + every configured table the gate validates (not export_runs)
    assert summary["data_docs"] == (root / "docs" / D2.isoformat() / "index.html").resolve().as_uri()
    assert (root / "docs" / D2.isoformat() / "index.html").is_file()
    rows = results_of(ctx, D2)
    assert len(rows) == summary["expectations"] + len(summary["skipped"])
    assert {r.status for r in rows} == {"passed", "skipped"}
    scores = {(r.expectation, r.column) for r in rows if r.table_name == "behavior_scores"}
    assert ("expect_column_values_to_be_between", "engagement") in scores
    assert {r.table_name for r in rows if r.table_name == "export_runs"} == set()
    state = {(r.expectation, r.column) for r in rows if r.table_name == "subscriber_state" and r.status == "passed"}
    assert {
        ("expect_column_values_to_be_unique", "subscriber_id"),
        ("expect_column_values_to_be_between", "points_balance"),
        ("expect_column_values_to_be_null", "subscriber_id"),
    } <= state
    skipped = {r.table_name for r in rows if r.status == "skipped"}
    assert skipped == {
        "ml_predictions",
        "mission_progress",
        "badge_catalog",
        "badge_awards",
        "loyalty_ledger",
        "loyalty_tiers",
        "campaign_triggers",
        "campaign_audiences",
    }


def test_a_row_count_drop_is_a_warning_and_does_not_raise(spark, good):
    root, _, _ = good
    ctx = context(spark, root, D3)
    summary = run_quality(ctx, ["behavior_scores", "events"])
    assert (summary["failed_critical"], summary["failed_warning"]) == (0, 2)
    drops = [r for r in results_of(ctx, D3) if r.status == "failed"]
    assert {(r.table_name, r.severity, r.observed) for r in drops} == {
        ("behavior_scores", "warning", "observed 3"),
        ("events", "warning", "observed 3"),
    }
    assert all("previous day 10 rows" in r.scope for r in drops)


def test_a_partial_rerun_keeps_the_other_suites_results(spark, good):
    root, _, first = good
    ctx = context(spark, root, D2)
    run_quality(ctx, ["mission_c*"])
    assert len(results_of(ctx, D2)) == first["expectations"] + len(first["skipped"])


def test_each_defect_fails_critical_naming_table_column_and_observed_value(bad):
    _, error = bad
    message = str(error)
    expected = [
        "behavior_scores.engagement expect_column_values_to_be_between: 1 of 4 rows unexpected (25.00%), e.g. 101",
        "behavior_scores.risk expect_column_values_to_not_be_null: 1 of 4 rows unexpected (25.00%)",
        "events.event_id expect_column_values_to_be_unique: 2 of 4 rows unexpected (50.00%), e.g. e02-s0, e02-s0",
        "mission_assignments.mission_id expect_column_values_to_be_null "
        "[not in mission_catalog.mission_id, where is_dynamic == false]: "
        "1 of 3 rows unexpected (33.33%), e.g. m-gone",
        "pipeline_runs.reject_rate expect_column_max_to_be_between [source cdr]: observed 0.12",
        "badge_awards.badge_id expect_column_values_to_be_null [not in badge_catalog.badge_id]: "
        "1 of 2 rows unexpected (50.00%), e.g. b-unknown",
        "events_rejected expect_table_to_exist: table is absent",
        "raw.cdr.msisdn expect_column_values_to_not_be_null: 2 of 4 rows unexpected (50.00%)",
        "subscriber_state.points_balance expect_column_values_to_be_between: 1 of 3 rows unexpected (33.33%), e.g. -5",
        "subscriber_state.subscriber_id expect_column_values_to_be_null [not in behavior_scores.subscriber_id]: "
        "1 of 3 rows unexpected (33.33%), e.g. s9",
    ]
    for line in expected:
        assert line in message
    assert len(error.failures) == len(expected)
    assert isinstance(error, PipelineError)


def test_failures_are_recorded_before_raising(bad):
    ctx, error = bad
    failed = {(r.table_name, r.column, r.severity) for r in results_of(ctx, D2) if r.status == "failed"}
    assert ("behavior_scores", "engagement", "critical") in failed
    assert ("pipeline_runs", "reject_rate", "critical") in failed
    assert len(failed) == len(error.failures)


def test_suites_validated_in_parallel_give_the_results_and_jobs_of_one_at_a_time(spark, bad):
    ctx, _ = bad
    assert ctx.settings.quality.parallel_suites > 1  # the shipped setting
    root = Path(ctx.config.get("raw.root")).parent
    runs = {}
    for parallel in (1, 4, 1, 4):
        ctx = context(spark, root, D2, parallel_suites=parallel)
        group = f"quality-{parallel}-{len(runs)}"
        spark.sparkContext.setJobGroup(group, "quality")
        try:
            with pytest.raises(QualityError) as raised:
                run_quality(ctx, DEFECTIVE)
        finally:
            spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
        rows = sorted((tuple(r) for r in results_of(ctx, D2)), key=repr)
        jobs = len(spark.sparkContext.statusTracker().getJobIdsForGroup(group))
        runs[group] = (parallel, str(raised.value), [o.describe() for o in raised.value.failures], rows, jobs)
    first, *later = runs.values()
    assert len(first[2]) == 10
    # the same message, failures in the same order and quality_results rows
    assert [r[1:4] for r in later] == [first[1:4]] * 3
    # the suites' Spark jobs count in the caller's job group from the suites' threads too: as
    # many as one at a time (once the first run on this lakehouse, which starts one more, is past)
    assert [r[4] for r in later] == [later[1][4]] * 3 and later[1][4] > 0


# -- pure parts ---------------------------------------------------------------------------------


def test_orphans_ignore_rows_outside_the_where_filter(spark):
    child = spark.createDataFrame(
        [("m1", False), ("m9", False), ("m8", True), (None, False)], "mission_id string, is_dynamic boolean"
    )
    parent = spark.createDataFrame([("m1",), ("m1",)], "mission_id string")
    out = with_orphans(child, parent, "mission_id", "mission_id", "is_dynamic == false")
    assert sorted(r._orphan_mission_id or "-" for r in out.collect()) == ["-", "-", "-", "m9"]


def test_reject_rates_per_source_with_a_minimum_of_rows_read(spark):
    runs = spark.createDataFrame(
        [
            (D2, "ingest", "cdr", "succeeded", 200, 180, 20, 0, 0, 1.0, ""),
            (D2, "ingest", "xiva", "succeeded", 10, 5, 5, 0, 0, 1.0, ""),
            (D2, "ingest", "app", "missing", 0, 0, 0, 0, 0, 1.0, ""),
            # no usable file: every line rejected, the source left without data and judged by its status
            (D2, "ingest", "web", "degraded", 120, 0, 120, 0, 0, 1.0, "no usable file"),
            (D2, "ingest", "qoe", "succeeded", 120, 0, 120, 0, 0, 1.0, "1 of 1 file(s) quarantined"),
        ],
        schema_of(PIPELINE_RUNS),
    )
    names = ("cdr", "xiva", "app", "web", "qoe")
    out = with_reject_rates(runs, list(names), min_rows_read=50)
    maxima = out.agg(*[F.max(f"reject_rate_{s}").alias(s) for s in names]).first()
    assert maxima.asDict() == {"cdr": 0.1, "xiva": 0.0, "app": 0.0, "web": 0.0, "qoe": 1.0}


def test_raw_batch_flags_unparsed_values_and_never_shows_an_msisdn(spark):
    source = Source.from_config(
        {
            "name": "t",
            "kind": "cdr",
            "format": "csv",
            "sync_frequency": "daily",
            "contract": {"id": "string", "msisdn": "string", "n": "long", "at": "string"},
            "natural_key": ["id"],
            "subscriber": {"column": "msisdn"},
            "event_time": {"column": "at", "format": "yyyyMMdd"},
            "mappings": [{"event_type": "x", "event_subtype": "y"}],
        }
    )
    raw = spark.createDataFrame(
        [("1", "0611111111", "5", "20250301"), ("2", "12", "five", "2025-03-01"), ("3", " ", "", None)],
        "id string, msisdn string, n string, at string",
    ).withColumn("_source_file", F.lit("f"))
    rows = raw_batch(conform(raw, source), source, "33").orderBy("id").collect()
    assert [(r.msisdn, r._unparsed_n, r._unparsed_event_time, r._invalid_msisdn) for r in rows] == [
        ("<redacted>", None, None, None),
        ("<redacted>", "five", "2025-03-01", "<redacted>"),
        (None, None, None, None),
    ]
    shown = " ".join(str(v) for r in rows for v in r)
    assert "0611111111" not in shown and "12" not in shown.replace("2025", "")


def test_the_shipped_quality_config_loads():
    spec = load_spec(DEFAULT_CONF_DIR / "quality.yaml")
    assert spec.tables["events"].partition_column == "event_date"
    assert [name for name, t in spec.tables.items() if t.optional] == ["ml_predictions"]
    checks = {c.expect for t in spec.tables.values() for c in t.checks}
    assert checks == {
        "not_null", "between", "in_set", "unique", "min_rows", "row_count_change", "references", "reject_rate",
    }  # fmt: skip


def suite_file(path, *checks: str, name: str = "t") -> None:
    """conf/quality.yaml with one table suite (date column d) and the given checks (flow mappings)."""
    path.write_text(
        f"tables:\n  - id: {name}\n    name: T\n    version: 1\n    kind: quality_suite\n    spec:\n"
        "      date_column: d\n      checks:\n" + "".join(f"        - {c}\n" for c in checks)
    )


def test_config_errors_name_the_key(tmp_path):
    path = tmp_path / "quality.yaml"
    suite_file(path, "{expect: unique, column: id, severity: fatal}", "{expect: unique, column: id, mostly: 2}")
    with pytest.raises(ConfigError) as error:
        load_spec(path)
    # both checks' mistakes at once, at the line and column of the value (line 9 and 10, column 50 and 48)
    assert error.value.problems == [
        f"{path}:9:50: spec.checks[0].severity: 'fatal' is not one of critical, warning",
        f"{path}:10:48: spec.checks[1].mostly: 2 is greater than the maximum of 1",
    ]
    suite_file(path, "{expect: unique, column: id, severity: critical}")
    with pytest.raises(
        ConfigError, match=r"quality\.yaml:9:20: tables\.t\.checks\[0\]\.expect: unknown check 'distinct'"
    ):
        load_spec(path, {"tables": {"t": {"checks": [{"expect": "distinct"}]}}})


def test_every_check_problem_of_a_suite_is_listed_at_once(tmp_path):
    path = tmp_path / "quality.yaml"
    suite_file(path, "{expect: between, columns: [a]}", "{expect: in_set, columns: [b]}")
    with pytest.raises(ConfigError) as error:
        load_spec(path)
    # each at its check (a missing key: the check's mapping, column 11 of its line)
    assert error.value.problems == [
        f"{path}:9:11: tables.t.checks[0]: between needs min, max or both",
        f"{path}:10:11: tables.t.checks[1].values: in_set needs a list of values",
    ]


def test_suite_selection_accepts_globs_and_refuses_unknown_names():
    names = ["raw.cdr", "raw.app", "events", "behavior_scores"]
    assert selected(names, ["raw.*", "events"]) == ["raw.cdr", "raw.app", "events"]
    assert selected(names, None) == names
    with pytest.raises(PipelineError, match="unknown quality suite"):
        selected(names, ["scores"])


def test_the_pipeline_runs_suite_ignores_rows_of_the_gate_and_later_stages_so_reruns_match(spark, tmp_path):
    ctx = context(spark, tmp_path, D2)
    runs = [
        (D2, "ingest", "cdr", "succeeded", 10, 10, 0, 0, 10, 1.0, ""),
        (D2, "scores", None, "succeeded", None, None, None, None, None, 2.0, "{}"),
        (D2, "quality", None, "succeeded", None, None, None, None, None, 3.0, "{}"),  # left by the first run
        (D2, "exports", None, "succeeded", None, None, None, None, None, 1.5, "{}"),  # after the gate: the same
        (D1, "ingest", "cdr", "succeeded", 9, 9, 0, 0, 9, 1.0, ""),
    ]
    ctx.lakehouse.write(
        spark.createDataFrame(runs, schema_of(PIPELINE_RUNS)),
        PIPELINE_RUNS,
        partition_by=["run_ds"],
        replace_where={"run_ds": [D1, D2]},
    )
    rows = read_day(ctx, TableSpec(PIPELINE_RUNS, "run_ds", "run_ds"), D2).collect()
    assert sorted(r.stage for r in rows) == ["ingest", "scores"]


def test_a_table_batch_is_read_as_of_the_version_its_results_record(spark, tmp_path):
    """GX reads a batch more than once and caches nothing: a write after planning changes
    neither what the suite validates nor the version quality_results records."""
    ctx = context(spark, tmp_path, D2)
    write_tables(spark, ctx.lakehouse, {D2: {"behavior_scores": good_day(D2, 10)["behavior_scores"]}})
    planned = ctx.lakehouse.version("behavior_scores")
    plan = plan_table(ctx, ctx.settings.quality, ctx.settings.quality.tables["behavior_scores"])
    out_of_range = [("s0", 101.0, *[50.0] * 4, D2)]
    write_tables(spark, ctx.lakehouse, {D2: {"behavior_scores": out_of_range}})  # replaces the day's rows

    assert plan.table_version == planned < ctx.lakehouse.version("behavior_scores")
    assert plan.batch.count() == 10
    assert plan.batch.agg(F.max("engagement")).first()[0] == 50.0
    latest = read_day(ctx, ctx.settings.quality.tables["behavior_scores"], D2).collect()
    assert [(r.subscriber_id, r.engagement) for r in latest] == [("s0", 101.0)]


def test_parent_keys_are_read_as_of_the_version_planned(spark, tmp_path):
    """A references check pins the parent table as it pins the batch: a parent written after
    planning does not change the orphans GX counts."""
    ctx = context(spark, tmp_path, D2)
    day = good_day(D2, 3)
    write_tables(spark, ctx.lakehouse, {D2: {t: day[t] for t in ("behavior_scores", "subscriber_state")}})
    planned = ctx.lakehouse.version("behavior_scores")
    plan = plan_table(ctx, ctx.settings.quality, ctx.settings.quality.tables["subscriber_state"])
    write_tables(spark, ctx.lakehouse, {D2: {"behavior_scores": [("s0", *[50.0] * 5, D2)]}})  # s1, s2 gone

    assert ctx.lakehouse.version("behavior_scores") > planned
    assert plan.batch.filter(F.col("_orphan_subscriber_id").isNotNull()).count() == 0
    replanned = plan_table(ctx, ctx.settings.quality, ctx.settings.quality.tables["subscriber_state"])
    orphans = replanned.batch.filter(F.col("_orphan_subscriber_id").isNotNull()).select("subscriber_id")
    assert sorted(r.subscriber_id for r in orphans.collect()) == ["s1", "s2"]


# -- small batches and suites validated after the gate ------------------------------------------


def test_a_ratio_check_below_its_floor_allows_what_it_would_on_the_floor():
    assert small_batch_allowance(0.95, 20) == 1  # conf/quality.yaml keys_not_null
    assert small_batch_allowance(0.98, 50) == 1
    assert small_batch_allowance(0.95, 50) == 2
    assert small_batch_allowance(None, 20) is None and small_batch_allowance(0.95, None) is None
    assert passes_below_floor({"element_count": 15, "unexpected_count": 1}, 0.95, 20) is True
    assert passes_below_floor({"element_count": 15, "unexpected_count": 2}, 0.95, 20) is False
    assert passes_below_floor({"element_count": 20, "unexpected_count": 1}, 0.95, 20) is False  # at the floor
    assert passes_below_floor({"element_count": 15, "unexpected_count": 1}, 0.95, None) is False


def test_one_null_key_in_a_small_extract_passes_two_fail(spark, tmp_path):
    one = ["0611111111"] * 14 + [None]
    write_cdr(tmp_path, D2, one)
    write_cdr(tmp_path, D3, [*one[:-2], None, None])
    ctx = context(spark, tmp_path, D2)
    summary = run_quality(ctx, ["raw.cdr"])
    assert summary["failed_critical"] == 0
    key = [r for r in results_of(ctx, D2) if r.column == "msisdn" and "not_be_null" in r.expectation]
    assert [(r.status, r.severity, r.observed) for r in key] == [
        (
            "passed",
            "critical",
            "1 of 15 rows unexpected (6.67%); passes: below 20 rows up to 1 may be unexpected",
        )
    ]
    with pytest.raises(QualityError, match=r"raw\.cdr\.msisdn expect_column_values_to_not_be_null: 2 of 15 rows"):
        run_quality(context(spark, tmp_path, D3), ["raw.cdr"])


def test_export_runs_are_validated_by_the_exports_stage_not_the_gate(spark, good):
    spec = load_spec(DEFAULT_CONF_DIR / "quality.yaml")
    assert [n for n, t in spec.tables.items() if t.validated_by == "exports"] == ["export_runs"]
    root, _, _ = good
    ctx = context(spark, root, D3)
    summary = run_quality(ctx, ["export_runs"])
    assert (summary["suites"], summary["failed_critical"], summary["failed_warning"]) == (1, 0, 0)
    rows = [r for r in results_of(ctx, D3) if r.suite == "export_runs"]
    assert sorted((r.expectation, r.column) for r in rows) == sorted(
        [
            ("expect_compound_columns_to_be_unique", "consumer,dataset"),
            *[
                ("expect_column_values_to_not_be_null", c)
                for c in ("consumer", "kind", "dataset", "identifier", "rows", "location", "status")
            ],
            ("expect_column_values_to_be_in_set", "identifier"),
            ("expect_column_values_to_be_in_set", "status"),
            ("expect_column_values_to_be_between", "rows"),
        ]
    )
    assert {r.status for r in rows} == {"passed"}


def test_floor_and_stage_config_errors_name_the_key(tmp_path):
    path = tmp_path / "quality.yaml"
    suite_file(path, "{expect: not_null, column: c, min_rows: 9}")
    with pytest.raises(ConfigError, match=r"tables\.t\.checks\[0\]\.min_rows: applies to a ratio check"):
        load_spec(path)
    with pytest.raises(ConfigError, match=r"raw\.checks\.keys_not_null\.min_rows: must be a non-negative integer"):
        load_spec(
            path,
            {"tables": {"t": {"checks": []}}, "raw": {"checks": {"keys_not_null": {"mostly": 0.9, "min_rows": -1}}}},
        )
    with pytest.raises(ConfigError, match=r"tables\.t\.validated_by: must be one of quality, exports"):
        load_spec(path, {"tables": {"t": {"checks": [], "validated_by": "campaigns"}}})
    for wrong in (0, "2", True):
        with pytest.raises(ConfigError, match=rf"parallel_suites: must be a positive integer, got {wrong!r}"):
            load_spec(path, {"tables": {"t": {"checks": []}}, "parallel_suites": wrong})


@pytest.mark.parametrize(
    ("check", "overlay", "message"),
    [
        # a misspelt upper bound: every score above 100 would pass
        ("{expect: between, columns: [s], min: 0, maximum: 100}", None, r"checks\[0\]\.maximum: unknown key"),
        ("{expect: unique, column: id, mostly: 0.9}", None, r"checks\[0\]\.mostly: unknown key for a unique check"),
        ("{expect: not_null, column: a, columns: [b, c]}", None, r"checks\[0\]\.columns: give `column: name`"),
        # failed inside Great Expectations mid-run instead of here
        ("{expect: between, columns: [s], min: low}", None, r"checks\[0\]\.min: must be a number"),
        ("{expect: between, columns: [s], min: 100, max: 0}", None, r"checks\[0\]\.max: must not be below min"),
        ("{expect: reject_rate, max: 0.1, min_rows_read: fifty}", None, r"min_rows_read: must be a non-negative"),
        ("{expect: min_rows, value: 1}", {"raw": {"checks": {"min_rows": {"valu": 100}}}}, r"min_rows\.valu: unknown"),
        ("{expect: min_rows, value: 1}", {"raw": {"source": {"cdr": {}}}}, r"raw\.source: unknown setting"),
        (
            "{expect: min_rows, value: 1}",
            {"raw": {"sources": {"cdr": {"types_parse": {"mostly": 0.5, "min_row": 9}}}}},
            r"raw\.sources\.cdr\.types_parse\.min_row: unknown key",
        ),
        ("{expect: min_rows, value: 1}", {"sample_sise": 0}, r"sample_sise: unknown setting"),
    ],
)
def test_a_misspelt_or_misplaced_check_setting_is_refused_on_load(tmp_path, check, overlay, message):
    path = tmp_path / "quality.yaml"
    suite_file(path, check)
    with pytest.raises(ConfigError, match=message):
        load_spec(path, overlay)
