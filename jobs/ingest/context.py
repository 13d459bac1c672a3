"""The vocabulary every ingest module shares: the run-wide `IngestContext`, the per-source
`SourceResult` that pipeline_runs records, and the three statuses a raw row can end in
(accepted, rejected, duplicate). Plain values only: no Spark, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

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


@dataclass(frozen=True)
class SourceResult:
    source: str
    status: str
    rows_read: int = 0
    rows_accepted: int = 0
    rows_rejected: int = 0
    rows_duplicate: int = 0
    events_written: int = 0
    duration_s: float = 0.0
    message: str = ""

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_accepted + self.rows_rejected + self.rows_duplicate
