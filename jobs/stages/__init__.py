"""Pipeline stages: the thin runners around the pure transformations, one module per stage.

Each stage module has `run(ctx)`: it reads what earlier stages wrote for the run date, calls
the transformations of its jobs.<name> module, writes its own tables replacing exactly that
date's rows, and returns a small summary for the run log (jobs.pipeline.STAGES lists them in
pipeline order). The modules: ingest, predictions, activity, scores, segments, missions,
progress, badges (with the subscriber_lifetime fold), loyalty, campaigns, subscriber_state,
exports.

Every runner reads its settings from `ctx.settings` (jobs.settings: every configuration and
template file parsed and validated once per run) and never a YAML file. Shared by the runners:
`readers` (one day of a table, the newest earlier day, the scoring base, the scored subjects,
the missions completed by a day).
"""

from __future__ import annotations

from jobs.stages import (
    activity,
    badges,
    campaigns,
    exports,
    ingest,
    loyalty,
    missions,
    predictions,
    progress,
    scores,
    segments,
    subscriber_state,
)
from jobs.stages.missions import mission_subjects
from jobs.stages.readers import scored_subjects

__all__ = [
    "activity",
    "badges",
    "campaigns",
    "exports",
    "ingest",
    "loyalty",
    "mission_subjects",
    "missions",
    "predictions",
    "progress",
    "scored_subjects",
    "scores",
    "segments",
    "subscriber_state",
]
