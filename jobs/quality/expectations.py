"""The Great Expectations expectations of each configured check, for a table suite
(`table_expectations`) or an extract (`raw_expectations`), each paired with the outcome it
reports; and `import_gx`, the one place Great Expectations is imported.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from jobs.quality.outcomes import Outcome, Planned
from jobs.quality.spec import Check
from jobs.sources import Source


def import_gx() -> Any:
    """Great Expectations, imported on first use (it is slow to import), with analytics off and
    its INFO chatter quiet unless a level was set for it."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    gx_log = logging.getLogger("great_expectations")
    if gx_log.level == logging.NOTSET:
        gx_log.setLevel(logging.WARNING)
    return gx


def _kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"mostly": params["mostly"]} if params.get("mostly") is not None else {}


def table_expectations(
    suite: str, table: str, check: Check, *, previous_rows: int | None = None, sources: Sequence[str] = ()
) -> list[Planned]:
    """The GX expectations of one table check (references and reject_rate read columns that
    `with_orphans` / `with_reject_rates` add; row_count_change needs the previous day's rows)."""
    E = import_gx().expectations
    p, severity = check.params, check.severity

    def planned(expectation: Any, column: str | None, scope: str | None = None) -> Planned:
        return Planned(
            expectation,
            Outcome(suite, table, expectation.expectation_type, column, severity, "", "", scope),
            p.get("min_rows") if p.get("mostly") is not None else None,
        )

    if check.expect == "not_null":
        return [planned(E.ExpectColumnValuesToNotBeNull(column=c, **_kwargs(p)), c) for c in check.columns]
    if check.expect == "between":
        bounds = {"min_value": p.get("min"), "max_value": p.get("max")}
        return [planned(E.ExpectColumnValuesToBeBetween(column=c, **bounds, **_kwargs(p)), c) for c in check.columns]
    if check.expect == "in_set":
        return [
            planned(E.ExpectColumnValuesToBeInSet(column=c, value_set=list(p["values"]), **_kwargs(p)), c)
            for c in check.columns
        ]
    if check.expect == "unique":
        if len(check.columns) == 1:
            return [planned(E.ExpectColumnValuesToBeUnique(column=check.columns[0]), check.columns[0])]
        return [planned(E.ExpectCompoundColumnsToBeUnique(column_list=list(check.columns)), ",".join(check.columns))]
    if check.expect == "min_rows":
        return [planned(E.ExpectTableRowCountToBeBetween(min_value=p["value"]), None)]
    if check.expect == "row_count_change":
        if not previous_rows:
            raise ValueError("row_count_change needs the previous day's row count")
        low = math.floor(previous_rows * (1 - p["tolerance"]))
        high = math.ceil(previous_rows * (1 + p["tolerance"]))
        scope = f"previous day {previous_rows} rows +-{p['tolerance']:.0%}"
        description = f"Row count within {low}..{high}: {scope}."
        expectation = E.ExpectTableRowCountToBeBetween(min_value=max(low, 0), max_value=high, description=description)
        return [planned(expectation, None, scope)]
    if check.expect == "references":
        column = check.columns[0]
        where = p.get("where")
        scope = f"not in {p['table']}.{p['parent_column']}" + (f", where {where}" if where else "")
        description = (
            f"Every {column}{f' (where {where})' if where else ''} exists in "
            f"{p['table']}.{p['parent_column']} on the same date: `_orphan_{column}` holds those that do not."
        )
        return [
            planned(E.ExpectColumnValuesToBeNull(column=f"_orphan_{column}", description=description), column, scope)
        ]
    if check.expect == "reject_rate":
        per_source = p.get("per_source") or {}
        out = []
        for name in sources:
            limit = per_source.get(name, p["max"])
            description = f"Share of the rows of source {name} rejected at ingest is at most {limit:g}."
            expectation = E.ExpectColumnMaxToBeBetween(
                column=f"reject_rate_{name}", max_value=limit, description=description
            )
            out.append(planned(expectation, "reject_rate", f"source {name}"))
        return out
    raise ValueError(f"unknown check {check.expect!r}")


def raw_expectations(
    suite: str, source: Source, checks: Mapping[str, Mapping[str, Any]], columns: Sequence[str]
) -> list[Planned]:
    """The GX expectations of one extract's batch (see `raw_batch`)."""
    E = import_gx().expectations
    out: list[Planned] = []

    def add(check: str, expectation: Any, column: str | None, scope: str | None = None) -> None:
        severity = checks[check].get("severity", "critical")
        floor = checks[check].get("min_rows") if check != "min_rows" else None
        out.append(
            Planned(
                expectation,
                Outcome(suite, suite, expectation.expectation_type, column, severity, "", "", scope),
                floor,
            )
        )

    if "min_rows" in checks:
        add("min_rows", E.ExpectTableRowCountToBeBetween(min_value=checks["min_rows"].get("value", 1)), None)
    keys = [*source.natural_key, source.subscriber_column]
    for name, column in source.columns.items():
        check = "keys_not_null" if name in keys else None if column.nullable else "required_not_null"
        if check in checks:
            add(check, E.ExpectColumnValuesToNotBeNull(column=name, **_kwargs(checks[check])), name)
    if "types_parse" in checks:
        for column in (c for c in columns if c.startswith("_unparsed_")):
            name = column.removeprefix("_unparsed_")
            contract = source.columns.get(name)
            wanted = f"a {contract.type}" if contract else f"the format {(source.event_time or {}).get('format')}"
            description = f"Values of {name} parse as {wanted}: `{column}` holds those that do not."
            expectation = E.ExpectColumnValuesToBeNull(
                column=column, description=description, **_kwargs(checks["types_parse"])
            )
            add("types_parse", expectation, name, "values that do not parse")
    if "msisdn_valid" in checks:
        description = f"{source.subscriber_column} normalises to an E.164 number of 8 to 15 digits."
        expectation = E.ExpectColumnValuesToBeNull(
            column="_invalid_msisdn", description=description, **_kwargs(checks["msisdn_valid"])
        )
        add("msisdn_valid", expectation, source.subscriber_column, "not a phone number")
    return out
