"""Event normalization: every due source's raw extract becomes rows of the `events` table.

Each raw row ends in exactly one place: accepted (one or more events), rejected (quarantined in
`events_rejected` with a reason code and message), or duplicate (also quarantined, counted apart).

- `context`: IngestContext, SourceResult and the three row statuses, shared by the others;
- `values`: value specs compiled to Columns, expression names/types, `source_problems`;
- `classify`: subscriber, time, record key, reject reason and duplicates per raw row;
- `outputs`: classified rows -> events, events_rejected, subscriber_profile rows; accounting;
- `run`: the I/O: `run_ingest` reads, classifies and accounts each source (`prepare_source`),
  then writes the sources of a run together (`write_sources`).
The transformations are pure; only `run` reads or writes tables (pipeline_runs through
jobs.run_log).
"""

from __future__ import annotations

from jobs.ingest.classify import classify, with_prior_duplicates
from jobs.ingest.context import ACCEPTED, IngestContext, SourceResult
from jobs.ingest.outputs import accounting, file_rejects, to_events, to_profile, to_rejects
from jobs.ingest.run import ShrinkGuard, known_subscribers, run_ingest
from jobs.ingest.values import source_problems

__all__ = [
    "ACCEPTED",
    "IngestContext",
    "ShrinkGuard",
    "SourceResult",
    "accounting",
    "classify",
    "file_rejects",
    "known_subscribers",
    "run_ingest",
    "source_problems",
    "to_events",
    "to_profile",
    "to_rejects",
    "with_prior_duplicates",
]
