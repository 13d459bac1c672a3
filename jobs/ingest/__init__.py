"""Event normalization: every due source's raw extract becomes rows of the `events` table.

Each raw row ends in exactly one place: accepted (one or more events), rejected (quarantined in
`events_rejected` with a reason code and message), or duplicate (also quarantined, counted apart).

- `context`: IngestContext, SourceResult and the three row statuses, shared by the others;
- `values`: value specs compiled to Columns, expression names/types, `source_problems`;
- `classify`: subscriber, time, record key, reject reason and duplicates per raw row;
- `outputs`: classified rows -> events, events_rejected, subscriber_profile rows; accounting;
- `shrink_guard`: when an extract is too small to replace a day's rows.
The runner that reads the extracts and writes the tables is jobs.stages.ingest.
Everything here is pure: no table is read or written.
"""

from __future__ import annotations

from jobs.ingest.classify import classify, with_prior_duplicates
from jobs.ingest.context import ACCEPTED, IngestContext, SourceResult
from jobs.ingest.outputs import accounting, file_rejects, to_events, to_profile, to_rejects
from jobs.ingest.shrink_guard import ShrinkGuard
from jobs.ingest.values import source_problems

__all__ = [
    "ACCEPTED",
    "IngestContext",
    "ShrinkGuard",
    "SourceResult",
    "accounting",
    "classify",
    "file_rejects",
    "source_problems",
    "to_events",
    "to_profile",
    "to_rejects",
    "with_prior_duplicates",
]
