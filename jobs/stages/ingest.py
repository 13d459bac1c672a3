"""The ingest stage: raw extracts of every due source -> events, events_rejected,
subscriber_profile, with one pipeline_runs row per source (jobs.ingest does the work)."""

from __future__ import annotations

from jobs.context import PipelineError, RunContext
from jobs.ingest import IngestContext, ShrinkGuard, SourceResult, run_ingest
from jobs.stages.settings import max_lateness_days, subscriber_lookback_days

__all__ = ["run"]


def run(ctx: RunContext) -> list[SourceResult]:
    """Raw extracts of every due source -> events, events_rejected, subscriber_profile."""
    config = ctx.config
    ingest_ctx = IngestContext(
        ds=ctx.ds,
        timezone=config.require("operator.timezone"),
        country_code=str(config.require("operator.country_code")),
        key=config.require("privacy.pseudonymisation_key"),
        max_lateness_days=max_lateness_days(ctx),
    )
    guard = ShrinkGuard.from_config(config.get("ingest.shrink_guard"))
    results = run_ingest(ctx.lakehouse, ctx.sources(), ingest_ctx, ctx.raw_root, subscriber_lookback_days(ctx), guard)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise PipelineError("; ".join(f"{r.source}: {r.message}" for r in failed))
    return results
