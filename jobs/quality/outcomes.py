"""What the gates find: an Outcome is one row of quality_results, a Planned pairs a GX
expectation with the outcome it reports, a SuitePlan holds one suite's batch, expectations and
the outcomes decided without GX; the small-batch floor of ratio checks; QualityError carries
the failed critical outcomes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame

from jobs.context import PipelineError


class QualityError(PipelineError):
    """A critical expectation failed; `failures` holds every failed critical outcome."""

    def __init__(self, message: str, failures: Sequence[Outcome] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


@dataclass(frozen=True)
class Outcome:
    """What one expectation found: one row of quality_results."""

    suite: str
    table: str
    expectation: str
    column: str | None
    severity: str
    status: str  # passed | failed | skipped
    observed: str = ""
    scope: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool | None:
        return None if self.status == "skipped" else self.status == "passed"

    def describe(self) -> str:
        target = f"{self.table}.{self.column}" if self.column else self.table
        scope = f" [{self.scope}]" if self.scope else ""
        return f"{target} {self.expectation}{scope}: {self.observed}"


@dataclass(frozen=True)
class Planned:
    """A GX expectation and the outcome it reports (status and observed filled in later).

    `min_rows`: the floor of a ratio check (one with `mostly`): on a batch of fewer rows the
    check allows as many unexpected rows as it would on `min_rows` rows, so a handful of rows
    cannot fail the run."""

    expectation: Any
    outcome: Outcome
    min_rows: int | None = None


def small_batch_allowance(mostly: float | None, min_rows: int | None) -> int | None:
    """Unexpected rows a ratio check tolerates on a batch below its floor: (1 - mostly) x min_rows,
    rounded down; None when the check has no floor."""
    if mostly is None or not min_rows:
        return None
    return math.floor(round((1 - mostly) * min_rows, 9))


def passes_below_floor(result: Mapping[str, Any], mostly: float | None, min_rows: int | None) -> bool:
    """True when a failed ratio check ran on fewer than `min_rows` rows and its unexpected rows
    are within `small_batch_allowance`."""
    allowance = small_batch_allowance(mostly, min_rows)
    rows, unexpected = result.get("element_count"), result.get("unexpected_count")
    if allowance is None or rows is None or unexpected is None:
        return False
    return rows < min_rows and unexpected <= allowance


@dataclass
class SuitePlan:
    name: str
    table: str
    batch: DataFrame | None = None
    planned: list[Planned] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)  # decided without GX
    table_version: int | None = None  # the Delta version of `table` the batch was read from
