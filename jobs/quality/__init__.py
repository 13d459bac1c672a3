"""Data-quality gates for one run date: suites declared in conf/quality.yaml, validated with
Great Expectations: ``raw.<source>`` checks a due extract against its input contract, ``<table>``
the run date's rows of a lakehouse table. Every check goes through GX and shows in Data Docs.

* ``spec``: conf/quality.yaml read and validated into a QualitySpec.
* ``outcomes``: what an expectation found (Outcome), a suite's plan, QualityError.
* ``batches``: pure transformations adding the columns cross-table and raw checks validate.
* ``expectations``: the GX expectations of each configured check, and the GX import.
* ``plan``: reading the run date's batches and planning each suite.
* ``validation``: running a planned suite through GX, describing its results, the Data Docs site.
The stage that runs the suites and writes quality_results is jobs.stages.quality.
"""

from __future__ import annotations

from jobs.quality.batches import raw_batch, with_orphans, with_reject_rates
from jobs.quality.outcomes import QualityError, passes_below_floor, small_batch_allowance
from jobs.quality.plan import read_day
from jobs.quality.spec import TableSpec, load_spec, selected, suite_names
from jobs.quality.validation import site_dir
from jobs.tables import QUALITY_RESULTS

__all__ = [
    "QUALITY_RESULTS",
    "QualityError",
    "TableSpec",
    "load_spec",
    "passes_below_floor",
    "raw_batch",
    "read_day",
    "selected",
    "site_dir",
    "small_batch_allowance",
    "suite_names",
    "with_orphans",
    "with_reject_rates",
]
