"""The DAG's run parameters, shown in the trigger form (and accepted as backfill conf)."""

from __future__ import annotations

from collections.abc import Sequence

from airflow.sdk import Param


def run_params(stages: Sequence[str], sources: Sequence[str]) -> dict[str, Param]:
    return {
        "stages": Param(
            list(stages),
            type="array",
            items={"type": "string", "enum": list(stages)},
            uniqueItems=True,
            examples=list(stages),
            title="Stages",
            description="Stages to run, in pipeline order whatever the order chosen. The others are skipped.",
        ),
        "sources": Param(
            list(sources),
            type="array",
            items={"type": "string", "enum": list(sources)},
            uniqueItems=True,
            examples=list(sources),
            title="Sources",
            description="Sources to ingest when ingest is selected (a source not due on the date is skipped anyway).",
        ),
        "full_refresh": Param(
            False,
            type="boolean",
            title="Full refresh",
            description=(
                "Also rerun, for every later processed day, the selected stages that later days do not "
                "need recomputed, ingest included (later extracts are read again). Without it, a rerun of "
                "a past day recomputes only what later days build on. See dags/README.md."
            ),
        ),
    }
