"""Scores and segments on the generated operator: valid, meaningful, reproducible."""

from __future__ import annotations

import shutil
import statistics

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from jobs.tables import BEHAVIOR_FEATURES, BEHAVIOR_SCORES, DAILY_ACTIVITY, SUBSCRIBER_PROFILE, SUBSCRIBER_SEGMENTS
from tests.integration.helpers import table_content

pytestmark = pytest.mark.integration

SCORES = ("engagement", "revenue", "loyalty", "risk", "digital")


def scores_on(pipeline, ds):
    return pipeline.lakehouse.read(BEHAVIOR_SCORES, partitions=[("score_date", "=", ds)])


def persona_medians(pipeline, ds) -> dict[str, dict[str, float]]:
    truth = dict(
        line.split(",")[1:3] for line in (pipeline.raw / "_truth" / "personas.csv").read_text().splitlines()[1:]
    )
    values: dict[str, dict[str, list[float]]] = {}
    for row in scores_on(pipeline, ds).select("subscriber_id", *SCORES).collect():
        per_persona = values.setdefault(truth[row.subscriber_id], {s: [] for s in SCORES})
        for score in SCORES:
            per_persona[score].append(row[score])
    return {p: {s: statistics.median(v) for s, v in scores.items()} for p, scores in values.items()}


def test_every_known_subscriber_has_five_scores_in_range(pipeline):
    for ds in pipeline.days:
        scored = scores_on(pipeline, ds)
        profile = pipeline.lakehouse.read(SUBSCRIBER_PROFILE, partitions=[("snapshot_date", "=", ds)])
        assert scored.count() == profile.count() == scored.select("subscriber_id").distinct().count()
        bad = scored.filter(" or ".join(f"{s} is null or {s} < 0 or {s} > 100" for s in SCORES))
        assert bad.count() == 0


def test_breakdowns_add_up_to_the_scores(pipeline):
    scored = scores_on(pipeline, pipeline.last_day)
    for score in SCORES:
        total = F.aggregate(F.map_values(F.col(f"{score}_breakdown")), F.lit(0.0), lambda acc, c: acc + c.contribution)
        worst = scored.select(F.max(F.abs(total - F.col(score)))).first()[0]
        assert worst <= 0.01, score


def test_scores_mean_what_they_say_on_the_personas(pipeline):
    medians = persona_medians(pipeline, pipeline.last_day)

    def top(score: str) -> str:
        return max(medians, key=lambda p: medians[p][score])

    assert top("risk") == "churn_risk"
    assert top("digital") == "digital_native"
    assert top("revenue") == "high_value_postpaid"
    assert top("loyalty") == "steady_loyal"
    assert min(medians, key=lambda p: medians[p]["engagement"]) == "dormant"


def test_every_subscriber_gets_exactly_one_segment(pipeline):
    segments = pipeline.lakehouse.read(SUBSCRIBER_SEGMENTS, partitions=[("segment_date", "=", pipeline.last_day)])
    scored = scores_on(pipeline, pipeline.last_day)
    assert segments.count() == segments.select("subscriber_id").distinct().count() == scored.count()
    used = {r.segment for r in segments.select("segment").distinct().collect()}
    assert {"new_joiners", "at_risk", "high_value_postpaid", "young_digital", "mass_prepaid"} <= used


def test_daily_activity_is_one_row_per_subscriber_and_day(pipeline):
    activity = pipeline.lakehouse.read(DAILY_ACTIVITY)
    assert activity.count() == activity.select("subscriber_id", "activity_date").distinct().count()
    assert {str(r[0]) for r in activity.select("activity_date").distinct().collect()} == {
        d.isoformat() for d in pipeline.days
    }


def test_outputs_are_readable_by_the_deltalake_package(pipeline):
    for table in (DAILY_ACTIVITY, BEHAVIOR_FEATURES, BEHAVIOR_SCORES, SUBSCRIBER_SEGMENTS):
        arrow = pa.table(DeltaTable(pipeline.lakehouse.uri(table)).to_pyarrow_table())
        assert arrow.num_rows == pipeline.lakehouse.read(table).count() > 0


def test_rerunning_a_day_recomputes_it_identically(pipeline, tmp_path):
    pipeline = pipeline.copy(tmp_path)  # the shared lakehouse stays as the nightly runs left it
    ds = pipeline.days[3]
    tables = {
        DAILY_ACTIVITY: [("activity_date", "=", ds)],
        BEHAVIOR_FEATURES: [("score_date", "=", ds)],
        BEHAVIOR_SCORES: [("score_date", "=", ds)],
        SUBSCRIBER_SEGMENTS: [("segment_date", "=", ds)],
    }
    before = {t: table_content(pipeline.lakehouse, t, partitions=p) for t, p in tables.items()}
    pipeline.run(ds, stages=["activity", "scores", "segments"])
    assert {t: table_content(pipeline.lakehouse, t, partitions=p) for t, p in tables.items()} == before


def test_a_missing_optional_source_degrades_its_components_without_failing(pipeline, tmp_path):
    assert scores_on(pipeline, pipeline.last_day).first().degraded_sources == []
    night = pipeline.copy(tmp_path, with_raw=True)  # the extract is held back from a copy only
    ds = night.last_day
    extract = night.raw / "network" / ds.isoformat()
    shutil.move(extract, extract.with_name("held-back"))
    night.run(ds, stages=["ingest", "activity", "scores", "segments"], sources=["network"])
    row = scores_on(night, ds).first()
    assert row.degraded_sources == ["network"]
    assert row.risk_breakdown["dropped_calls"].degraded is True
    assert row.engagement_breakdown["active_days"].degraded is False
