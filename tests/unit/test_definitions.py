"""The definition envelope (jobs.definitions): every family of the repository loads through the
one loader, envelope mistakes are all reported with file:line:column, and the generated JSON
Schemas are current, accept the repository files and reject broken ones."""

from __future__ import annotations

import datetime
import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from jobs import definitions
from jobs.campaigns import CampaignSettings
from jobs.cli import main
from jobs.config import DEFAULT_CONF_DIR, ConfigError, load_config
from jobs.definitions import (
    SCHEMA_DIR,
    DefinitionError,
    Family,
    families,
    load_definitions,
    read_definitions,
    schemas,
    stale_schemas,
    unique,
)
from jobs.loyalty import LoyaltySettings
from jobs.segments import SEGMENT, Segment, SegmentRules
from jobs.settings import load_settings
from jobs.templates import MISSION_TEMPLATE

pytestmark = pytest.mark.unit

ROOT = DEFAULT_CONF_DIR.parent
KINDS = {"mission_template", "badge", "segment", "audience", "tier", "quality_suite"}


def family_files(family: Family) -> list[Path]:
    return sorted(ROOT.glob(family.location))


def as_json(value):
    """A YAML document as JSON has it (dates as text), the way an editor validates it."""
    return json.loads(json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime.date) else v))


def test_there_is_one_family_per_kind():
    assert {f.kind.name for f in families()} == KINDS == set(definitions.KINDS)
    assert all(family_files(f) for f in families())


@pytest.mark.parametrize("family", families(), ids=lambda f: f.kind.name)
def test_every_repository_definition_loads_through_the_one_loader(family):
    problems: list[str] = []
    definitions = []
    for path in family_files(family):
        definitions += read_definitions(path, [family.kind], problems, key=family.key, id_is_file_name=not family.key)
    definitions = unique(definitions, problems)
    assert problems == []
    # what the files hold, read with plain YAML
    expected = []
    for path in family_files(family):
        data = yaml.safe_load(path.read_text())
        for item in data[family.key] if family.key else [data]:
            expected.append((item["id"], item["name"], item["version"], family.kind.name, item["spec"]))
    assert [(d.id, d.name, d.version, d.kind, as_json(d.spec)) for d in definitions] == [
        (i, n, v, k, as_json(s)) for i, n, v, k, s in expected
    ]
    assert all(d.line >= 1 and Path(d.file).exists() for d in definitions)


def test_the_typed_objects_are_built_from_the_specs():
    settings = load_settings(load_config(env="test", environ={}))
    items = yaml.safe_load((DEFAULT_CONF_DIR / "segments.yaml").read_text())["segments"]
    rules = settings.segments
    assert rules.segments == tuple(
        Segment(i["id"], i["spec"]["rule"], i["spec"].get("description", "")) for i in items if "rule" in i["spec"]
    )
    assert rules.default == next(i["id"] for i in items if i["spec"].get("default"))
    assert rules.version == str(max(i["version"] for i in items))
    tiers = yaml.safe_load((DEFAULT_CONF_DIR / "loyalty.yaml").read_text())["tiers"]
    assert settings.loyalty.tiers == tuple((t["id"], t["spec"]["rule"]) for t in tiers)
    audiences = yaml.safe_load((DEFAULT_CONF_DIR / "campaigns.yaml").read_text())["audiences"]
    assert settings.campaigns.audiences == tuple((a["id"], a["spec"]["rule"]) for a in audiences)
    suites = yaml.safe_load((DEFAULT_CONF_DIR / "quality.yaml").read_text())["tables"]
    spec = settings.quality
    assert list(spec.tables) == [s["id"] for s in suites]
    assert [t.date_column for t in spec.tables.values()] == [s["spec"]["date_column"] for s in suites]


BROKEN = """\
segments:
  - id: a
    name: A
    version: 1
    spec: {rule: "risk > 1"}
  - id: b
    name: B
    version: 1
    kind: segment
    spec: {rule: "risk > 2"}
  - id: b
    name: B again
    version: 0
    kind: segment
    spec: {rule: "risk > 3"}
  - id: c
    name: C
    version: "2"
    kind: segmnet
    spec: {rule: "risk > 4"}
  - id: Bad-Id
    name: ""
    version: 1
    kind: segment
    rule: "risk > 5"
    spec: {rule: 5, colour: red}
  - just a string
"""


def test_every_envelope_mistake_of_a_file_is_reported_at_once(tmp_path):
    path = tmp_path / "segments.yaml"
    path.write_text(BROKEN)
    with pytest.raises(DefinitionError) as error:
        load_definitions(path, [SEGMENT], key="segments")
    assert error.value.problems == [
        f"{path}:2:5: missing key(s): kind",
        f"{path}:13:14: version: must be a positive integer, got 0",
        f"{path}:18:15: version: must be a positive integer, got '2'",
        f"{path}:19:11: kind: unknown kind 'segmnet' (known: mission_template, badge, segment, audience, tier, "
        "quality_suite; expected here: 'segment')",
        f"{path}:25:5: unknown key 'rule': a definition has id, name, version, kind, spec "
        "(the kind's own settings go under `spec:`)",
        f"{path}:21:9: id: must be snake_case (lowercase letters, digits, _; a letter first), got 'Bad-Id'",
        f"{path}:22:12: name: must be a non-empty text",
        f"{path}:26:21: spec.colour: unknown key (allowed: rule, default, description)",
        f"{path}:26:18: spec.rule: 5 is not of type 'string'",
        f"{path}:27:5: a definition must be a mapping of id, name, version, kind, spec",
    ]
    # ConfigError too, so callers that report configuration errors list these as well
    assert isinstance(error.value, ConfigError)


def test_a_repeated_id_is_reported_with_both_places(tmp_path):
    path = tmp_path / "segments.yaml"
    path.write_text(BROKEN.split("  - id: c\n")[0].replace("version: 0", "version: 3"))
    with pytest.raises(DefinitionError) as error:
        load_definitions(path, [SEGMENT], key="segments")
    assert error.value.problems == [
        f"{path}:2:5: missing key(s): kind",
        f"{path}:11:9: id: segment 'b' is already defined at {path}:6:9",
    ]


def test_a_file_without_its_list_or_with_a_yaml_error_is_located(tmp_path):
    path = tmp_path / "segments.yaml"
    path.write_text("default: x\n")
    with pytest.raises(DefinitionError, match=r"segments\.yaml:1:1: missing `segments:`, the list of segment"):
        load_definitions(path, [SEGMENT], key="segments")
    path.write_text("segments:\n  a: 1\n")
    with pytest.raises(DefinitionError, match=r"segments\.yaml:2:3: segments: must be a list of segment definitions"):
        load_definitions(path, [SEGMENT], key="segments")
    path.write_text("segments:\n  - id: a\n    id: b\n")
    with pytest.raises(DefinitionError, match=r"segments\.yaml:3:5: invalid YAML: duplicate key 'id'"):
        load_definitions(path, [SEGMENT], key="segments")


def test_config_validate_lists_definition_problems_of_several_files(tmp_path, capsys):
    import shutil

    shutil.copytree(DEFAULT_CONF_DIR, tmp_path / "conf")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    segments = tmp_path / "conf" / "segments.yaml"
    segments.write_text(segments.read_text().replace("    version: 1\n", "    version: -1\n", 1))
    badge = tmp_path / "templates" / "badges" / "comeback.yaml"
    badge.write_text(badge.read_text().replace("kind: badge\n", ""))
    assert main(["--conf-dir", str(tmp_path / "conf"), "--env", "test", "config", "validate"]) == 2
    err = capsys.readouterr().err
    assert f"{segments}:10:14: version: must be a positive integer, got -1" in err
    assert f"{badge}:3:1: missing key(s): kind" in err


# -- JSON Schemas ------------------------------------------------------------------------------


def test_the_committed_schemas_are_current(tmp_path, capsys):
    assert stale_schemas(SCHEMA_DIR) == []
    assert main(["config", "schema", "--check"]) == 0
    assert main(["config", "schema", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(schemas())
    (tmp_path / "tier.schema.json").write_text("{}\n")
    (tmp_path / "old.schema.json").write_text("{}\n")
    assert stale_schemas(tmp_path) == ["tier.schema.json", "old.schema.json"]
    assert main(["config", "schema", "--check", "--out", str(tmp_path)]) == 1
    assert "tier.schema.json, old.schema.json" in capsys.readouterr().err


def schema_of(name: str) -> dict:
    schema = json.loads((SCHEMA_DIR / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


@pytest.mark.parametrize("family", families(), ids=lambda f: f.kind.name)
def test_every_file_names_its_schema_and_the_schema_accepts_it(family):
    for path in family_files(family):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        schema_path = (path.parent / first.partition("$schema=")[2]).resolve()
        assert schema_path.parent == SCHEMA_DIR.resolve()
        expected = f"{family.kind.name}.schema.json" if family.key is None else f"{path.stem}.schema.json"
        assert schema_path.name == expected
        jsonschema.validate(as_json(yaml.safe_load(path.read_text())), schema_of(schema_path.name))


@pytest.mark.parametrize(
    ("schema", "document", "message"),
    [
        ("segments.schema.json", {"segments": [{"id": "a", "name": "A", "version": 0, "kind": "segment", "spec": {}}]},
         "0 is less than the minimum of 1"),
        ("segments.schema.json", {"segments": [{"id": "a", "name": "A", "version": 1, "spec": {}}]},
         "'kind' is a required property"),
        ("tier.schema.json", {"id": "gold", "name": "Gold", "version": 1, "kind": "badge", "spec": {"rule": "true"}},
         "'tier' was expected"),
        ("audience.schema.json", {"id": "x", "name": "X", "version": 1, "kind": "audience", "spec": {}},
         "'rule' is a required property"),
        ("quality.schema.json",
         {"tables": [{"id": "t", "name": "T", "version": 1, "kind": "quality_suite",
                      "spec": {"date_column": "d", "checks": [{"expect": "distinct"}]}}]},
         "'distinct' is not one of"),
    ],
)  # fmt: skip
def test_the_schemas_reject_broken_definitions(schema, document, message):
    with pytest.raises(jsonschema.ValidationError, match=message):
        jsonschema.validate(document, schema_of(schema))


def test_the_mission_template_schema_rejects_what_the_loader_rejects(tmp_path):
    path = ROOT / "templates" / "missions" / "daily_usage_streak.yaml"
    broken = yaml.safe_load(path.read_text())
    broken["spec"]["category"] = "fun"
    del broken["spec"]["priority"]
    errors = sorted(e.message for e in jsonschema.Draft202012Validator(schema_of("mission_template.schema.json"))
                    .iter_errors(as_json(broken)))  # fmt: skip
    assert errors == ["'fun' is not one of ['onboarding', 'engagement', 'revenue', 'loyalty', 'correction']",
                      "'priority' is a required property"]  # fmt: skip
    copy = tmp_path / "daily_usage_streak.yaml"
    copy.write_text(yaml.safe_dump(broken, sort_keys=False))
    problems: list[str] = []
    read_definitions(copy, [MISSION_TEMPLATE], problems)
    assert [p.partition(": ")[2] for p in problems] == [
        "spec: 'priority' is a required property",
        "spec.category: 'fun' is not one of onboarding, engagement, revenue, loyalty, correction",
    ]


def test_rule_sets_carry_the_highest_version_of_their_definitions(tmp_path):
    (tmp_path / "segments.yaml").write_text(
        textwrap.dedent(
            """\
            segments:
              - {id: a, name: A, version: 3, kind: segment, spec: {rule: "risk > 1"}}
              - {id: b, name: B, version: 1, kind: segment, spec: {default: true}}
            """
        )
    )
    assert SegmentRules.load(tmp_path / "segments.yaml", ["risk"]).version == "3"
    (tmp_path / "campaigns.yaml").write_text("score_thresholds: []\n")  # no audiences: allowed
    assert CampaignSettings.load(tmp_path / "campaigns.yaml", ["risk"], ["risk"]).audiences == ()
    (tmp_path / "loyalty.yaml").write_text("tiers: []\n")
    with pytest.raises(DefinitionError, match=r"loyalty\.yaml:1:1: tiers: needs at least one tier"):
        LoyaltySettings.load(tmp_path / "loyalty.yaml", ["risk"])
