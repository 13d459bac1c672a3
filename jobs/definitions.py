"""Definitions: mission templates, badges, segments, audiences, loyalty tiers and quality
suites share one envelope::

    id: snake_case_id        unique among the definitions of its kind
    name: Human readable     shown in catalogs and reports
    version: 1               a positive integer, raised when the meaning changes
    kind: segment            what the spec describes (see KINDS)
    spec: {...}              the kind's own settings, checked against the kind's JSON Schema

A file holds one definition (templates/missions/*.yaml, templates/badges/*.yaml, the id equal
to the file name) or a list of them under one key of a configuration file (`segments:` of
conf/segments.yaml, `audiences:` of conf/campaigns.yaml, `tiers:` of conf/loyalty.yaml, `tables:`
of conf/quality.yaml). `read_definitions` parses them with their line numbers, checks the
envelope and the spec's shape (the kind's JSON Schema, also written to docs/schemas/ for
editors by `gamify config schema`) and returns every problem at once, each as
`file:line:column: message`. The domain loaders then check what a schema cannot (rules in the
expression language, names of other definitions) and build their typed objects.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from jobs.config import RESOURCE_ROOT, ConfigError, compose_yaml, parse_yaml

ENVELOPE = ("id", "name", "version", "kind", "spec")
KINDS = ("mission_template", "badge", "segment", "audience", "tier", "quality_suite")  # see families()
ID = re.compile(r"^[a-z][a-z0-9_]*$")
ID_PATTERN = ID.pattern
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_DIR = RESOURCE_ROOT / "docs" / "schemas"  # the committed copy the YAML files reference


class DefinitionError(ConfigError):
    """Every problem found in a set of definitions, one `file:line:column: message` per line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        first = self.problems[0] if self.problems else "-"
        self.file, self.key, self.message = first.partition(":")[0], "-", "\n".join(self.problems)
        ValueError.__init__(self, self.message)


@dataclass(frozen=True)
class Kind:
    """A kind of definition: its name in `kind:`, a one-line description and the JSON Schema
    of its `spec` (the single source of the spec's shape for the loader and for editors)."""

    name: str
    title: str
    spec_schema: Mapping[str, Any]


@dataclass(frozen=True)
class Definition:
    """One definition as written, with where it came from (1-based line and column of its
    first key)."""

    id: str
    name: str
    version: int
    kind: str
    spec: Mapping[str, Any]
    file: str
    line: int
    column: int = 1
    node: yaml.Node | None = field(default=None, compare=False, repr=False)

    def position(self, *keys: str | int) -> tuple[int, int]:
        """Line and column where the value at `keys` inside the spec starts (the definition's
        own position when absent)."""
        spec = _child(self.node, "spec")
        found = value_node(spec, keys) if spec is not None else None
        return node_position(found) if found is not None else (self.line, self.column)

    @property
    def id_position(self) -> tuple[int, int]:
        found = _child(self.node, "id")
        return node_position(found) if found is not None else (self.line, self.column)

    def problem(self, keys: Sequence[str | int], message: str) -> str:
        """`file:line:column: spec.key: message` for a problem of the value at `keys`."""
        line, column = self.position(*keys)
        return f"{self.file}:{line}:{column}: {dotted(('spec', *keys))}: {message}"


def dotted(keys: Iterable[str | int]) -> str:
    text = ""
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


def value_node(root: yaml.Node | None, keys: Sequence[str | int]) -> yaml.Node | None:
    """The node of a (nested) key's value; an int key indexes a list; None when absent."""
    node = root
    for key in keys:
        if isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            node = node.value[key] if 0 <= key < len(node.value) else None
        elif isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(key)), None)
        else:
            return None
    return node


def node_position(node: yaml.Node) -> tuple[int, int]:
    """1-based line and column where a value's text starts (inside the quotes of a quoted scalar)."""
    quoted = getattr(node, "style", None) in ("'", '"')
    return node.start_mark.line + 1, node.start_mark.column + 1 + (1 if quoted else 0)


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    return value_node(node, (key,))


def _json_ready(value: Any) -> Any:
    """YAML values as a JSON document has them (dates as ISO strings), for schema validation."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


# -- the envelope's JSON Schema ------------------------------------------------------------------


def definition_schema(kind: Kind) -> dict[str, Any]:
    """The JSON Schema of one definition of `kind`: the envelope with the kind's spec."""
    return {
        "type": "object",
        "title": kind.title,
        "required": list(ENVELOPE),
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": ID_PATTERN, "description": "snake_case, unique within the kind"},
            "name": {"type": "string", "minLength": 1, "description": "human-readable name"},
            "version": {"type": "integer", "minimum": 1, "description": "raised when the meaning changes"},
            "kind": {"const": kind.name},
            "spec": {"type": "object", **kind.spec_schema},
        },
    }


@dataclass(frozen=True)
class Family:
    """Where the definitions of a kind live: one per file in a folder (key None) or a list
    under `key` of one configuration file."""

    kind: Kind
    location: str  # as the README names it: templates/missions/*.yaml, conf/segments.yaml
    key: str | None = None
    required: bool = True  # the file must have `key` (else: no definitions of the kind)

    @property
    def schema_files(self) -> dict[str, dict[str, Any]]:
        """Schema file name -> JSON Schema: the kind's (one definition) and, for a list in a
        configuration file, the file's."""
        schemas = {f"{self.kind.name}.schema.json": self._schema(f"{self.kind.name}.schema.json", None)}
        if self.key is not None:
            name = f"{Path(self.location).stem}.schema.json"
            schemas[name] = self._schema(name, self.key)
        return schemas

    def _schema(self, name: str, key: str | None) -> dict[str, Any]:
        header = {"$schema": SCHEMA_DIALECT, "$id": name}
        if key is None:
            return {**header, **definition_schema(self.kind)}
        return {
            **header,
            "type": "object",
            "title": f"{self.location}: {self.kind.name} definitions under `{key}`, beside the file's other settings",
            **({"required": [key]} if self.required else {}),
            "properties": {key: {"type": "array", "items": {"$ref": "#/$defs/definition"}}},
            "$defs": {"definition": definition_schema(self.kind)},
        }


def families() -> list[Family]:
    """Every family of definitions, in the order the README lists them."""
    from jobs.badges import BADGE
    from jobs.campaigns import AUDIENCE
    from jobs.loyalty import TIER
    from jobs.quality.spec import QUALITY_SUITE
    from jobs.segments import SEGMENT
    from jobs.templates import MISSION_TEMPLATE

    return [
        Family(MISSION_TEMPLATE, "templates/missions/*.yaml"),
        Family(BADGE, "templates/badges/*.yaml"),
        Family(SEGMENT, "conf/segments.yaml", "segments"),
        Family(AUDIENCE, "conf/campaigns.yaml", "audiences", required=False),
        Family(TIER, "conf/loyalty.yaml", "tiers"),
        Family(QUALITY_SUITE, "conf/quality.yaml", "tables", required=False),
    ]


def schemas() -> dict[str, dict[str, Any]]:
    """Every schema file docs/schemas/ holds: file name -> JSON Schema."""
    return {name: schema for family in families() for name, schema in family.schema_files.items()}


def render_schema(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def write_schemas(out: str | Path) -> list[Path]:
    """Write every schema file into `out`; the written paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        (out / name).write_text(render_schema(schema), encoding="utf-8")
        written.append(out / name)
    return written


def stale_schemas(out: str | Path) -> list[str]:
    """Schema files of `out` that are missing or differ from what the code generates, and
    *.schema.json files it holds that the code no longer generates."""
    out = Path(out)
    expected = schemas()
    stale = [
        name
        for name, schema in expected.items()
        if not (out / name).exists() or (out / name).read_text(encoding="utf-8") != render_schema(schema)
    ]
    stale += sorted(p.name for p in out.glob("*.schema.json") if p.name not in expected)
    return stale


# -- the loader ------------------------------------------------------------------------------


def read_definitions(
    path: str | Path,
    kinds: Sequence[Kind],
    problems: list[str],
    *,
    key: str | None = None,
    id_is_file_name: bool = False,
    required: bool = True,
) -> list[Definition]:
    """The definitions of one file, each with a valid envelope and a spec of its kind's shape;
    every problem is appended to `problems` as `file:line:column: message` and its definition
    left out. `key` None: the file is one definition (or a list of them); otherwise the list
    under `key` of a mapping (which may be absent when not `required`: no definitions)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = parse_yaml(text, path)  # duplicate keys, aliases and oversized files are refused
        root = compose_yaml(text)
    except OSError as exc:
        problems.append(f"{path}:1:1: cannot read: {type(exc).__name__}")
        return []
    except ConfigError as exc:
        problems.append(_located(exc, path))
        return []
    if root is None:
        problems.append(f"{path}:1:1: empty file: expected {_expected(kinds, key)}")
        return []
    node = root
    if key is not None:
        node = _child(root, key) if isinstance(root, yaml.MappingNode) else None
        if node is None and not required and isinstance(root, yaml.MappingNode):
            return []
        if node is None:
            line, column = node_position(root)
            problems.append(f"{path}:{line}:{column}: missing `{key}:`, the list of {_plural(kinds)}")
            return []
        if not isinstance(node, yaml.SequenceNode):
            line, column = node_position(node)
            problems.append(f"{path}:{line}:{column}: {key}: must be a list of {_plural(kinds)}")
            return []
        data = data[key]
    pairs = zip(node.value, data, strict=True) if isinstance(node, yaml.SequenceNode) else [(node, data)]
    definitions = []
    for item, values in pairs:
        definition = _read_one(path, item, values, kinds, problems)
        if definition is None:
            continue
        if id_is_file_name and definition.id != path.stem:
            line, column = node_position(_child(item, "id") or item)
            problems.append(f"{path}:{line}:{column}: id: {definition.id!r} does not match the file name {path.stem!r}")
            continue
        definitions.append(definition)
    return definitions


def read_definition_files(
    paths: Iterable[str | Path], kinds: Sequence[Kind], problems: list[str], *, id_is_file_name: bool = False
) -> list[Definition]:
    """The definitions of several one-definition files (a templates folder), ids unique per kind."""
    definitions = []
    for path in paths:
        definitions += read_definitions(path, kinds, problems, id_is_file_name=id_is_file_name)
    return unique(definitions, problems)


def unique(definitions: Sequence[Definition], problems: list[str]) -> list[Definition]:
    """The definitions whose id is not taken by an earlier one of the same kind; a repeat is a problem."""
    first: dict[tuple[str, str], Definition] = {}
    kept = []
    for d in definitions:
        seen = first.get((d.kind, d.id))
        if seen is not None:
            (line, column), (first_line, first_column) = d.id_position, seen.id_position
            problems.append(
                f"{d.file}:{line}:{column}: id: {d.kind} {d.id!r} is already defined at "
                f"{seen.file}:{first_line}:{first_column}"
            )
            continue
        first[(d.kind, d.id)] = d
        kept.append(d)
    return kept


def load_definitions(
    path: str | Path, kinds: Sequence[Kind], *, key: str | None = None, id_is_file_name: bool = False
) -> list[Definition]:
    """`read_definitions` of one file with ids unique per kind; raise DefinitionError listing
    every problem."""
    problems: list[str] = []
    definitions = unique(read_definitions(path, kinds, problems, key=key, id_is_file_name=id_is_file_name), problems)
    if problems:
        raise DefinitionError(problems)
    return definitions


def _read_one(path: Path, node: yaml.Node, data: Any, kinds: Sequence[Kind], problems: list[str]) -> Definition | None:
    line, column = node_position(node)
    if not isinstance(node, yaml.MappingNode) or not isinstance(data, dict):
        problems.append(f"{path}:{line}:{column}: a definition must be a mapping of {', '.join(ENVELOPE)}")
        return None
    start = len(problems)
    known = {k.name: k for k in kinds}
    missing = [k for k in ENVELOPE if k not in data]
    if missing:
        problems.append(f"{path}:{line}:{column}: missing key(s): {', '.join(missing)}")
    for k in data:
        if k not in ENVELOPE:
            at = node_position(next(kn for kn, _ in node.value if kn.value == str(k)))
            problems.append(
                f"{path}:{at[0]}:{at[1]}: unknown key {k!r}: a definition has {', '.join(ENVELOPE)}"
                " (the kind's own settings go under `spec:`)"
            )

    def bad(key: str, message: str) -> None:
        at = node_position(_child(node, key) or node)
        problems.append(f"{path}:{at[0]}:{at[1]}: {key}: {message}")

    if "id" in data and (not isinstance(data["id"], str) or not ID.match(data["id"])):
        bad("id", f"must be snake_case (lowercase letters, digits, _; a letter first), got {data['id']!r}")
    if "name" in data and (not isinstance(data["name"], str) or not data["name"].strip()):
        bad("name", "must be a non-empty text")
    if "version" in data and (
        not isinstance(data["version"], int) or isinstance(data["version"], bool) or data["version"] < 1
    ):
        bad("version", f"must be a positive integer, got {data['version']!r}")
    kind = known.get(data.get("kind")) if isinstance(data.get("kind"), str) else None
    if "kind" in data and kind is None:
        expected = " or ".join(repr(k) for k in known)
        if data["kind"] in KINDS:
            bad("kind", f"a {data['kind']} does not belong in this file (expected {expected})")
        else:
            bad("kind", f"unknown kind {data['kind']!r} (known: {', '.join(KINDS)}; expected here: {expected})")
    if "spec" in data:
        if not isinstance(data["spec"], Mapping):
            bad("spec", "must be a mapping")
        elif kind is not None:
            problems.extend(_spec_problems(path, node, kind, data["spec"]))
    if len(problems) > start:
        return None
    return Definition(
        id=data["id"],
        name=data["name"],
        version=data["version"],
        kind=data["kind"],
        spec=data["spec"],
        file=str(path),
        line=line,
        column=column,
        node=node,
    )


def _spec_problems(path: Path, node: yaml.Node, kind: Kind, spec: Mapping[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator({"type": "object", **kind.spec_schema})
    spec_node = _child(node, "spec")
    problems = []
    for error in sorted(validator.iter_errors(_json_ready(spec)), key=lambda e: [str(p) for p in e.absolute_path]):
        keys = list(error.absolute_path)
        if error.validator == "additionalProperties":  # each unknown key where it is written
            allowed = ", ".join(error.schema.get("properties", {}))
            parent = value_node(spec_node, keys)
            for extra in (k for k in error.instance if k not in error.schema.get("properties", {})):
                key_node = next((k for k, _ in getattr(parent, "value", []) if k.value == extra), parent)
                line, column = node_position(key_node) if key_node is not None else node_position(node)
                problems.append(
                    f"{path}:{line}:{column}: {dotted(('spec', *keys, extra))}: unknown key (allowed: {allowed})"
                )
            continue
        found = value_node(spec_node, keys) or spec_node
        line, column = node_position(found) if found is not None else node_position(node)
        problems.append(f"{path}:{line}:{column}: {dotted(('spec', *keys))}: {_message(error)}")
    return problems


def _message(error: jsonschema.ValidationError) -> str:
    """A schema error in the words of a configuration message."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        options = "; or ".join(dict.fromkeys(e.message for e in error.context))
        return f"{error.instance!r} is not valid: {options}"
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    return error.message


def _located(exc: ConfigError, path: Path) -> str:
    """A YAML syntax error (`line L, column C` in its key) as `file:L:C: message`."""
    match = re.match(r"line (\d+), column (\d+)", exc.key)
    return f"{path}:{match[1]}:{match[2]}: {exc.message}" if match else f"{path}:1:1: {exc.message}"


def _plural(kinds: Sequence[Kind]) -> str:
    return " or ".join(f"{k.name} definitions" for k in kinds)


def _expected(kinds: Sequence[Kind], key: str | None) -> str:
    return f"`{key}:`, the list of {_plural(kinds)}" if key else f"a {' or '.join(k.name for k in kinds)} definition"


def newest_version(definitions: Iterable[Definition]) -> int:
    """The highest version among a set of definitions (1 for none): the version of a rule set."""
    return max((d.version for d in definitions), default=1)
