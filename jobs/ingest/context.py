"""The vocabulary every ingest module shares: the run-wide `IngestContext`, the per-source
`SourceResult` (a pipeline_runs row, defined by jobs.run_log), and the three statuses a raw row
can end in (accepted, rejected, duplicate). Plain values only: no Spark, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from jobs.run_log import SourceResult

__all__ = ["ACCEPTED", "DUPLICATE", "REJECTED", "IngestContext", "SourceResult"]

ACCEPTED, REJECTED, DUPLICATE = "accepted", "rejected", "duplicate"


@dataclass(frozen=True)
class IngestContext:
    """Run-wide parameters every source needs."""

    ds: date
    timezone: str
    country_code: str
    key: str
    max_lateness_days: int = 7

    @property
    def batch_suffix(self) -> str:
        return self.ds.strftime("%Y%m%d")
