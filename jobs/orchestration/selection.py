"""Which tasks a DAG run selects, and what a rerun of a past day recomputes for later days.

A run's params (see `params.py`) choose stages and sources; a task outside the choice is
skipped, never failed. The functions here are pure: the DAG's operators call them with the run's
params, and the tests call them directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

INGEST = "ingest"
GATE = "quality"  # the stage whose success lets a day's tables be announced


def stage_skip_reason(params: Mapping[str, Any], stage: str) -> str | None:
    """Why this run does not run `stage`, or None when it does."""
    stages = params.get("stages")
    if stages is not None and stage not in stages:
        return f"stage {stage} is not selected for this run (params.stages = {list(stages)})"
    return None


def source_skip_reason(params: Mapping[str, Any], source: str) -> str | None:
    """Why this run does not ingest `source`, or None when it does (if the source is due)."""
    reason = stage_skip_reason(params, INGEST)
    if reason:
        return reason
    sources = params.get("sources")
    if sources is not None and source not in sources:
        return f"source {source} is not selected for this run (params.sources = {list(sources)})"
    return None


def group_stages(params: Mapping[str, Any], stages: Sequence[str]) -> list[str]:
    """The stages of a group this run selects, in pipeline order. Ingest counts only with a
    source to ingest: an empty `params.sources` leaves it out."""
    selected = params.get("stages")
    chosen = [s for s in stages if selected is None or s in selected]
    if INGEST in chosen and params.get("sources") == []:
        chosen.remove(INGEST)
    return chosen


def group_outlets(groups: Sequence[tuple[str, Sequence[str]]], gate: str) -> dict[str, list[str]]:
    """Group name -> the stages whose tables its Asset events announce. Events wait for the
    quality gate: the group holding `gate` announces every stage up to it, the groups after it
    their own, the groups before it none. Without a gate, each group announces its own."""
    at = next((i for i, (_, stages) in enumerate(groups) if gate in stages), None)
    announced: dict[str, list[str]] = {}
    for i, (name, stages) in enumerate(groups):
        if at is None or i > at:
            announced[name] = list(stages)
        elif i == at:
            announced[name] = [s for _, earlier in groups[: i + 1] for s in earlier]
        else:
            announced[name] = []
    return announced


def later_days_stages(
    stages: Sequence[str], selected: Sequence[str], stateful: Sequence[str], full_refresh: bool = False
) -> list[str]:
    """Stages to recompute for the days after a rerun date, so they build on what it rewrote.

    Later days read what a stateful stage wrote on earlier days (daily_activity windows, earlier
    assignments, progress, awards, ledger, tiers, yesterday's scores), and every stage after a
    recomputed one reads its output. So the recomputation starts at the first selected stateful
    stage and runs every stage after it. Ingest itself is not repeated (later days' extracts are
    not re-read), so a rerun that ingested starts at the first stage after ingest. With
    `full_refresh` it starts at the first selected stage, whatever it is, ingest included.
    Nothing to recompute: an empty list.
    """
    chosen = [s for s in stages if s in selected and (full_refresh or s in stateful)]
    if not chosen:
        return []
    first = stages.index(chosen[0])
    recompute = list(stages[first:])
    if not full_refresh and recompute[0] == INGEST:
        recompute = recompute[1:]
    return recompute
