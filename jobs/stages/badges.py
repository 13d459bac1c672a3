"""The badges stage: daily_activity and mission completions folded into subscriber_lifetime
(jobs.lifetime); the badge rules -> badge_catalog; the scored subscribers with their lifetime
values -> badge_awards, never a level twice."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.badges import award, held_levels, not_awarded_later
from jobs.badges import catalog_rows as catalog_badges
from jobs.context import RunContext
from jobs.frames import local_frame, with_nullable_nesting
from jobs.lifetime import LifetimeMetric, advance, completed_missions, fold_spans, snapshot
from jobs.lifetime import metric_names as lifetime_names
from jobs.spark import JIT_SIZED_CODE, scoped_sql_conf
from jobs.stages.readers import latest_before, read_day, scored_subjects
from jobs.tables import (
    BADGE_AWARDS,
    BADGE_CATALOG,
    DAILY_ACTIVITY,
    MISSION_PROGRESS,
    SUBSCRIBER_LIFETIME,
    schema_of,
)
from jobs.templates import CATEGORIES

__all__ = ["lifetime_snapshot", "run"]


def run(ctx: RunContext) -> dict[str, Any]:
    """daily_activity + completions -> subscriber_lifetime; rules -> badge_catalog, badge_awards."""
    lakehouse, ds = ctx.lakehouse, ctx.ds
    types = ctx.settings.badges
    metrics = ctx.settings.lifetime_metrics
    levels = catalog_badges(types)
    catalog = local_frame(ctx.spark, [(*row.values(), ds) for row in levels], schema_of(BADGE_CATALOG)).coalesce(1)
    lakehouse.write(catalog, BADGE_CATALOG, partition_by=["catalog_date"], replace_where={"catalog_date": ds})
    badge_ids = [t.id for t in types]
    names = lifetime_names(metrics, CATEGORIES, badge_ids)
    lifetime = lifetime_snapshot(ctx, metrics, badge_ids).select(
        "subscriber_id", *[F.col("metrics").getItem(n).alias(n) for n in names]
    )
    subjects = scored_subjects(ctx).join(lifetime, "subscriber_id", "left").fillna(0.0, subset=names)
    earlier = lakehouse.read_or_empty(BADGE_AWARDS, schema_of(BADGE_AWARDS)).filter(F.col("awarded_ds") != F.lit(ds))
    earlier = earlier.select("subscriber_id", "badge_id", "badge_type", "level_rank", "awarded_ds").localCheckpoint()
    new = not_awarded_later(award(subjects, held_levels(earlier, ds), types, ds), earlier, ds)
    result = lakehouse.write(new, BADGE_AWARDS, partition_by=["awarded_ds"], replace_where={"awarded_ds": ds})
    return {"catalog_badges": len(levels), "awards": result.rows_added}


def lifetime_snapshot(ctx: RunContext, metrics: Mapping[str, LifetimeMetric], badge_ids: list[str]) -> DataFrame:
    """Fold the days since the previous snapshot into subscriber_lifetime for the run date
    (jobs.lifetime: the settled and recent layers) and return the rows written; completed
    missions count per category and toward the badge their template names."""
    lakehouse, ds = ctx.lakehouse, ctx.ds
    lateness = timedelta(days=ctx.settings.ingest.max_lateness_days)
    settled_through = ds - lateness
    previous = latest_before(ctx, SUBSCRIBER_LIFETIME, "stats_date")
    progress = lakehouse.read_or_empty(MISSION_PROGRESS, schema_of(MISSION_PROGRESS))
    if previous is None:
        state = None
        known = lakehouse.partition_values(DAILY_ACTIVITY, "activity_date")
        first = date.fromisoformat(known[0]) if known else settled_through + timedelta(days=1)
        progress = progress.filter(F.col("progress_ds") <= F.lit(ds))
    else:
        before = lakehouse.read(SUBSCRIBER_LIFETIME, partitions=[("stats_date", "=", previous)])
        state = before.select("subscriber_id", F.col("settled").alias("state"))
        # the days the previous snapshot settled, as it recorded them: max_lateness_days may have
        # changed since, and a day is folded once (a longer lateness cannot unsettle a day)
        recorded = before.select("settled_through").first()  # one value for the whole snapshot
        folded = recorded.settled_through if recorded else previous - lateness
        settled_through = max(settled_through, folded)
        first = folded + timedelta(days=1)
        progress = progress.filter((F.col("progress_ds") > F.lit(previous)) & (F.col("progress_ds") <= F.lit(ds)))
    completions = completed_missions(progress, {t.id: t.badge for t in ctx.settings.templates.templates})
    with scoped_sql_conf(ctx.spark, JIT_SIZED_CODE):  # a fold walks its days in wide projections
        for span in fold_spans(first, settled_through):  # one span, unless many days settle at once
            settling = lakehouse.read(
                DAILY_ACTIVITY, partitions=[("activity_date", ">=", span[0]), ("activity_date", "<=", span[1])]
            )
            state = advance(state, settling, completions, metrics, CATEGORIES, badge_ids, span=span).localCheckpoint()
            completions = None  # counted with the first span
        recent = lakehouse.read(
            DAILY_ACTIVITY, partitions=[("activity_date", ">", settled_through), ("activity_date", "<=", ds)]
        )
        rows = snapshot(state, recent, metrics, CATEGORIES, ds, settled_through, badge_ids)
        lakehouse.write(
            with_nullable_nesting(rows),
            SUBSCRIBER_LIFETIME,
            partition_by=["stats_date"],
            replace_where={"stats_date": ds},
        )
    return read_day(ctx, SUBSCRIBER_LIFETIME, "stats_date")
