"""Deterministic defect injection plans.

Each kind touches max(1, round(rate * n)) rows of a batch of n clean rows (none when the rate
is 0). Rows altered in place and rows copied as duplicates are disjoint, so every defective
row carries exactly one defect and the manifest counts are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

DUPLICATE = "duplicate"
MALFORMED_TIMESTAMP = "malformed_timestamp"
NEGATIVE_DURATION = "negative_duration"
UNKNOWN_SUBSCRIBER = "unknown_subscriber"
MISSING_MSISDN = "missing_msisdn"
BAD_LINE = "bad_line"


class Mode(Enum):
    INPLACE = "inplace"  # the row itself is altered
    COPY = "copy"  # an exact copy of the row is added
    INSERT = "insert"  # an extra corrupted line is added next to the row


@dataclass(frozen=True)
class DefectPlan:
    """Clean-row indices chosen for each defect kind."""

    size: int
    rows: dict[str, np.ndarray]
    modes: dict[str, Mode]

    def counts(self) -> dict[str, int]:
        return {kind: len(rows) for kind, rows in self.rows.items()}

    def mask(self, kind: str) -> np.ndarray:
        out = np.zeros(self.size, dtype=bool)
        out[self.rows[kind]] = True
        return out

    def layout(self, sort_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Final row order as indices into the clean rows, and a mask of inserted lines.

        Copies and inserted lines sort next to their source row (stable sort on `sort_key`).
        """
        copies = [r for k, r in self.rows.items() if self.modes[k] is Mode.COPY]
        inserts = [r for k, r in self.rows.items() if self.modes[k] is Mode.INSERT]
        n_copies = sum(map(len, copies))
        index = np.concatenate([np.arange(self.size), *copies, *inserts]).astype(np.int64)
        inserted = np.zeros(len(index), dtype=bool)
        inserted[self.size + n_copies :] = True
        order = np.argsort(sort_key[index], kind="stable")
        return index[order], inserted[order]


def plan(rng: np.random.Generator, n: int, rate: float, kinds: dict[str, Mode]) -> DefectPlan:
    """Choose the rows of each kind; in-place and copied rows never overlap."""
    count = max(1, round(rate * n)) if rate > 0 and n > 0 else 0
    exclusive = [k for k, m in kinds.items() if m is not Mode.INSERT]
    pool = rng.choice(n, size=min(n, count * len(exclusive)), replace=False) if count else np.zeros(0, np.int64)
    rows: dict[str, np.ndarray] = {}
    for i, kind in enumerate(exclusive):
        rows[kind] = np.sort(pool[i * count : (i + 1) * count])
    for kind, mode in kinds.items():
        if mode is Mode.INSERT:
            rows[kind] = np.sort(rng.integers(0, n, count)) if count else np.zeros(0, np.int64)
    return DefectPlan(n, {k: rows[k] for k in kinds}, dict(kinds))
