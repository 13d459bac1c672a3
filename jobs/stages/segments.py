"""The segments stage: the run date's behavior_scores, behavior_features and profile ->
subscriber_segments under the rules of conf/segments.yaml."""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import functions as F

from jobs.context import RunContext
from jobs.segments import assign_segments
from jobs.stages.readers import scoring_base
from jobs.tables import BEHAVIOR_FEATURES, BEHAVIOR_SCORES, PROFILE_NAMES, SUBSCRIBER_SEGMENTS

__all__ = ["run"]

log = logging.getLogger(__name__)


def run(ctx: RunContext) -> dict[str, Any]:
    """behavior_scores + behavior_features + profile -> subscriber_segments."""
    cfg = ctx.settings.scoring
    rules = ctx.settings.segments
    lakehouse, ds = ctx.lakehouse, ctx.ds
    day = [("score_date", "=", ds)]
    scored = lakehouse.read(BEHAVIOR_SCORES, partitions=day).select("subscriber_id", *cfg.scores)
    features = lakehouse.read(BEHAVIOR_FEATURES, partitions=day).select(
        "subscriber_id", *[F.col("features").getItem(n).alias(n) for n in cfg.feature_names]
    )
    profile = scoring_base(ctx).select("subscriber_id", *PROFILE_NAMES)
    joined = scored.join(features, "subscriber_id").join(profile, "subscriber_id", "left")
    result = lakehouse.write(
        assign_segments(joined, rules, ds),
        SUBSCRIBER_SEGMENTS,
        partition_by=["segment_date"],
        replace_where={"segment_date": ds},
    )
    if result.rows_added == 0:
        log.warning("no subscribers segmented for %s", ds)
    return {"subscribers": result.rows_added, "segments_version": rules.version}
