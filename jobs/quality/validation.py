"""Running planned suites through Great Expectations: the ephemeral GX context (keeping
validation results in the date's Data Docs site), one Checkpoint per suite over its batch with
samples of the unexpected values of failed expectations, and `observed_text`, the readable
account of a result that quality_results stores.

`register` adds a suite to the context over a data source of its own (GX keeps the loaded batch
in its data source's execution engine), so registered suites can be validated in parallel threads:
`validate` then writes only the suite's own validation result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.context import RunContext
from jobs.quality.expectations import import_gx
from jobs.quality.outcomes import Outcome, SuitePlan, passes_below_floor, small_batch_allowance
from jobs.quality.spec import QualitySpec

SITE_NAME = "quality"
RESULTS_DIR = "_results"  # validation results (JSON) inside a date's site folder

log = logging.getLogger(__name__)


def site_dir(ctx: RunContext, spec: QualitySpec) -> str | None:
    """The local folder of the run date's Data Docs site, or None when the configured place is remote."""
    configured = str(spec.data_docs_dir or f"{ctx.lakehouse.root}/_data_docs")
    path = configured.removeprefix("file://")
    if "://" in path:
        log.warning("quality: Data Docs need a local folder, %s is not one: no Data Docs built", configured)
        return None
    return str(Path(path).resolve() / ctx.ds.isoformat())


def gx_context(site: str | None) -> Any:
    """An ephemeral GX context; with a site folder, validation results are kept in it as JSON
    so a later run of other suites for the same date adds to the same Data Docs."""
    gx = import_gx()
    from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults

    defaults = InMemoryStoreBackendDefaults()
    sites = {}
    if site:
        sites[SITE_NAME] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": site},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
        defaults.stores[defaults.validation_results_store_name]["store_backend"] = {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": f"{site}/{RESULTS_DIR}",
        }
    config = DataContextConfig(
        store_backend_defaults=defaults,
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars={"globally": False},
    )
    return gx.get_context(mode="ephemeral", project_config=config)


@dataclass(frozen=True)
class RegisteredSuite:
    """A suite added to a GX context: its checkpoint and the batch definition it validates."""

    plan: SuitePlan
    checkpoint: Any
    batch_definition: Any


def register(context: Any, plan: SuitePlan) -> RegisteredSuite:
    """Add the plan's suite, validation definition and checkpoint to the context, over a Spark
    data source named after the suite. Registration changes the context: call it from one thread."""
    gx = import_gx()
    expectations = []
    for i, planned in enumerate(plan.planned):
        planned.expectation.meta = {**(planned.expectation.meta or {}), "quality_id": i}
        expectations.append(planned.expectation)
    source = context.data_sources.add_spark(plan.name, persist=False)  # see validate(): batches are not cached
    batch_definition = source.add_dataframe_asset(name=plan.name).add_batch_definition_whole_dataframe(plan.name)
    suite = context.suites.add(gx.ExpectationSuite(name=plan.name, expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=plan.name, data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=plan.name,
            validation_definitions=[definition],
            result_format={"result_format": "BASIC", "partial_unexpected_count": 0},
        )
    )
    return RegisteredSuite(plan, checkpoint, batch_definition)


def validate(registered: RegisteredSuite, run_id: Any, sample_size: int) -> list[Outcome]:
    """Run one registered suite's Checkpoint over its batch; one outcome per expectation.

    The checkpoint counts unexpected rows only; expectations that failed are validated again
    for up to `sample_size` unexpected values, so a passing suite costs no extra Spark job.
    The batch is not cached: GX reads it in bundled aggregations, first the row count (which
    reads no column of a file), then the counts of every expectation (a `unique` check adds a
    window), so a cache would cost a full pass of its own to save a nearly free one."""
    plan, batch_definition = registered.plan, registered.batch_definition
    batch = plan.batch
    run = registered.checkpoint.run(batch_parameters={"dataframe": batch}, run_id=run_id)
    results = {r.expectation_config.meta["quality_id"]: r for v in run.run_results.values() for r in v.results}
    floored = {
        i
        for i, r in results.items()
        if not r.success
        and passes_below_floor(r.result, r.expectation_config.kwargs.get("mostly"), plan.planned[i].min_rows)
    }
    failed = [i for i, r in results.items() if not r.success and r.result.get("unexpected_count") and i not in floored]
    samples = {}
    if failed and sample_size:
        gx_batch = batch_definition.get_batch(batch_parameters={"dataframe": batch})
        result_format = {"result_format": "BASIC", "partial_unexpected_count": sample_size}
        for i in failed:
            again = gx_batch.validate(results[i].expectation_config.to_domain_obj(), result_format=result_format)
            samples[i] = again.result.get("partial_unexpected_list") or []
    outcomes = []
    for i in sorted(results):
        r, template = results[i], plan.planned[i].outcome
        result = {**r.result, "partial_unexpected_list": samples[i]} if i in samples else r.result
        observed = observed_text(result, r.exception_info)
        floor = plan.planned[i].min_rows
        if i in floored:
            allowance = small_batch_allowance(r.expectation_config.kwargs.get("mostly"), floor)
            observed += f"; passes: below {floor} rows up to {allowance} may be unexpected"
        outcomes.append(
            Outcome(
                template.suite,
                template.table,
                template.expectation,
                template.column,
                template.severity,
                "passed" if r.success or i in floored else "failed",
                observed,
                template.scope,
                {"kwargs": _plain(r.expectation_config.kwargs), "result": _plain(result), "min_rows": floor},
            )
        )
    return outcomes


def observed_text(result: Mapping[str, Any], exception_info: Mapping[str, Any] | None) -> str:
    """A short readable account of a GX result: the observed value, or unexpected rows and a sample."""
    error = _exception_message(exception_info or {})
    if error:
        return f"error: {error}"
    if "observed_value" in result:
        value = result["observed_value"]
        return "observed nothing: no row in scope" if value is None else f"observed {_short(value)}"
    if "unexpected_count" in result:
        total = result.get("element_count")
        percent = result.get("unexpected_percent") or 0.0
        text = f"{result['unexpected_count']} of {total} rows unexpected ({percent:.2f}%)"
        sample = [v for v in result.get("partial_unexpected_list") or [] if v is not None]
        if sample:
            text += f", e.g. {', '.join(_short(v) for v in sample[:5])}"
        return text
    return ""


def _exception_message(info: Mapping[str, Any]) -> str | None:
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, Mapping) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
