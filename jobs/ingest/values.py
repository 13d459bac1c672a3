"""Value specs and source rules, compiled and checked: a mapping's declarative value spec
(literal, column, expr, map, pseudonymise, days_late) becomes a Spark Column (`value_column`),
the names and types a source's expressions may use are listed (`expression_names`,
`expression_types`), and every problem of a source's rules, mappings and value specs is found
without Spark or data (`source_problems`), with the reserved column names the pipeline adds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pyspark.sql import Column
from pyspark.sql import functions as F

from jobs import expressions
from jobs.ingest.context import IngestContext
from jobs.privacy import pseudonymise
from jobs.sources import CORRUPT, SOURCE_FILE, Source, SourceError
from jobs.templates import value_position


def value_column(spec: Any, source: Source, ctx: IngestContext, *, where: str) -> Column:
    """Compile one declarative value spec from a mapping (literal, column, expr, map, ...)."""
    if not isinstance(spec, Mapping):
        return F.lit(spec)
    if len(spec) != 1 and "map" not in spec:
        raise SourceError(
            f"{source.config_file}: {where}: a value spec has exactly one of column/expr/map/pseudonymise/days_late"
        )
    if "column" in spec:
        return F.col(_known_column(spec["column"], source, where))
    if "expr" in spec:
        return expressions.compile_expression(
            str(spec["expr"]), expression_names(source, ctx), source=f"{source.config_file}#{where}"
        )
    if "pseudonymise" in spec:
        column = _known_column(spec["pseudonymise"], source, where)
        return pseudonymise(F.col(column), ctx.country_code)
    if "map" in spec:
        column = F.col(_known_column(spec["map"], source, where))
        mapped = F.lit(spec.get("default"))
        for raw, canonical in reversed(list(spec["values"].items())):
            mapped = F.when(column == F.lit(raw), F.lit(canonical)).otherwise(mapped)
        return mapped
    if "days_late" in spec:
        when_col, due_col = (_known_column(c, source, where) for c in spec["days_late"])
        local_day = F.to_date(F.from_utc_timestamp(F.col(when_col).cast("timestamp"), ctx.timezone))
        return F.datediff(local_day, F.col(due_col))
    raise SourceError(f"{source.config_file}: {where}: unknown value spec {dict(spec)}")


def _known_column(path: str, source: Source, where: str) -> str:
    name = path.replace(".", "_")
    if name not in source.columns and name not in ("event_ts", "event_date"):
        raise SourceError(f"{source.config_file}: {where}: {path!r} is not a contract column of {source.name}")
    return name


def expression_names(source: Source, ctx: IngestContext) -> dict[str, Column]:
    """Column of every name a source's rules may use: its non-PII contract columns and `ds`."""
    names = {
        name: expressions.name_column(name, column.type) for name, column in source.columns.items() if not column.pii
    }
    names["ds"] = F.lit(ctx.ds)
    return names


# Columns the pipeline adds next to the raw ones: a contract column may not take these names.
ADDED_COLUMNS = frozenset(
    {
        "subscriber_id",
        "event_ts",
        "event_date",
        "record_key",
        "reject_reason",
        "reject_message",
        "ds",
        SOURCE_FILE,
        CORRUPT,
    }
)
_VALUE_SPECS = ("column", "expr", "map", "pseudonymise", "days_late")
_MAPPING_VALUES = ("event_subtype", "quantity", "unit", "amount", "currency", "channel")


def expression_types(source: Source) -> dict[str, str]:
    """Expression type of every name a source's rules may use."""
    types = {name: expressions.value_type(column.type) for name, column in source.columns.items() if not column.pii}
    types["ds"] = expressions.DATE
    return types


def source_problems(source: Source) -> list[str]:
    """Every problem of one source's rules, mappings and value specs, found without Spark or
    data: names, types, columns and collisions, each as `file:line:column: message` (or
    `file: key: message` when the position is not known)."""
    problems: list[str] = []
    root = _yaml_root(source.config_file)
    names = [name for name, column in source.columns.items() if not column.pii] + ["ds"]
    types = expression_types(source)

    def problem(keys: tuple[str | int, ...], message: str) -> None:
        line, column = value_position(root, keys) if root is not None else (0, 0)
        where = f"{source.config_file}:{line}:{column}" if line else f"{source.config_file}: {_key_text(keys)}"
        problems.append(f"{where}: {message}")

    def expression(keys: tuple[str | int, ...], text: Any, expect: str | None) -> None:
        line, column = value_position(root, keys) if root is not None else (1, 1)
        try:
            expressions.validate(
                str(text), names, types=types, expect=expect, source=source.config_file, line=line, column=column
            )
        except expressions.ExpressionError as exc:
            problems.append(str(exc).split("\n", 1)[0] + f" (in {_key_text(keys)})")

    def column_ref(keys: tuple[str | int, ...], path: Any) -> None:
        name = str(path).replace(".", "_")
        if name not in source.columns and name not in ("event_ts", "event_date"):
            known = ", ".join(c.path for c in source.contract)
            problem(keys, f"{path!r} is not a contract column of {source.name} (known: {known})")

    def value_spec(keys: tuple[str | int, ...], spec: Any) -> None:
        if not isinstance(spec, Mapping):
            return
        kinds = [k for k in _VALUE_SPECS if k in spec]
        if len(kinds) != 1 or (kinds != ["map"] and len(spec) != 1):
            problem(keys, f"a value spec has exactly one of {', '.join(_VALUE_SPECS)}, got {sorted(spec)}")
            return
        kind = kinds[0]
        if kind == "expr":
            expression((*keys, "expr"), spec["expr"], None)
        elif kind == "days_late":
            pair = spec["days_late"]
            if not isinstance(pair, list) or len(pair) != 2:
                problem((*keys, "days_late"), "must list two columns: [timestamp_column, due_date_column]")
            else:
                for i, path in enumerate(pair):
                    column_ref((*keys, "days_late", i), path)
        elif kind == "map":
            column_ref((*keys, "map"), spec["map"])
            if not isinstance(spec.get("values"), Mapping):
                problem((*keys, "values"), "a map needs values: {raw: canonical, ...}")
        else:
            column_ref((*keys, kind), spec[kind])

    for column in source.contract:
        if column.name in ADDED_COLUMNS or column.name.startswith("_"):
            problem(
                ("contract", column.path),
                f"raw column {column.path!r} has the name of a column the pipeline adds "
                f"({', '.join(sorted(c for c in ADDED_COLUMNS if not c.startswith('_')))}, or any name starting "
                "with '_'): rename it in the contract",
            )
    for i, check in enumerate(source.checks):
        if not isinstance(check, Mapping) or "rule" not in check:
            problem(("checks", i), "a check needs a rule (and a reason)")
            continue
        expression(("checks", i, "rule"), check["rule"], expressions.BOOLEAN)
    for i, mapping in enumerate(source.mappings):
        if "when" in mapping:
            expression(("mappings", i, "when"), mapping["when"], expressions.BOOLEAN)
        for key in _MAPPING_VALUES:
            value_spec(("mappings", i, key), mapping.get(key))
        for name, spec in (mapping.get("attributes") or {}).items():
            value_spec(("mappings", i, "attributes", name), spec)
    for name, spec in source.attributes.items():
        value_spec(("attributes", name), spec)
    if source.profile is not None:
        for name, spec in (source.profile.get("columns") or {}).items():
            value_spec(("profile", "columns", name), spec)
    if source.event_time is not None:
        column_ref(("event_time", "column"), source.event_time.get("column"))
    return problems


def _key_text(keys: tuple[str | int, ...]) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")


def _yaml_root(path: str) -> Any:
    try:
        return yaml.compose(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
