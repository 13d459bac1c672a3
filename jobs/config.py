"""Configuration: YAML files under conf/, environment overlays, ${ENV} interpolation, validation.

Layout::

    conf/base.yaml            lakehouse, spark, operator, privacy, ingest settings
    conf/sources/*.yaml       one data source per file (see docs in README)
    conf/env/<env>.yaml       overlay merged over the above (GAMIFY_ENV or --env, default local)

`${VAR}` is replaced by the environment variable VAR (an error if unset), `${VAR:-default}`
falls back to the default. Secrets only ever arrive this way. Every error names the file,
the key and what is wrong.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_PACKAGE = Path(__file__).resolve().parent
# an installed wheel carries conf/ templates/ sql/ under jobs/_resources; a checkout has them beside jobs/
RESOURCE_ROOT = _PACKAGE / "_resources" if (_PACKAGE / "_resources" / "conf").is_dir() else _PACKAGE.parent
DEFAULT_CONF_DIR = RESOURCE_ROOT / "conf"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    def __init__(self, file: str | Path, key: str, message: str) -> None:
        self.file, self.key, self.message = str(file), key, message
        super().__init__(f"{file}: {key}: {message}")


class SettingsError(ValueError):
    """Every problem found in the configuration and template files (jobs.settings), one per line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} configuration problem(s):\n" + "\n".join(self.problems))


@dataclass
class Config:
    """The merged configuration plus where each key came from (for error messages)."""

    data: dict[str, Any]
    origin: dict[str, str] = field(default_factory=dict)
    conf_dir: Path = DEFAULT_CONF_DIR
    env: str = "local"

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def require(self, dotted: str) -> Any:
        value = self.get(dotted)
        if value is None or value == "":
            raise ConfigError(self.file_of(dotted), dotted, "is required")
        return value

    def file_of(self, dotted: str) -> str:
        while dotted:
            if dotted in self.origin:
                return self.origin[dotted]
            dotted = dotted.rpartition(".")[0]
        return str(self.conf_dir / "base.yaml")

    @property
    def sources(self) -> dict[str, dict[str, Any]]:
        return self.data.get("sources", {})


MAX_YAML_BYTES = 1_000_000  # a configuration file is small; anything bigger is a mistake or an attack


class StrictLoader(yaml.SafeLoader):
    """Safe YAML without the traps: duplicate keys are errors (not "last one wins") and
    aliases are refused (a few hundred bytes of nested aliases expand to gigabytes)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.constructor.ConstructorError(
                None, None, "aliases (*name) are not allowed in configuration files; repeat the value", mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                continue  # unhashable: the base constructor reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first defined on line {seen[key]})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, path: str | Path) -> Any:
    """YAML text of a configuration file, strictly parsed (see StrictLoader). A text already
    parsed in this process is not parsed again (the stages of a run read the same files): the
    caller gets its own copy."""
    if len(text.encode("utf-8", errors="replace")) > MAX_YAML_BYTES:
        raise ConfigError(path, "-", f"file is larger than {MAX_YAML_BYTES:,} bytes")
    return copy.deepcopy(_parsed(text, str(path)))


def compose_yaml(text: str) -> yaml.Node:
    """The node tree of a YAML text already accepted by `parse_yaml` (for line:column
    positions); parsed once per text in this process. The tree is shared: read it only."""
    return _composed(text)


@functools.lru_cache(maxsize=1024)
def _composed(text: str) -> yaml.Node:
    return yaml.compose(text, Loader=StrictLoader)


@functools.lru_cache(maxsize=1024)
def _parsed(text: str, path: str) -> Any:
    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError(path, where, f"invalid YAML: {getattr(exc, 'problem', exc)}") from exc


def load_yaml(path: Path) -> Any:
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(path, "-", f"file is larger than {MAX_YAML_BYTES:,} bytes")
        return parse_yaml(path.read_text(encoding="utf-8"), path)
    except OSError as exc:
        raise ConfigError(path, "-", f"cannot read: {type(exc).__name__}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise ConfigError(path, where, f"invalid YAML: {getattr(exc, 'problem', exc)}") from exc


def load_config(
    conf_dir: str | Path | None = None,
    env: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Load base.yaml + sources/*.yaml + env/<env>.yaml (+ overrides), interpolate, validate."""
    conf_dir = Path(conf_dir or os.environ.get("GAMIFY_CONF_DIR") or DEFAULT_CONF_DIR)
    env = env or os.environ.get("GAMIFY_ENV") or "local"
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    origin: dict[str, str] = {}

    base = conf_dir / "base.yaml"
    if not base.exists():
        raise ConfigError(base, "-", "file not found")
    _merge(data, _expect_mapping(load_yaml(base), base), origin, str(base))

    sources: dict[str, Any] = {}
    for path in sorted((conf_dir / "sources").glob("*.yaml")):
        source = _expect_mapping(load_yaml(path), path)
        name = source.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(path, "name", "every source needs a name")
        if name in sources:
            raise ConfigError(path, "name", f"source {name!r} is defined twice")
        sources[name] = source
        _record_origin(source, f"sources.{name}", origin, str(path))
    data["sources"] = sources

    overlay = conf_dir / "env" / f"{env}.yaml"
    if not overlay.exists():
        known = sorted(p.stem for p in (conf_dir / "env").glob("*.yaml"))
        raise ConfigError(overlay, "env", f"unknown environment {env!r} (known: {', '.join(known)})")
    _merge(data, _expect_mapping(load_yaml(overlay) or {}, overlay), origin, str(overlay))
    if overrides:
        _merge(data, _unflatten(overrides), origin, "<overrides>")

    data = _interpolate(data, "", origin, environ)
    config = Config(data=data, origin=origin, conf_dir=conf_dir, env=env)
    validate(config)
    return config


# `_key`, and the dotted keys of Spark/Hadoop settings: fs.s3a.secret.key, fs.s3a.access.key,
# fs.azure.account.key.<account>.dfs.core.windows.net, ...
SECRET_KEY = re.compile(
    r"(password|passwd|pwd|secret|token|api[._-]?key|access[._-]?key|account[._-]?key|private[._-]?key"
    r"|credentials?|[._-]key)$|\.account\.key\.",
    re.IGNORECASE,
)
# user:password@ in a URL, and password=... in a URL query or JDBC options
URL_PASSWORD = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9+.\-]*://[^/:@\s]*):(?P<secret>[^@/\s]+)@")
QUERY_PASSWORD = re.compile(r"(?P<prefix>(?:password|passwd|pwd|secret|token)=)(?P<secret>[^;&\s]+)", re.IGNORECASE)
DEMO_SECRET_SUFFIX = "-not-secret"  # the only literal a secret's ${VAR:-default} may hold


def _expect_mapping(value: Any, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(path, "-", "top level must be a mapping")
    _refuse_secret_literals(value, path, "")
    return value


def _refuse_secret_literals(value: Any, path: Path, dotted: str) -> None:
    """Secret-looking keys must be ${ENV} references (a default only for a demo value ending in
    -not-secret), and no URL may carry a literal password: the repo never holds a secret."""
    if isinstance(value, Mapping):
        for key, child in value.items():
            child_key = f"{dotted}.{key}" if dotted else str(key)
            if SECRET_KEY.search(str(key)) and isinstance(child, str | int | float) and not isinstance(child, bool):
                text = child.strip() if isinstance(child, str) else ""
                _require_reference(
                    text, path, child_key, "secrets must be ${ENV_VAR} references, not literal values", "a secret"
                )
            _refuse_secret_literals(child, path, child_key)
    elif isinstance(value, list):
        for i, child in enumerate(value):
            _refuse_secret_literals(child, path, f"{dotted}[{i}]")
    elif isinstance(value, str):
        for pattern in (URL_PASSWORD, QUERY_PASSWORD):
            for match in pattern.finditer(value):
                literal = "a URL must not carry a literal password; use a ${ENV_VAR} reference"
                _require_reference(match.group("secret"), path, dotted, literal, "a URL password")


def _require_reference(text: str, path: Path, key: str, literal: str, what: str) -> None:
    """`text` must be a ${VAR} reference whose default, if any, is a demo value."""
    reference = _ENV_REF.fullmatch(text)
    if reference is None:
        raise ConfigError(path, key, literal)
    default = reference.group(2)
    if default and not default.endswith(DEMO_SECRET_SUFFIX):
        raise ConfigError(
            path,
            key,
            f"{what}'s ${{VAR:-default}} must not hold a real value "
            f"(only a demo value ending in {DEMO_SECRET_SUFFIX!r}, or no default)",
        )


def _merge(
    target: dict[str, Any], overlay: Mapping[str, Any], origin: dict[str, str], file: str, prefix: str = ""
) -> None:
    for key, value in overlay.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value, origin, file, f"{dotted}.")
        else:
            target[key] = value
            _record_origin(value, dotted, origin, file)


def _record_origin(value: Any, dotted: str, origin: dict[str, str], file: str) -> None:
    origin[dotted] = file
    if isinstance(value, Mapping):
        for key, child in value.items():
            _record_origin(child, f"{dotted}.{key}", origin, file)


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _interpolate(value: Any, dotted: str, origin: dict[str, str], environ: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{dotted}.{k}" if dotted else k, origin, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{dotted}[{i}]", origin, environ) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ and environ[name] != "":
            return environ[name]
        if default is not None:
            return default
        file = origin.get(dotted) or origin.get(dotted.rpartition(".")[0], "conf")
        raise ConfigError(file, dotted, f"environment variable {name} is not set")

    return _ENV_REF.sub(substitute, value)


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
PLACEHOLDERS = ("ds", "ds_nodash", "prev_month", "raw_root")


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Substitute `{name}` placeholders by plain lookup: no attribute access, indexing or format
    specs (`{ds.__class__}` is an unknown placeholder, not Python evaluated)."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise ValueError(f"unknown placeholder {{{match.group(1)}}} (known: {', '.join(sorted(values))})")
        return values[match.group(1)]

    return _PLACEHOLDER.sub(substitute, template)


def path_template_problem(template: str) -> str | None:
    """Why an extract path template could leave raw_root (or use an unknown placeholder)."""
    unknown = [p for p in _PLACEHOLDER.findall(template) if p not in PLACEHOLDERS]
    if unknown:
        return f"unknown placeholder(s) {', '.join('{' + p + '}' for p in unknown)} (known: {', '.join(PLACEHOLDERS)})"
    if not template.startswith("{raw_root}/"):
        return "must start with {raw_root}/ (extracts are read under raw.root only)"
    rest = template[len("{raw_root}/") :]
    if "{raw_root}" in rest:
        return "{raw_root} may only start the path"
    if "://" in rest or re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", rest):
        return "must not contain a URI scheme"
    if any(part in ("..", ".") for part in re.split(r"[/\\]", rest)) or "\\" in rest or rest.startswith("/"):
        return "must not contain '..', '.', backslashes or an absolute path"
    if "{" in _PLACEHOLDER.sub("", rest) or "}" in _PLACEHOLDER.sub("", rest):
        return "unbalanced braces"
    return None


# -- validation -------------------------------------------------------------------------------

SOURCE_KINDS = ("cdr", "billing", "crm", "app", "network", "dwh", "xiva")
FREQUENCIES = ("hourly", "daily", "weekly", "monthly")
FORMATS = ("csv", "json", "parquet", "jdbc")
CONTRACT_TYPES = re.compile(r"^(string|int|long|double|boolean|date|timestamp|decimal\(\d+,\s*\d+\))$")
# The badges stage walks a snapshot's open days (the run date and the lateness window) in one
# fold of at most 31 days (jobs.lifetime.MAX_FOLD_DAYS)
MAX_LATENESS_DAYS = 30
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def validate(config: Config) -> None:
    """Check the merged config; raise ConfigError for the first problem found."""

    def fail(key: str, message: str) -> None:
        raise ConfigError(config.file_of(key), key, message)

    for key in ("lakehouse.root", "operator.country_code", "operator.timezone", "privacy.pseudonymisation_key"):
        config.require(key)
    if not str(config.get("operator.country_code")).isdigit():
        fail("operator.country_code", "must be digits only, e.g. '33'")
    if config.get("lakehouse.engine") not in (None, "delta-spark"):
        fail("lakehouse.engine", "tables are written by delta-spark only: remove the setting")
    for key in ("ingest.max_lateness_days", "ingest.subscriber_lookback_days"):
        value = config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            fail(key, f"must be a non-negative integer, got {value!r}")
    if (lateness := config.get("ingest.max_lateness_days")) > MAX_LATENESS_DAYS:
        fail("ingest.max_lateness_days", f"must be at most {MAX_LATENESS_DAYS} days, got {lateness}")
    small = config.get("spark.small_data")
    if small is not None:
        limit = small.get("max_subscribers") if isinstance(small, Mapping) else None
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            fail("spark.small_data.max_subscribers", f"must be a non-negative integer, got {limit!r}")
        if not isinstance(small.get("conf"), Mapping):
            fail("spark.small_data.conf", "must map Spark SQL settings to their values")
    if not isinstance(config.get("exports.require_gate", True), bool):
        fail("exports.require_gate", "must be true or false")
    share = config.get("subscriber_state.max_changed_share")  # absent: the default of jobs.settings
    if share is not None and (isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1):
        fail("subscriber_state.max_changed_share", f"must be a number between 0 and 1, got {share!r}")
    for name, source in config.sources.items():
        _validate_source(name, source, fail)


def _validate_source(name: str, source: Mapping[str, Any], fail: Any) -> None:
    key = f"sources.{name}"
    if source.get("kind") not in SOURCE_KINDS:
        fail(f"{key}.kind", f"must be one of {', '.join(SOURCE_KINDS)}, got {source.get('kind')!r}")
    if not isinstance(source.get("active", True), bool):
        fail(f"{key}.active", "must be true or false")
    frequency = source.get("sync_frequency")
    if frequency not in FREQUENCIES:
        fail(f"{key}.sync_frequency", f"must be one of {', '.join(FREQUENCIES)}, got {frequency!r}")
    due = source.get("due") or {}
    if frequency == "weekly" and due.get("weekday") not in WEEKDAYS:
        fail(f"{key}.due.weekday", f"weekly sources need due.weekday, one of {', '.join(WEEKDAYS)}")
    if frequency == "monthly" and not (isinstance(due.get("day_of_month"), int) and 1 <= due["day_of_month"] <= 28):
        fail(f"{key}.due.day_of_month", "monthly sources need due.day_of_month between 1 and 28")
    fmt = source.get("format")
    if fmt not in FORMATS:
        fail(f"{key}.format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
    connection = source.get("connection") or {}
    if fmt == "jdbc":
        for field_name in ("url", "query"):
            if not connection.get(field_name):
                fail(f"{key}.connection.{field_name}", "is required for jdbc sources")
    elif "{ds" not in str(connection.get("path", "")):
        fail(f"{key}.connection.path", "must be a path template containing {ds} (or {ds_nodash})")
    elif (problem := path_template_problem(str(connection["path"]))) is not None:
        fail(f"{key}.connection.path", problem)
    contract = source.get("contract")
    if not isinstance(contract, Mapping) or not contract:
        fail(f"{key}.contract", "must map every required column to its type")
    for column, spec in contract.items():
        type_name = spec if isinstance(spec, str) else (spec or {}).get("type")
        if not isinstance(type_name, str) or not CONTRACT_TYPES.match(type_name):
            fail(
                f"{key}.contract.{column}",
                f"unknown type {type_name!r} (string, int, long, double, boolean, date, timestamp, decimal(p,s))",
            )
    subscriber = (source.get("subscriber") or {}).get("column")
    if subscriber not in contract:
        fail(f"{key}.subscriber.column", f"must name a contract column, got {subscriber!r}")
    for column in source.get("natural_key") or []:
        if column not in contract:
            fail(f"{key}.natural_key", f"{column!r} is not a contract column")
    if not source.get("natural_key"):
        fail(f"{key}.natural_key", "must list the columns that identify a raw record")
    mappings = source.get("mappings") or []
    if not isinstance(mappings, list) or (not mappings and not source.get("profile")):
        fail(f"{key}.mappings", "must be a non-empty list of event mappings (or the source feeds a profile:)")
    seen = set()
    for i, mapping in enumerate(mappings):
        mkey = f"{key}.mappings[{i}]"
        for required in ("event_type", "event_subtype"):
            if not mapping.get(required):
                fail(f"{mkey}.{required}", "is required")
        ident = mapping.get("id") or f"{mapping['event_type']}/{mapping['event_subtype']}"
        if ident in seen:
            fail(f"{mkey}.id", f"two mappings produce {ident!r}; give each an id")
        seen.add(ident)
