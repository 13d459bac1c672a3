"""The quality configuration: conf/quality.yaml, with the `quality:` block of the run
configuration merged over it, read and validated into a QualitySpec (the table suites and their
checks, the raw checks with per-source overrides, the Data Docs folder); every error names the
file and the key. Raw suites are named ``raw.<source>``, table suites after their table.

Each table suite is a definition (jobs.definitions) of kind `quality_suite` in the `tables:` list,
its id the table's name. The run configuration's overlay addresses a suite by id
(`quality.tables.<id>.<spec key>`), merged over its spec; an id the file lacks adds a suite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from jobs import expressions
from jobs.config import Config, ConfigError, load_yaml
from jobs.context import PipelineError
from jobs.definitions import Definition, DefinitionError, Kind, read_definitions, unique

SEVERITIES = ("critical", "warning")
VALIDATING_STAGES = ("quality", "exports")  # the gate, or the exports stage for what it writes itself
TABLE_CHECKS = ("not_null", "between", "in_set", "unique", "min_rows", "row_count_change", "references", "reject_rate")
RAW_CHECKS = (
    "extract_present",
    "contract_columns",
    "min_rows",
    "keys_not_null",
    "required_not_null",
    "types_parse",
    "msisdn_valid",
)
RAW_PREFIX = "raw."
SETTINGS = ("data_docs_dir", "sample_size", "parallel_suites", "raw", "tables")  # conf/quality.yaml's keys
# the settings each check reads besides expect, severity and its column(s): any other key is a
# mistake (a misspelt `max` of a between check would otherwise leave its upper bound unchecked)
TABLE_CHECK_KEYS = {
    "not_null": ("mostly", "min_rows"),
    "between": ("min", "max", "mostly", "min_rows"),
    "in_set": ("values", "mostly", "min_rows"),
    "unique": (),
    "min_rows": ("value",),
    "row_count_change": ("tolerance",),
    "references": ("table", "parent_column", "where"),
    "reject_rate": ("max", "per_source", "min_rows_read"),
}
RATIO = ("mostly", "min_rows")
RAW_CHECK_KEYS = {
    "extract_present": (),
    "contract_columns": (),
    "min_rows": ("value",),
    "keys_not_null": RATIO,
    "required_not_null": RATIO,
    "types_parse": RATIO,
    "msisdn_valid": RATIO,
}
QUALITY_SUITE = Kind(
    "quality_suite",
    "Quality suite of a lakehouse table (its id): the checks its run-date rows must pass",
    {
        "required": ["date_column"],
        "additionalProperties": False,
        "properties": {
            "date_column": {"type": "string", "minLength": 1, "description": "equal to the run date on its rows"},
            "partition_column": {"type": "string", "description": "when the table is partitioned by another date"},
            "lookback_days": {"type": "integer", "minimum": 0, "description": "partitions read back from ds"},
            "optional": {"type": "boolean", "description": "an absent table is skipped with a note"},
            "validated_by": {"enum": list(VALIDATING_STAGES)},
            "checks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["expect"],
                    "properties": {
                        "expect": {"enum": list(TABLE_CHECKS)},
                        "severity": {"enum": list(SEVERITIES)},
                        "column": {"type": "string"},
                        "columns": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                        "mostly": {"type": "number", "minimum": 0, "maximum": 1},
                        "min_rows": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
    },
)


@dataclass(frozen=True)
class Check:
    """One configured table check; `columns` are the table columns it reads."""

    expect: str
    severity: str
    columns: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TableSpec:
    name: str
    date_column: str
    partition_column: str
    lookback_days: int | None = None  # when partitioned by another date: partitions read back from ds
    optional: bool = False
    checks: tuple[Check, ...] = ()
    validated_by: str = "quality"  # the stage that validates the suite (exports: after delivering)


@dataclass(frozen=True)
class QualitySpec:
    tables: Mapping[str, TableSpec]
    raw_checks: Mapping[str, Mapping[str, Any]]
    raw_overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    data_docs_dir: str | None = None
    sample_size: int = 5
    parallel_suites: int = 1

    def raw_for(self, source: str) -> dict[str, dict[str, Any]]:
        """Raw checks of one source: the defaults with its overrides merged in."""
        merged = {name: dict(spec) for name, spec in self.raw_checks.items()}
        for name, spec in (self.raw_overrides.get(source) or {}).items():
            merged[name] = {**merged.get(name, {}), **spec}
        return merged


def load_spec(path: str | Path, overlay: Mapping[str, Any] | None = None) -> QualitySpec:
    """Read conf/quality.yaml, merge `overlay` (the `quality:` block of the run configuration)
    over it, and validate; errors name the file and the key."""
    path = Path(path)
    problems: list[str] = []
    definitions: list[Definition] = []
    data = load_yaml(path) if path.exists() else {}
    if not isinstance(data, dict):
        raise ConfigError(path, "-", "top level must be a mapping")
    if path.exists():
        definitions = unique(read_definitions(path, [QUALITY_SUITE], problems, key="tables", required=False), problems)
    overlay = dict(overlay or {})
    overlay_tables = overlay.pop("tables", None) or {}
    data = _deep_merge({k: v for k, v in data.items() if k != "tables"}, overlay)

    def fail(key: str, message: str) -> None:
        raise ConfigError(path, key, message)

    sample_size = data.get("sample_size", 5)
    if not isinstance(sample_size, int) or sample_size < 0:
        fail("sample_size", f"must be a non-negative integer, got {sample_size!r}")
    parallel = data.get("parallel_suites", 1)
    if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
        fail("parallel_suites", f"must be a positive integer, got {parallel!r}")
    for name in data:
        if name not in SETTINGS:
            fail(name, f"unknown setting (known: {', '.join(SETTINGS)})")
    raw = data.get("raw") or {}
    for name in raw:
        if name not in ("checks", "sources"):
            fail(f"raw.{name}", "unknown setting (known: checks, sources)")
    raw_checks = raw.get("checks") or {}
    overrides = raw.get("sources") or {}
    raw_specs = [
        *((f"raw.checks.{k}", k, v) for k, v in raw_checks.items()),
        *((f"raw.sources.{s}.{k}", k, v) for s, o in overrides.items() for k, v in o.items()),
    ]
    for key, name, spec in raw_specs:
        if name not in RAW_CHECKS:
            fail(key, f"unknown raw check; known: {', '.join(RAW_CHECKS)}")
        _check_common(spec, key, fail, required_severity=False)
        _known_keys(spec, RAW_CHECK_KEYS[name], key, f"the raw check {name}", fail)
        if "value" in spec and not _count(spec["value"]):
            fail(f"{key}.value", f"must be a non-negative integer, got {spec['value']!r}")
    suites: dict[str, tuple[Definition | None, Mapping[str, Any]]] = {d.id: (d, d.spec) for d in definitions}
    for name, spec in overlay_tables.items():
        found, base = suites.get(name, (None, {}))
        suites[name] = (found, _deep_merge(base, spec or {}))
    tables = {}
    for name, (definition, spec) in suites.items():
        try:
            tables[name] = _table_spec(name, spec, fail)
        except CheckErrors as exc:
            problems += [_suite_problem(path, definition, e) for e in exc.errors]
        except ConfigError as exc:
            problems.append(_suite_problem(path, definition, exc))
    if problems:
        raise DefinitionError(problems)
    return QualitySpec(
        tables=tables,
        raw_checks=raw_checks,
        raw_overrides=overrides,
        data_docs_dir=data.get("data_docs_dir"),
        sample_size=sample_size,
        parallel_suites=parallel,
    )


class CheckErrors(ConfigError):
    """The problems of several checks of one suite."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__(errors[0].file, errors[0].key, "; ".join(e.message for e in errors))


def _suite_problem(path: Path, definition: Definition | None, exc: ConfigError) -> str:
    """A suite's problem (key `tables.<id>.<spec key>`) at the line and column of that key."""
    if definition is None:
        return f"{path}:1:1: {exc.key}: {exc.message} (the run configuration's quality.tables)"
    inner = exc.key.split(".", 2)[2] if exc.key.count(".") >= 2 else ""
    keys: list[str | int] = []
    for part in inner.replace("]", "").replace("[", ".").split(".") if inner else []:
        keys.append(int(part) if part.isdigit() else part)
    while keys and definition.position(*keys) == (definition.line, definition.column):
        keys.pop()  # the key itself is absent: the nearest enclosing one
    line, column = definition.position(*keys)
    return f"{definition.file}:{line}:{column}: {exc.key}: {exc.message}"


def _deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _known_keys(spec: Mapping[str, Any], allowed: Sequence[str], key: str, what: str, fail: Any) -> None:
    allowed = ("severity", *allowed)
    for name in spec:
        if name not in allowed:
            fail(f"{key}.{name}", f"unknown key for {what} (allowed: {', '.join(allowed)})")


def _check_common(spec: Any, key: str, fail: Any, *, required_severity: bool = True) -> None:
    if not isinstance(spec, Mapping):
        fail(key, "must be a mapping")
    severity = spec.get("severity", "critical" if required_severity else None)
    if severity is not None and severity not in SEVERITIES:
        fail(f"{key}.severity", f"must be critical or warning, got {severity!r}")
    mostly = spec.get("mostly")
    if mostly is not None and not (isinstance(mostly, int | float) and 0 <= mostly <= 1):
        fail(f"{key}.mostly", f"must be a fraction in [0, 1], got {mostly!r}")
    floor = spec.get("min_rows")
    if floor is not None:
        if not isinstance(floor, int) or isinstance(floor, bool) or floor < 0:
            fail(f"{key}.min_rows", f"must be a non-negative integer, got {floor!r}")
        if mostly is None:
            fail(f"{key}.min_rows", "applies to a ratio check: set `mostly` too")


def _table_spec(name: str, spec: Mapping[str, Any], fail: Any) -> TableSpec:
    key = f"tables.{name}"
    date_column = spec.get("date_column")
    if not isinstance(date_column, str) or not date_column:
        fail(f"{key}.date_column", "is required: the column equal to the run date on the run's rows")
    lookback = spec.get("lookback_days")
    if lookback is not None and (not isinstance(lookback, int) or lookback < 0):
        fail(f"{key}.lookback_days", f"must be a non-negative integer, got {lookback!r}")
    optional = spec.get("optional", False)
    if not isinstance(optional, bool):
        fail(f"{key}.optional", "must be true or false")
    validated_by = spec.get("validated_by", "quality")
    if validated_by not in VALIDATING_STAGES:
        fail(f"{key}.validated_by", f"must be one of {', '.join(VALIDATING_STAGES)}, got {validated_by!r}")
    checks, errors = [], []
    for i, check in enumerate(spec.get("checks") or []):
        try:
            checks.append(_check(check, f"{key}.checks[{i}]", fail))
        except ConfigError as exc:  # the other checks are still checked
            errors.append(exc)
    if errors:
        raise CheckErrors(errors)
    return TableSpec(
        name=name,
        date_column=date_column,
        partition_column=spec.get("partition_column") or date_column,
        lookback_days=lookback,
        optional=optional,
        checks=tuple(checks),
        validated_by=validated_by,
    )


def _check(spec: Any, key: str, fail: Any) -> Check:
    _check_common(spec, key, fail)
    expect = spec.get("expect")
    if expect not in TABLE_CHECKS:
        fail(f"{key}.expect", f"unknown check {expect!r}; known: {', '.join(TABLE_CHECKS)}")
    params = {k: v for k, v in spec.items() if k not in ("expect", "severity", "column", "columns")}
    by_column = expect in ("not_null", "between", "in_set", "unique", "references")
    allowed = (*(("column", "columns") if by_column else ()), *TABLE_CHECK_KEYS[expect])
    _known_keys({k: v for k, v in spec.items() if k != "expect"}, allowed, key, f"a {expect} check", fail)
    if "column" in spec and "columns" in spec:
        fail(f"{key}.columns", "give `column: name` or `columns: [names]`, not both")
    columns = spec.get("columns")
    if spec.get("column") is not None:
        columns = [spec["column"]]
    if by_column:
        if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
            fail(f"{key}.columns", f"{expect} needs `column: name` or `columns: [names]`")
    else:
        columns = []
    if expect == "between":
        if params.get("min") is None and params.get("max") is None:
            fail(key, "between needs min, max or both")
        for bound in ("min", "max"):
            value = params.get(bound)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float | date)):
                fail(f"{key}.{bound}", f"must be a number (or a date), got {value!r}")
        low, high = params.get("min"), params.get("max")
        if low is not None and high is not None:
            if type(low) is not type(high) and not all(isinstance(v, int | float) for v in (low, high)):
                fail(f"{key}.max", f"must be of the same kind as min, got {low!r} and {high!r}")
            if low > high:
                fail(f"{key}.max", f"must not be below min, got min {low!r} and max {high!r}")
    if expect == "in_set" and not isinstance(params.get("values"), list):
        fail(f"{key}.values", "in_set needs a list of values")
    if expect == "min_rows" and not _count(params.get("value")):
        fail(f"{key}.value", "min_rows needs a non-negative integer value")
    if expect == "row_count_change" and not (
        isinstance(params.get("tolerance"), int | float) and params["tolerance"] >= 0
    ):
        fail(f"{key}.tolerance", "row_count_change needs a non-negative tolerance, e.g. 0.5 for +-50%")
    if expect == "references":
        if len(columns) != 1:
            fail(f"{key}.column", "references checks one column")
        for required in ("table", "parent_column"):
            if not isinstance(params.get(required), str):
                fail(f"{key}.{required}", "is required for references")
        if params.get("where") is not None:
            expressions.parse(str(params["where"]), source=f"{key}.where")
    if expect == "reject_rate":
        if not isinstance(params.get("per_source") or {}, Mapping):
            fail(f"{key}.per_source", "must map source names to fractions in [0, 1]")
        if "min_rows_read" in params and not _count(params["min_rows_read"]):
            fail(f"{key}.min_rows_read", f"must be a non-negative integer, got {params['min_rows_read']!r}")
        rates = [params.get("max"), *(params.get("per_source") or {}).values()]
        if not all(isinstance(r, int | float) and 0 <= r <= 1 for r in rates):
            fail(f"{key}.max", "reject_rate needs max (and per_source values) as fractions in [0, 1]")
    return Check(expect=expect, severity=spec.get("severity", "critical"), columns=tuple(columns), params=params)


def suite_names(config: Config, spec: QualitySpec) -> list[str]:
    """Every suite the configuration defines (raw ones for every configured source)."""
    return [*(f"{RAW_PREFIX}{name}" for name in config.sources), *spec.tables]


def selected(names: Sequence[str], patterns: Sequence[str] | None) -> list[str]:
    """Suite names matching any of `patterns` (exact names or globs like `raw.*`); all when None."""
    if not patterns:
        return list(names)
    unknown = [p for p in patterns if not any(fnmatch(n, p) for n in names)]
    if unknown:
        raise PipelineError(f"unknown quality suite(s) {unknown}; known: {', '.join(names)}")
    return [n for n in names if any(fnmatch(n, p) for p in patterns)]
