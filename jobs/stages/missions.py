"""The missions stage: the templates active on the run date -> mission_catalog; the eligible
scored subscribers, their baselines and their earlier assignments -> mission_assignments."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.context import RunContext
from jobs.frames import local_frame
from jobs.missions import assign, baselines, catalog_frame
from jobs.stages.readers import completed_by, scored_subjects
from jobs.tables import DAILY_ACTIVITY, MISSION_ASSIGNMENTS, MISSION_CATALOG, schema_of
from jobs.templates import TemplateSet, catalog_rows

__all__ = ["mission_subjects", "run"]


def run(ctx: RunContext) -> dict[str, Any]:
    """Templates -> mission_catalog; eligible subscribers -> mission_assignments."""
    settings = ctx.settings.missions
    templates = ctx.settings.templates
    lakehouse, ds = ctx.lakehouse, ctx.ds
    active_templates = templates.active_on(ds)
    rows = catalog_rows(active_templates, templates.metrics)
    lakehouse.write(
        catalog_frame(ctx.spark, rows, ds).coalesce(1),
        MISSION_CATALOG,
        partition_by=["catalog_date"],
        replace_where={"catalog_date": ds},
    )
    subjects = mission_subjects(ctx, templates)
    window = [
        ("assigned_ds", ">=", ds - timedelta(days=settings.lookback_days(templates.templates))),
        ("assigned_ds", "<", ds),
    ]
    if lakehouse.exists(MISSION_ASSIGNMENTS):
        previous = lakehouse.read(MISSION_ASSIGNMENTS, partitions=window)
        previous = previous.join(completed_by(ctx, ds - timedelta(days=1)), "assignment_id", "left")
    else:
        previous = local_frame(
            ctx.spark, [], "subscriber_id string, template_id string, period_end date, cooldown_days int"
        )
    if active_templates:
        assigned = assign(subjects, previous, active_templates, templates.metrics, settings, ds)
    else:  # no template runs today: nothing to assign (and no empty array of candidates to expand)
        assigned = local_frame(ctx.spark, [], schema_of(MISSION_ASSIGNMENTS))
    result = lakehouse.write(
        assigned, MISSION_ASSIGNMENTS, partition_by=["assigned_ds"], replace_where={"assigned_ds": ds}
    )
    return {"catalog_missions": len(rows), "templates": len(active_templates), "assignments": result.rows_added}


def mission_subjects(ctx: RunContext, templates: TemplateSet) -> DataFrame:
    """Scored subjects with a segment, plus their baselines of every mission metric the
    templates use (the configured ones, or another folder's for a preview)."""
    lakehouse, ds, settings = ctx.lakehouse, ctx.ds, ctx.settings.missions
    start = ds - timedelta(days=settings.baseline_days - 1)
    activity_rows = lakehouse.read(
        DAILY_ACTIVITY, partitions=[("activity_date", ">=", start), ("activity_date", "<=", ds)]
    )
    used = sorted({t.metric for t in templates.templates})
    usual = baselines(activity_rows, [templates.metrics[m] for m in used], ds, settings.baseline_days)
    subjects = scored_subjects(ctx).filter(F.col("segment").isNotNull())
    return subjects.join(usual, "subscriber_id", "left")
