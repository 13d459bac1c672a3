"""The shrink guard: an extract far smaller than the source's last successful run is kept from
replacing that day's rows silently. A decision on two counts, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobs.run_log import SourceResult
from jobs.sources import SourceError

__all__ = ["ExtractShrank", "ShrinkGuard"]


@dataclass(frozen=True)
class ShrinkGuard:
    """An extract far smaller than the source's last successful run is not allowed to replace
    that day's rows silently: `fail` fails the source, `hold` keeps what was there and marks the
    source degraded. `min_ratio` of the previous rows read, checked once the previous run read
    at least `min_previous_rows`."""

    min_ratio: float = 0.1
    min_previous_rows: int = 100
    action: str = "fail"

    @classmethod
    def from_config(cls, spec: Mapping[str, Any] | None) -> ShrinkGuard:
        spec = spec or {}
        guard = cls(
            float(spec.get("min_ratio", cls.min_ratio)),
            int(spec.get("min_previous_rows", cls.min_previous_rows)),
            str(spec.get("action", cls.action)),
        )
        if guard.action not in ("fail", "hold") or not 0 <= guard.min_ratio <= 1:
            raise ValueError("ingest.shrink_guard: action must be fail or hold, min_ratio between 0 and 1")
        return guard

    def problem(self, rows_read: int, previous: int | None) -> str | None:
        if previous is None or previous < self.min_previous_rows or rows_read >= self.min_ratio * previous:
            return None
        return (
            f"extract shrank to {rows_read:,} rows from {previous:,} at the last run "
            f"(below {self.min_ratio:.0%}): not written ({self.action})"
        )


class ExtractShrank(SourceError):
    """The extract is suspiciously smaller than the last run's: nothing was written."""

    def __init__(self, message: str, action: str, result: SourceResult) -> None:
        super().__init__(message)
        self.action, self.result = action, result
