"""Mission catalog and assignments on the generated operator."""

from __future__ import annotations

import json
import shutil
import textwrap
from datetime import date, timedelta

import pytest
import yaml
from pyspark.sql import functions as F

from jobs.config import DEFAULT_CONF_DIR, load_config
from jobs.missions import MissionSettings
from jobs.pipeline import RunContext, run_stages
from jobs.tables import BEHAVIOR_SCORES, MISSION_ASSIGNMENTS, MISSION_CATALOG, MISSION_PROGRESS, PIPELINE_RUNS
from tests.integration.helpers import table_content

pytestmark = pytest.mark.integration

SETTINGS = MissionSettings.load(DEFAULT_CONF_DIR / "missions.yaml")


def assignments(pipeline):
    return pipeline.lakehouse.read(MISSION_ASSIGNMENTS)


def _expansion_from_yaml(ds: date) -> list[tuple[str, str, str, str]]:
    """(template, segment, level, period) of every template active on `ds`, read from the YAML
    files with plain Python: `segments: all` is every segment of segments.yaml (the default included);
    thresholds are either per period or shared by every period."""
    segments_yaml = yaml.safe_load((DEFAULT_CONF_DIR / "segments.yaml").read_text())
    every_segment = [s["id"] for s in segments_yaml["segments"]]
    rows = []
    for path in sorted((DEFAULT_CONF_DIR.parent / "templates" / "missions").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        t = {**doc["spec"], "id": doc["id"]}
        if t["active_from"] > ds or (t["active_to"] is not None and t["active_to"] < ds):
            continue
        periods = t["periods"] if isinstance(t["periods"], list) else [t["periods"]]
        segments = every_segment if t["segments"] == "all" else t["segments"]
        for period in periods:
            levels = t["thresholds"].get(period, t["thresholds"])
            rows += [(t["id"], segment, level, period) for segment in segments for level in levels]
    return sorted(rows)


def test_catalog_is_the_expansion_of_the_templates(pipeline):
    expected = _expansion_from_yaml(pipeline.last_day)
    assert len(expected) == len(set(expected))
    catalog = pipeline.lakehouse.read(MISSION_CATALOG, partitions=[("catalog_date", "=", pipeline.last_day)])
    rows = catalog.select("template_id", "segment", "level", "period").collect()
    assert sorted(tuple(r) for r in rows) == expected
    assert catalog.select("mission_id").distinct().count() == len(expected)


def test_assignments_cover_every_category_and_point_to_the_catalog(pipeline):
    rows = assignments(pipeline)
    assert {r.category for r in rows.select("category").distinct().collect()} >= {
        "onboarding",
        "engagement",
        "loyalty",
        "correction",
    }
    catalog = pipeline.lakehouse.read(MISSION_CATALOG).select("mission_id", F.col("catalog_date").alias("assigned_ds"))
    static = rows.filter(~F.col("is_dynamic"))
    assert static.join(catalog, ["mission_id", "assigned_ds"], "left_anti").count() == 0
    dynamic = rows.filter(F.col("is_dynamic"))
    assert dynamic.count() > 0 and dynamic.filter(F.col("generated_for") != F.col("subscriber_id")).count() == 0
    assert rows.count() == rows.select("assignment_id").distinct().count()


def test_caps_and_active_duplicates_hold_every_day(pipeline):
    """A mission holds a slot until its period ends or, once completed, until the next run."""
    rows = assignments(pipeline)
    progress = pipeline.lakehouse.read(MISSION_PROGRESS).filter(F.col("status") == "completed")
    for ds in pipeline.mission_days:
        done = progress.filter(F.col("progress_ds") == F.lit(ds - timedelta(days=1))).select("assignment_id")
        active = rows.filter((F.col("assigned_ds") <= F.lit(ds)) & (F.col("period_end") > F.lit(ds))).join(
            done, "assignment_id", "left_anti"
        )
        per_subscriber = active.groupBy("subscriber_id").count().agg(F.max("count")).first()[0]
        assert per_subscriber <= SETTINGS.max_active
        duplicates = active.groupBy("subscriber_id", "template_id").count().filter("count > 1").count()
        assert duplicates == 0


def test_the_progress_summary_counts_the_rows_written_per_status(pipeline):
    """pipeline_runs reports each night's progress rows per status as mission_progress holds them."""
    lakehouse, statuses = pipeline.lakehouse, set()
    for ds in pipeline.mission_days:
        runs = lakehouse.read(PIPELINE_RUNS, partitions=[("run_ds", "=", ds)])
        summary = json.loads(runs.filter(F.col("stage") == "progress").first().message)
        day = lakehouse.read(MISSION_PROGRESS, partitions=[("progress_ds", "=", ds)])
        counts = {r.status: r["count"] for r in day.groupBy("status").count().collect()}
        assert summary == {"rows": sum(counts.values()), **counts}
        statuses |= set(counts)
    assert {"assigned", "active", "completed"} <= statuses


def test_cooldowns_hold(pipeline):
    rows = assignments(pipeline).select("subscriber_id", "template_id", "assigned_ds", "period_end", "cooldown_days")
    later = rows.alias("b")
    pairs = (
        rows.alias("a")
        .join(later, ["subscriber_id", "template_id"])
        .filter(F.col("a.assigned_ds") < F.col("b.assigned_ds"))
    )
    violations = pairs.filter(F.col("b.assigned_ds") < F.date_add(F.col("a.period_end"), F.col("a.cooldown_days")))
    assert violations.count() == 0


def test_holdout_is_recorded_and_close_to_the_configured_share(pipeline):
    rows = assignments(pipeline)
    subscribers = rows.select("subscriber_id", "holdout").distinct()
    share = subscribers.agg(F.avg(F.col("holdout").cast("double"))).first()[0]
    assert share == pytest.approx(SETTINGS.holdout_share, abs=0.01)
    assert rows.filter("holdout").count() > 0


def test_reasons_name_the_rule_and_the_values(pipeline):
    row = assignments(pipeline).filter(F.col("category") == "correction").orderBy("assignment_id").first()
    assert row.reason.startswith("eligibility: ") and "segment=" in row.reason and "=" in row.reason.split("[")[1]
    assert "{" not in row.description and row.target_value > 0


def test_rerunning_missions_for_a_day_is_identical(pipeline, tmp_path):
    night = pipeline.copy(tmp_path)  # the shared lakehouse stays as the nightly runs left it
    ds = night.last_day
    tables = {MISSION_CATALOG: "catalog_date", MISSION_ASSIGNMENTS: "assigned_ds"}
    before = {t: table_content(night.lakehouse, t, partitions=[(c, "=", ds)]) for t, c in tables.items()}
    night.run(ds, stages=["missions"])
    assert {t: table_content(night.lakehouse, t, partitions=[(c, "=", ds)]) for t, c in tables.items()} == before


def test_a_new_template_file_is_assigned_without_code_changes(pipeline, tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    templates = tmp_path / "missions"
    shutil.copytree(DEFAULT_CONF_DIR.parent / "templates" / "missions", templates)
    (templates / "weekend_explorer.yaml").write_text(
        textwrap.dedent(
            """\
            id: weekend_explorer
            name: Weekend explorer
            version: 1
            kind: mission_template
            spec:
              category: engagement
              description: "Be active {target} days this {period}."
              metric: active_days
              aggregation: days
              thresholds: {easy: 2, medium: 4, hard: 6}
              periods: [weekly]
              segments: all
              eligibility: "engagement >= 0"
              reward: {points: 10, offer_id: null}
              badge: streak_keeper
              priority: 100
              cooldown_days: 1
              active_from: 2025-01-01
              active_to: null
            """
        )
    )
    missions_yaml = conf / "missions.yaml"
    missions_yaml.write_text(
        missions_yaml.read_text()
        .replace("templates_dir: templates/missions", f"templates_dir: {templates}")
        .replace("badges_dir: templates/badges", f"badges_dir: {DEFAULT_CONF_DIR.parent / 'templates' / 'badges'}")
    )
    night = pipeline.copy(tmp_path)  # the shared lakehouse keeps the configured templates' missions
    config = load_config(
        conf,
        env="test",
        overrides={"raw.root": str(night.raw), "lakehouse.root": night.lakehouse.root},
        environ={},
    )
    ds = night.last_day
    run_stages(RunContext(night.spark, config, night.lakehouse, ds), ["missions"])
    catalog = night.lakehouse.read(MISSION_CATALOG, partitions=[("catalog_date", "=", ds)]).filter(
        F.col("template_id") == "weekend_explorer"
    )
    segments = yaml.safe_load((DEFAULT_CONF_DIR / "segments.yaml").read_text())
    every_segment = [s["id"] for s in segments["segments"]]
    assert sorted((r.segment, r.level, r.target_value) for r in catalog.collect()) == sorted(
        (segment, level, target)
        for segment in every_segment
        for level, target in (("easy", 2), ("medium", 4), ("hard", 6))
    )
    new = assignments(night).filter((F.col("assigned_ds") == F.lit(ds)) & (F.col("template_id") == "weekend_explorer"))
    scored = night.lakehouse.read(BEHAVIOR_SCORES, partitions=[("score_date", "=", ds)]).count()
    assert 0 < new.count() <= scored
    assert {r.mission_id.rsplit(".", 3)[0] for r in new.select("mission_id").collect()} == {"weekend_explorer.v1"}
