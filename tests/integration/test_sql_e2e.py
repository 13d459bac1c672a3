"""Every analyst view of sql/ against the lakehouse the pipeline wrote: run in Spark and in DuckDB
with the same results, and checked against values computed independently with DataFrame code."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.analytics.views import register_tables, register_views, run_view, views
from jobs.metrics import MetricRegistry, activity_spec
from jobs.pipeline import STAGES
from jobs.tables import DAILY_ACTIVITY, TABLES
from tests.integration import duck

pytestmark = pytest.mark.integration

VIEWS = views()
SPARK_ONLY = {"score_explanation"}  # explodes a map: Spark syntax
Z95 = 1.959964


@pytest.fixture(scope="module")
def lake(pipeline):
    """The pipeline's lakehouse with every table and view registered, views bound to the last day."""
    register_tables(pipeline.lakehouse)
    assert register_views(pipeline.spark, pipeline.last_day) == {}
    return pipeline


def _read(lake, table: str) -> DataFrame:
    return lake.lakehouse.read(table)


def _view(lake, name: str) -> list[dict[str, Any]]:
    return [r.asDict() for r in lake.spark.table(name).collect()]  # aggregated results


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def test_every_table_has_the_layout_of_its_spec(lake):
    registry = MetricRegistry.load(lake.config.conf_dir / "metrics.yaml")
    written = lake.lakehouse.tables()
    assert set(TABLES) == set(written)  # the nightly run writes every table of the data dictionary
    for table in written:
        spec = activity_spec(registry) if table == DAILY_ACTIVITY else TABLES[table]
        actual = [(f.name, f.dataType.simpleString()) for f in _read(lake, table).schema.fields]
        assert actual == [(f.name, f.dataType.simpleString()) for f in spec.schema.fields], table


def _distinct(df: DataFrame, *columns: str) -> int:
    return df.select(*columns).distinct().count()


def _expected_rows(lake, name: str) -> int:
    """A view's row count from its grain, counted with DataFrame code over the tables it reads."""
    ds = lake.last_day

    def upto(table: str, column: str) -> DataFrame:
        return _read(lake, table).filter(F.col(column) <= ds)

    def on(table: str, column: str) -> DataFrame:
        return _read(lake, table).filter(F.col(column) == ds)

    scored = upto("behavior_scores", "score_date")
    segments = _read(lake, "subscriber_segments").withColumnRenamed("segment_date", "score_date")
    treated = upto("mission_assignments", "assigned_ds").filter(~F.col("holdout"))
    started = upto("mission_assignments", "assigned_ds").filter(F.col("period_start") <= ds)
    ingest_runs = on("pipeline_runs", "run_ds").filter(F.col("stage") == "ingest")
    rejects_today = on("events_rejected", "ingest_date")
    sources_with_rejects = rejects_today.select("source").distinct()
    riskiest = on("behavior_scores", "score_date").orderBy(F.desc("risk"), "subscriber_id").limit(20)
    counts = {
        "latest_scores": lambda: _distinct(scored, "subscriber_id"),
        "score_drift": lambda: (
            5 * _distinct(scored.join(segments, ["subscriber_id", "score_date"]), "score_date", "segment")
        ),
        "scores_by_segment": lambda: _distinct(on("subscriber_segments", "segment_date"), "segment"),
        "score_explanation": lambda: riskiest.agg(F.sum(F.size("risk_breakdown"))).first()[0],
        "mission_funnel": lambda: _distinct(treated, "template_id", "category", "segment", "level"),
        "mission_difficulty": lambda: _distinct(treated, "category", "level"),
        "missions_by_template": lambda: _distinct(
            on("mission_assignments", "assigned_ds"), "template_id", "level", "holdout"
        ),
        "mission_uplift": lambda: 5 * (_distinct(started, "category", "segment") + _distinct(started, "category")),
        "badge_leaderboard": lambda: on("badge_catalog", "catalog_date").count(),
        "badge_awards_by_day": lambda: _distinct(
            upto("badge_awards", "awarded_ds").filter(~F.col("holdout")), "awarded_ds", "level"
        ),
        "points_liability": lambda: _distinct(upto("loyalty_ledger", "entry_ds"), "entry_ds"),
        "rewards_by_day": lambda: (
            1
            + _distinct(on("badge_awards", "awarded_ds").filter(~F.col("holdout")), "level")
            + _distinct(on("loyalty_ledger", "entry_ds"), "entry_type")
            + _distinct(on("loyalty_tiers", "tier_ds").filter(F.col("tier_change").isNotNull()), "tier_change", "tier")
            + _distinct(on("campaign_triggers", "trigger_ds"), "trigger_type")
        ),
        "rejects_by_reason": lambda: _distinct(
            upto("events_rejected", "ingest_date"), "ingest_date", "source", "reject_reason"
        ),
        "ingest_quality": lambda: (
            ingest_runs.join(sources_with_rejects, "source", "left_anti").count()
            + _distinct(rejects_today, "source", "reject_reason")
            + ingest_runs.filter(F.col("rows_rejected") + F.col("rows_duplicate") > 0).count()
        ),
        "stage_durations": lambda: _distinct(upto("pipeline_runs", "run_ds"), "run_ds", "stage"),
        "quality_summary": lambda: _distinct(on("quality_results", "run_ds"), "suite", "table_name"),
    }
    return counts[name]()


def test_every_view_has_an_expected_row_count():
    assert sorted(VIEWS) == sorted(
        [
            "badge_awards_by_day",
            "badge_leaderboard",
            "ingest_quality",
            "latest_scores",
            "mission_difficulty",
            "mission_funnel",
            "mission_uplift",
            "missions_by_template",
            "points_liability",
            "quality_summary",
            "rejects_by_reason",
            "rewards_by_day",
            "score_drift",
            "score_explanation",
            "scores_by_segment",
            "stage_durations",
        ]
    )


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_view_runs_in_spark_and_duckdb_alike(lake, name):
    spark_df = run_view(lake.spark, VIEWS[name], lake.last_day)
    spark_rows = [tuple(_plain(v) for v in r) for r in spark_df.collect()]
    assert len(spark_rows) == _expected_rows(lake, name) > 0, name
    if name in SPARK_ONLY:
        return
    con = duck.connect(lake.lakehouse.root)
    columns, duck_rows = duck.query(con, VIEWS[name].text, lake.last_day)
    assert columns == spark_df.columns
    assert len(duck_rows) == len(spark_rows)

    def key(row: tuple) -> tuple:  # the view's dimensions: every value but the measured floats
        return tuple(str(v) for v in row if not isinstance(v, float))

    spark_sorted = sorted(spark_rows, key=key)
    duck_sorted = sorted(([_plain(v) for v in r] for r in duck_rows), key=key)
    for s_row, d_row in zip(spark_sorted, duck_sorted, strict=True):
        for column, s, d in zip(columns, s_row, d_row, strict=True):
            if column == "failures" and s is not None:  # string_agg order is unspecified
                assert sorted(s.split("; ")) == sorted(d.split("; ")), name
            elif isinstance(s, float) or isinstance(d, float):  # views round: halves may round apart
                assert d == pytest.approx(s, rel=1e-6, abs=0.011), f"{name}.{column}"
            else:
                assert d == s, f"{name}.{column}"


def _latest_status(lake) -> DataFrame:
    ds = lake.last_day
    assignments = _read(lake, "mission_assignments").filter((F.col("assigned_ds") <= ds) & ~F.col("holdout"))
    latest = (
        _read(lake, "mission_progress")
        .filter(F.col("progress_ds") <= ds)
        .groupBy("assignment_id")
        .agg(F.max_by("status", "progress_ds").alias("status"), F.max_by("progress_pct", "progress_ds").alias("pct"))
    )
    return assignments.join(latest, "assignment_id", "left").fillna("assigned", subset=["status"])


def test_mission_funnel_counts_equal_the_latest_progress_of_each_assignment(lake):
    status = F.col("status")
    expected = {
        (r.template_id, r.category, r.segment, r.level): (r.assigned, r.started, r.active, r.completed, r.expired)
        for r in _latest_status(lake)
        .groupBy("template_id", "category", "segment", "level")
        .agg(
            F.count(F.lit(1)).alias("assigned"),
            F.count(F.when(status != "assigned", 1)).alias("started"),
            F.count(F.when(status == "active", 1)).alias("active"),
            F.count(F.when(status == "completed", 1)).alias("completed"),
            F.count(F.when(status == "expired", 1)).alias("expired"),
        )
        .collect()
    }
    rows = _view(lake, "mission_funnel")
    actual = {
        (r["template_id"], r["category"], r["segment"], r["level"]): (
            r["assigned"], r["started"], r["active"], r["completed"], r["expired"]
        )
        for r in rows
    }  # fmt: skip
    assert actual == expected
    assert sum(v[3] for v in actual.values()) > 0, "no completed mission in the sample"
    for r in rows:
        assert float(r["completion_rate_pct"]) == pytest.approx(100 * r["completed"] / r["assigned"], abs=0.006)


def test_completion_rate_against_difficulty(lake):
    status = F.col("status")
    expected = {
        (r.category, r.level): (r.assigned, r.completed, r.ended)
        for r in _latest_status(lake)
        .groupBy("category", "level")
        .agg(
            F.count(F.lit(1)).alias("assigned"),
            F.count(F.when(status == "completed", 1)).alias("completed"),
            F.count(F.when(status.isin("completed", "expired"), 1)).alias("ended"),
        )
        .collect()
    }
    rows = _view(lake, "mission_difficulty")
    assert {(r["category"], r["level"]): (r["assigned"], r["completed"], r["ended"]) for r in rows} == expected
    for r in rows:
        rate = None if r["ended"] == 0 else 100 * r["completed"] / r["ended"]
        assert (r["completion_rate_pct"] is None) == (rate is None)
        if rate is not None:
            assert float(r["completion_rate_pct"]) == pytest.approx(rate, abs=0.006)


def _uplift_observations(lake) -> list[dict[str, Any]]:
    """Per started assignment: category, segment, holdout and the five outcomes, with DataFrame code."""
    ds = lake.last_day
    a = (
        _read(lake, "mission_assignments")
        .filter((F.col("assigned_ds") <= ds) & (F.col("period_start") <= ds))
        .withColumn("observed_to", F.least("period_end", F.lit(ds)))
    )
    scores = _read(lake, "behavior_scores").select("subscriber_id", "score_date", "engagement", "revenue", "risk")
    before = scores.select(
        "subscriber_id",
        F.col("score_date").alias("assigned_ds"),
        *[F.col(s).alias(f"b_{s}") for s in scores.columns[2:]],
    )
    after = scores.select(
        "subscriber_id",
        F.col("score_date").alias("observed_to"),
        *[F.col(s).alias(f"e_{s}") for s in scores.columns[2:]],
    )
    activity = _read(lake, "daily_activity").select("subscriber_id", "activity_date", "recharge_amount")
    in_period = F.col("activity_date").between(F.col("period_start"), F.col("observed_to"))
    recharge = (
        a.join(activity, "subscriber_id")
        .filter(in_period)
        .groupBy("assignment_id")
        .agg(F.sum("recharge_amount").alias("recharge"))
    )
    churn_days = (
        _read(lake, "events")
        .filter((F.col("event_type") == "crm") & F.col("event_subtype").isin("churned", "suspended"))
        .select("subscriber_id", F.col("event_date").alias("activity_date"))
    )
    churned = a.join(churn_days, "subscriber_id").filter(in_period).select("assignment_id").distinct()
    rows = (
        a.join(before, ["subscriber_id", "assigned_ds"], "left")
        .join(after, ["subscriber_id", "observed_to"], "left")
        .join(recharge, "assignment_id", "left")
        .join(churned.withColumn("churned", F.lit(1.0)), "assignment_id", "left")
        .select(
            "category",
            "segment",
            "holdout",
            (F.col("e_engagement") - F.col("b_engagement")).alias("engagement_change"),
            (F.col("e_revenue") - F.col("b_revenue")).alias("revenue_change"),
            (F.col("e_risk") - F.col("b_risk")).alias("risk_change"),
            F.coalesce("recharge", F.lit(0.0)).alias("recharge_amount"),
            F.coalesce("churned", F.lit(0.0)).alias("churn_signal"),
        )
        .collect()  # one row per assignment of a small operator
    )
    return [r.asDict() for r in rows]


def test_uplift_against_the_holdout_with_a_normal_confidence_interval(lake):
    groups: dict[tuple[str, str, str], dict[bool, list[float]]] = defaultdict(lambda: {True: [], False: []})
    outcomes = ("engagement_change", "revenue_change", "risk_change", "recharge_amount", "churn_signal")
    for obs in _uplift_observations(lake):
        for outcome in outcomes:
            for segment in (obs["segment"], "all"):
                group = groups[(obs["category"], segment, outcome)]
                if obs[outcome] is not None:
                    group[obs["holdout"]].append(obs[outcome])
    rows = {(r["category"], r["segment"], r["outcome"]): r for r in _view(lake, "mission_uplift")}
    assert set(rows) == set(groups)
    with_ci = 0
    for key, values in groups.items():
        treated, holdout = values[False], values[True]
        row = rows[key]
        assert (row["n_treated"], row["n_holdout"]) == (len(treated), len(holdout)), key
        if not treated or not holdout:
            assert row["uplift"] is None, key
            continue
        uplift = statistics.fmean(treated) - statistics.fmean(holdout)
        assert row["uplift"] == pytest.approx(uplift, abs=1e-4), key
        if len(treated) < 2 or len(holdout) < 2:
            assert row["ci95_low"] is None, key
            continue
        se = math.sqrt(statistics.variance(treated) / len(treated) + statistics.variance(holdout) / len(holdout))
        assert row["ci95_low"] == pytest.approx(uplift - Z95 * se, abs=2e-4), key
        assert row["ci95_high"] == pytest.approx(uplift + Z95 * se, abs=2e-4), key
        assert row["significant"] == (uplift - Z95 * se > 0 or uplift + Z95 * se < 0), key
        with_ci += 1
    assert with_ci > 0, "no group with a confidence interval: the sample has too small a holdout"


def test_latest_scores_per_subscriber(lake):
    ds = lake.last_day
    scores = _read(lake, "behavior_scores").filter(F.col("score_date") <= ds)
    latest = scores.groupBy("subscriber_id").agg(
        F.max("score_date").alias("score_date"), F.max_by("risk", "score_date").alias("risk")
    )
    segments = _read(lake, "subscriber_segments").select(
        "subscriber_id", F.col("segment_date").alias("score_date"), "segment"
    )
    expected = {
        (r.subscriber_id, r.score_date, r.segment, r.risk)
        for r in latest.join(segments, ["subscriber_id", "score_date"], "left").collect()
    }
    actual = {(r["subscriber_id"], r["score_date"], r["segment"], r["risk"]) for r in _view(lake, "latest_scores")}
    assert actual == expected


def test_score_distribution_and_week_over_week_drift(lake):
    ds, week_before = lake.last_day, lake.last_day - timedelta(days=7)
    joined = (
        _read(lake, "behavior_scores")
        .join(
            _read(lake, "subscriber_segments").withColumnRenamed("segment_date", "score_date"),
            ["subscriber_id", "score_date"],
        )
        .filter(F.col("score_date").isin(ds, week_before))
        .select("score_date", "segment", "engagement", "risk")
        .collect()  # two days of a small operator
    )
    values: dict[tuple[date, str, str], list[float]] = defaultdict(list)
    for r in joined:
        for score in ("engagement", "risk"):
            values[(r.score_date, r.segment, score)].append(r[score])
    rows = {(r["score_date"], r["segment"], r["score"]): r for r in _view(lake, "score_drift")}
    checked = 0
    for (day, segment, score), vs in values.items():
        if day != ds:
            continue
        row = rows[(day, segment, score)]
        assert row["subscribers"] == len(vs)
        assert float(row["mean"]) == pytest.approx(statistics.fmean(vs), abs=0.006)
        assert row["median"] == pytest.approx(statistics.median(vs), abs=0.006)
        assert (row["min_value"], row["max_value"]) == (min(vs), max(vs))
        before = values.get((week_before, segment, score))
        if before:
            drift = round(statistics.fmean(vs), 2) - round(statistics.fmean(before), 2)
            assert float(row["drift_vs_week_before"]) == pytest.approx(drift, abs=0.011)
            checked += 1
    assert checked > 0, "no drift against the week before computed"


def test_points_issued_expired_and_outstanding(lake):
    ds = lake.last_day
    ledger = _read(lake, "loyalty_ledger").filter(F.col("entry_ds") <= ds)
    daily = {
        r.entry_ds: (r.issued, r.expired, r.net)
        for r in ledger.groupBy("entry_ds")
        .agg(
            F.sum(F.when(F.col("points") > 0, F.col("points")).otherwise(0)).alias("issued"),
            F.sum(F.when(F.col("points") < 0, -F.col("points")).otherwise(0)).alias("expired"),
            F.sum("points").alias("net"),
        )
        .collect()
    }
    rows = _view(lake, "points_liability")
    assert {r["entry_ds"]: (r["points_issued"], r["points_expired"], r["points_net"]) for r in rows} == daily
    running = 0
    for r in sorted(rows, key=lambda r: r["entry_ds"]):
        running += daily[r["entry_ds"]][2]
        assert r["points_outstanding"] == running
    balances = _read(lake, "loyalty_tiers").filter(F.col("tier_ds") == ds).agg(F.sum("points_balance")).first()[0]
    assert max(rows, key=lambda r: r["entry_ds"])["points_outstanding"] == balances > 0


def test_badge_views(lake):
    ds = lake.last_day
    awards = _read(lake, "badge_awards").filter((F.col("awarded_ds") <= ds) & ~F.col("holdout"))
    by_day = {
        (r.awarded_ds, r.level): (r.n, r.points)
        for r in awards.groupBy("awarded_ds", "level")
        .agg(F.count(F.lit(1)).alias("n"), F.sum("points").alias("points"))
        .collect()
    }
    assert {
        (r["awarded_ds"], r["level"]): (r["awards"], r["points"]) for r in _view(lake, "badge_awards_by_day")
    } == by_day
    holders = {r.badge_id: r.n for r in awards.groupBy("badge_id").agg(F.count(F.lit(1)).alias("n")).collect()}
    board = _view(lake, "badge_leaderboard")
    assert len(board) == _read(lake, "badge_catalog").filter(F.col("catalog_date") == ds).count()
    assert {f"{r['badge_type']}.{r['level']}": r["holders"] for r in board if r["holders"]} == holders


def test_rejected_rows_add_up_to_what_ingest_recorded(lake):
    recorded = {
        (r.run_ds, r.source): r.rows_rejected + r.rows_duplicate
        for r in _read(lake, "pipeline_runs").filter((F.col("stage") == "ingest") & (F.col("rows_read") > 0)).collect()
    }
    totals: dict[tuple[date, str], int] = defaultdict(int)
    for r in _view(lake, "rejects_by_reason"):
        totals[(r["ingest_date"], r["source"])] += r["rejected_rows"]
        assert float(r["pct_of_read"]) == pytest.approx(100 * r["rejected_rows"] / r["rows_read"], abs=0.0006)
    assert dict(totals) == {k: v for k, v in recorded.items() if v}


def test_ingest_quality_accounts_for_every_row_read(lake):
    ds = lake.last_day
    runs = {
        r.source: r
        for r in _read(lake, "pipeline_runs").filter((F.col("run_ds") == ds) & (F.col("stage") == "ingest")).collect()
    }
    expected = {(source, "accepted"): r.rows_accepted for source, r in runs.items()}
    rejected = _read(lake, "events_rejected").filter(F.col("ingest_date") == ds)
    for r in rejected.groupBy("source", "reject_reason").count().collect():
        expected[(r.source, r.reject_reason)] = r["count"]
    rows = _view(lake, "ingest_quality")
    assert {(r["source"], r["reason"]): r["rows"] for r in rows} == expected
    per_source: dict[str, int] = defaultdict(int)
    for r in rows:
        per_source[r["source"]] += r["rows"]
        assert r["rows_read"] == runs[r["source"]].rows_read
    assert dict(per_source) == {source: r.rows_read for source, r in runs.items()}


def test_stage_durations_list_the_stages_each_day_ran(lake):
    names = list(STAGES)
    expected = {}
    for ds in lake.days:
        stages = names[: names.index("missions")] if ds not in lake.mission_days else names
        expected[ds] = {s for s in stages if s != "quality" or ds == lake.last_day}
    actual: dict[date, set[str]] = defaultdict(set)
    for r in _view(lake, "stage_durations"):
        actual[r["run_ds"]].add(r["stage"])
        assert r["failed"] == 0 and r["duration_s"] > 0
    assert dict(actual) == expected


def test_rewards_and_missions_of_the_day(lake):
    ds = lake.last_day
    completed = _read(lake, "mission_progress").filter(
        (F.col("progress_ds") == ds) & F.col("newly_completed") & ~F.col("holdout")
    )
    kinds = {r["kind"]: (r["n"], r["points"]) for r in _view(lake, "rewards_by_day")}
    n, points = completed.agg(F.count(F.lit(1)), F.sum("reward_points")).first()
    assert kinds["missions_completed"] == (n, points)
    credited = kinds.get("ledger_mission_completion", (0, None))
    assert credited == (n, points) if n else credited == (0, None)

    assigned = _read(lake, "mission_assignments").filter(F.col("assigned_ds") == ds)
    expected = {
        (r.template_id, r.level, r.holdout): r.n
        for r in assigned.groupBy("template_id", "level", "holdout").agg(F.count(F.lit(1)).alias("n")).collect()
    }
    by_template = _view(lake, "missions_by_template")
    assert {(r["template_id"], r["level"], r["holdout"]): r["assignments"] for r in by_template} == expected


def test_quality_summary_counts_the_expectations(lake):
    results = _read(lake, "quality_results").filter(F.col("run_ds") == lake.last_day)
    expected = {r.suite: r.n for r in results.groupBy("suite").agg(F.count(F.lit(1)).alias("n")).collect()}
    rows = _view(lake, "quality_summary")
    assert {r["suite"]: r["expectations"] for r in rows} == expected
    assert sum(r["failed_critical"] for r in rows) == 0
    versions = {r["suite"]: r["table_version"] for r in rows}
    assert all(versions[s] is None for s in expected if s.startswith("raw."))
    tables = [s for s in expected if not s.startswith("raw.")]
    assert tables and all(0 <= versions[s] <= lake.lakehouse.version(s) for s in tables)


def test_median_scores_and_risk_explanations(lake):
    ds = lake.last_day
    joined = (
        _read(lake, "behavior_scores")
        .filter(F.col("score_date") == ds)
        .join(_read(lake, "subscriber_segments").filter(F.col("segment_date") == ds), "subscriber_id")
        .select("segment", "engagement")
        .collect()
    )
    values: dict[str, list[float]] = defaultdict(list)
    for r in joined:
        values[r.segment].append(r.engagement)
    rows = {r["segment"]: r for r in _view(lake, "scores_by_segment")}
    assert {s: r["subscribers"] for s, r in rows.items()} == {s: len(v) for s, v in values.items()}
    for segment, vs in values.items():
        assert rows[segment]["median_engagement"] == pytest.approx(statistics.median(vs), abs=0.051)

    explained: dict[str, list[float]] = defaultdict(list)
    risk = {}
    for r in _view(lake, "score_explanation"):
        explained[r["subscriber_id"]].append(r["contribution"])
        risk[r["subscriber_id"]] = r["risk"]
    assert len(explained) == 20
    for subscriber, contributions in explained.items():
        assert min(max(sum(contributions), 0), 100) == pytest.approx(risk[subscriber], abs=0.01 * len(contributions))


def test_gamify_sql_prints_tables_and_writes_csv_json_parquet(lake, tmp_path, capsys):
    import csv
    import json

    import pyarrow.parquet as pq

    from jobs.cli import main

    root = str(lake.config.require("lakehouse.root"))
    base = ["--env", "test", "sql", "--lakehouse-root", root, "--ds", str(lake.last_day)]
    query = "select segment, count(*) as subscribers from latest_scores group by segment order by segment"
    assert main([*base, "-e", query]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["segment", "subscribers"] and set(lines[1]) == {"-", " "}
    printed = {line.split()[0]: int(line.split()[1]) for line in lines[2:]}
    expected = {r["segment"]: 0 for r in _view(lake, "latest_scores")}
    for r in _view(lake, "latest_scores"):
        expected[r["segment"]] += 1
    assert printed == expected
    widths = {len(line) for line in lines[2:]}
    assert len(widths) == 1, "rows are aligned to one width"

    funnel = _view(lake, "mission_funnel")
    assert main([*base, "-f", "mission_funnel", "--format", "csv", "--out", str(tmp_path / "f.csv")]) == 0
    with open(tmp_path / "f.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["assigned"]) for r in rows] == [r["assigned"] for r in funnel]

    assert main([*base, "-f", str(VIEWS["points_liability"].path), "--format", "json"]) == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    liability = _view(lake, "points_liability")
    assert [(e["entry_ds"], e["points_outstanding"]) for e in entries] == [
        (r["entry_ds"].isoformat(), r["points_outstanding"]) for r in liability
    ]

    assert main([*base, "-f", "mission_uplift", "--format", "parquet", "--out", str(tmp_path / "u.parquet")]) == 0
    uplift = pq.read_table(tmp_path / "u.parquet")
    assert uplift.num_rows == len(_view(lake, "mission_uplift"))
    assert uplift.column_names == lake.spark.table("mission_uplift").columns

    assert main([*base, "-e", "select * from no_such_table"]) == 1
