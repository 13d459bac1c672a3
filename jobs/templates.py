"""Mission templates (templates/missions/*.yaml): loading, validation and catalog expansion.

Every template is a definition (jobs.definitions) of kind `mission_template`: id, name, version,
and a spec of category, description, metric, aggregation, thresholds, periods, segments,
eligibility, reward, badge, priority, cooldown_days, active_from, active_to. Validation collects
every problem of every file, each as `file:line:column: message`, so a template with a typo
never half-runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from jobs import expressions
from jobs.definitions import Definition, DefinitionError, Kind, node_position, read_definition_files, value_node

CATEGORIES = ("onboarding", "engagement", "revenue", "loyalty", "correction")
PERIODS = ("daily", "weekly", "monthly")
LEVELS = ("easy", "medium", "hard")
# Days in each mission period when conf/missions.yaml sets no `period_days`: a monthly mission is
# 30 days whatever the calendar month, so every subscriber gets the same time to reach a target.
DEFAULT_PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 30}
AGGREGATIONS = ("sum", "days", "streak", "max")
PLACEHOLDERS = {"target", "unit", "period", "points"}
SPEC_KEYS = (
    "category", "description", "metric", "aggregation", "thresholds", "periods", "segments", "eligibility",
    "reward", "badge", "priority", "cooldown_days", "active_from", "active_to",
)  # fmt: skip
TemplateError = DefinitionError  # every problem of a set of definitions, one per line

_COUNT = {"type": "integer", "minimum": 0}
_LEVEL_TARGET = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0},
        {
            "type": "object",
            "required": ["relative"],
            "additionalProperties": False,
            "properties": {"relative": {"type": "number", "exclusiveMinimum": 0}, "min": {"type": "number"}},
        },
    ],
    "description": "an absolute target, or {relative: x, min: y}: x times the subscriber's baseline, at least y",
}
_LEVELS = {
    "type": "object",
    "required": list(LEVELS),
    "additionalProperties": False,
    "properties": dict.fromkeys(LEVELS, _LEVEL_TARGET),
}
MISSION_TEMPLATE = Kind(
    "mission_template",
    "Mission template: expanded into missions per segment, level and period",
    {
        "required": list(SPEC_KEYS),
        "additionalProperties": False,
        "properties": {
            "category": {"enum": list(CATEGORIES)},
            "description": {
                "type": "string",
                "description": f"text shown to the subscriber; placeholders {{{'}, {'.join(sorted(PLACEHOLDERS))}}}",
            },
            "metric": {"type": "string", "description": "a mission metric of conf/metrics.yaml"},
            "aggregation": {"enum": list(AGGREGATIONS), "description": "must match the metric's aggregation"},
            "thresholds": {
                "type": "object",
                "description": "the levels (easy, medium, hard), or per period (daily, weekly, monthly) the levels",
                "anyOf": [
                    _LEVELS,
                    {
                        "type": "object",
                        "minProperties": 1,
                        "additionalProperties": False,
                        "properties": dict.fromkeys(PERIODS, _LEVELS),
                    },
                ],
            },
            "periods": {
                "anyOf": [{"enum": list(PERIODS)}, {"type": "array", "minItems": 1, "items": {"enum": list(PERIODS)}}]
            },
            "segments": {
                "anyOf": [{"const": "all"}, {"type": "array", "minItems": 1, "items": {"type": "string"}}],
                "description": "`all` or the segments of conf/segments.yaml the missions are offered to",
            },
            "eligibility": {"type": "string", "description": "a rule in the expression language"},
            "reward": {
                "type": "object",
                "required": ["points"],
                "additionalProperties": False,
                "properties": {
                    "points": {
                        "anyOf": [
                            _COUNT,
                            {
                                "type": "object",
                                "required": list(LEVELS),
                                "additionalProperties": False,
                                "properties": dict.fromkeys(LEVELS, _COUNT),
                            },
                        ]
                    },
                    "offer_id": {
                        "type": ["string", "null"],
                        "description": "an offer of conf/offers.yaml, `nbo` (the next-best offer) or null",
                    },
                },
            },
            "badge": {"type": "string", "description": "the badge type (templates/badges) the mission counts toward"},
            "priority": _COUNT,
            "cooldown_days": _COUNT,
            "active_from": {"type": ["string", "null"], "format": "date"},
            "active_to": {"type": ["string", "null"], "format": "date"},
        },
    },
)


@dataclass(frozen=True)
class MissionMetric:
    name: str
    daily: str
    aggregation: str
    unit: str = ""


@dataclass(frozen=True)
class Threshold:
    level: str
    target: float | None = None  # absolute target
    relative: float | None = None  # multiplier of the subscriber's baseline
    minimum: float = 1.0

    @property
    def is_relative(self) -> bool:
        return self.relative is not None


@dataclass(frozen=True)
class MissionTemplate:
    id: str
    name: str
    version: int
    category: str
    description: str
    metric: str
    aggregation: str
    thresholds: Mapping[str, tuple[Threshold, ...]]  # period -> levels
    periods: tuple[str, ...]
    segments: tuple[str, ...]
    eligibility: str
    points: Mapping[str, int]
    offer_id: str | None
    badge: str
    priority: int
    cooldown_days: int
    active_from: date | None
    active_to: date | None
    file: str = ""
    eligibility_position: tuple[int, int] = (1, 1)

    @property
    def is_personalised(self) -> bool:
        return any(t.is_relative for levels in self.thresholds.values() for t in levels)

    def is_active_on(self, ds: date) -> bool:
        return (self.active_from is None or self.active_from <= ds) and (self.active_to is None or ds <= self.active_to)


@dataclass(frozen=True)
class TemplateSet:
    templates: tuple[MissionTemplate, ...]
    metrics: Mapping[str, MissionMetric] = field(default_factory=dict)

    def active_on(self, ds: date) -> list[MissionTemplate]:
        return [t for t in self.templates if t.is_active_on(ds)]


def load_mission_metrics(metrics_yaml: Path) -> dict[str, MissionMetric]:
    data = yaml.safe_load(metrics_yaml.read_text(encoding="utf-8")) or {}
    return {
        name: MissionMetric(name, spec["daily"], spec["aggregation"], spec.get("unit", ""))
        for name, spec in (data.get("mission_metrics") or {}).items()
    }


def load_templates(
    directory: str | Path,
    metrics: Mapping[str, MissionMetric],
    segments: Iterable[str],
    eligibility_names: Iterable[str],
    badges: Iterable[str] | None = None,
    offers: Iterable[str] | None = None,
    period_days: Mapping[str, int] | None = None,
) -> TemplateSet:
    """Load and validate every template; raise TemplateError listing all problems.

    `badges` and `offers` (catalogue ids), when given, are the names `badge` and
    `reward.offer_id` may take (`offer_id` may also be null or `nbo`, the next-best offer).
    `period_days`: the days of each period (`MissionSettings.period_days`), which a days or
    streak target must fit in; DEFAULT_PERIOD_DAYS when not given."""
    directory = Path(directory)
    files = sorted(directory.glob("*.yaml"))
    problems: list[str] = []
    if not files:
        problems.append(f"{directory}:1:1: no mission templates (*.yaml) found")
    templates = []
    segment_names, names = list(segments), sorted(set(eligibility_names))
    badge_names = None if badges is None else set(badges)
    offer_ids = None if offers is None else set(offers)
    for definition in read_definition_files(files, [MISSION_TEMPLATE], problems, id_is_file_name=True):
        template = _from_definition(
            definition, metrics, segment_names, names, badge_names, offer_ids, problems, period_days
        )
        if template is not None:
            templates.append(template)
    if problems:
        raise TemplateError(problems)
    return TemplateSet(tuple(templates), dict(metrics))


def _from_definition(
    definition: Definition,
    metrics: Mapping[str, MissionMetric],
    segments: Sequence[str],
    names: Sequence[str],
    badges: set[str] | None,
    offers: set[str] | None,
    problems: list[str],
    period_days: Mapping[str, int] | None = None,
) -> MissionTemplate | None:
    """The template of a definition whose envelope and spec shape are valid: checks its names
    (metric, segments, badge, offer), rule and targets."""
    start = len(problems)
    data = definition.spec
    path = definition.file

    def problem(key: str, message: str) -> None:
        keys = [int(k) if k.isdigit() else k for k in key.split(".")]
        problems.append(definition.problem(keys, message))

    metric = metrics.get(data["metric"])
    if metric is None:
        problem("metric", f"unknown metric {data['metric']!r} (known: {', '.join(sorted(metrics))})")
    elif data["aggregation"] != metric.aggregation:
        problem(
            "aggregation",
            f"{data['aggregation']!r} does not match metric {metric.name!r}, which is a {metric.aggregation}",
        )
    periods = data["periods"] if isinstance(data["periods"], list) else [data["periods"]]
    template_segments = segments if data["segments"] == "all" else data["segments"]
    for segment in template_segments:
        if segment not in segments:
            problem("segments", f"unknown segment {segment!r} (known: {', '.join(segments)})")
    thresholds = _thresholds(data["thresholds"], periods, problem)
    if metric is not None and metric.aggregation in ("days", "streak"):
        days = period_days or DEFAULT_PERIOD_DAYS
        for period, levels in thresholds.items():
            longest = days.get(period, days["monthly"])
            for t in levels:
                if t.target is not None and t.target > longest:
                    problem(
                        f"thresholds.{period}.{t.level}", f"{t.target:g} days cannot be reached in a {period} period"
                    )
    points = _points(data["reward"], problem)
    if badges is not None and data["badge"] not in badges:
        problem("badge", f"unknown badge type {data['badge']!r} (known: {', '.join(sorted(badges))})")
    offer_id = data["reward"].get("offer_id")
    if offers is not None and offer_id not in (None, "nbo") and offer_id not in offers:
        problem("reward.offer_id", f"unknown offer {offer_id!r} (conf/offers.yaml has: {', '.join(sorted(offers))})")
    for placeholder in re.findall(r"\{([^}]*)\}", str(data["description"])):
        if placeholder not in PLACEHOLDERS:
            problem("description", f"unknown placeholder {{{placeholder}}} (use {', '.join(sorted(PLACEHOLDERS))})")
    line, column = definition.position("eligibility")
    try:
        expressions.validate(
            str(data["eligibility"]),
            names,
            source=path,
            line=line,
            column=column,
            types=expressions.subject_types(names),
            expect=expressions.BOOLEAN,
        )
    except expressions.ExpressionError as exc:
        problems.append(str(exc))
    for key in ("active_from", "active_to"):
        if data[key] is not None and not isinstance(data[key], date):
            problem(key, "must be a date (YYYY-MM-DD) or null")
    if len(problems) > start:
        return None
    return MissionTemplate(
        id=definition.id,
        name=definition.name,
        version=definition.version,
        category=data["category"],
        description=str(data["description"]),
        metric=data["metric"],
        aggregation=data["aggregation"],
        thresholds=thresholds,
        periods=tuple(periods),
        segments=tuple(template_segments),
        eligibility=str(data["eligibility"]),
        points=points,
        offer_id=offer_id,
        badge=str(data["badge"]),
        priority=int(data["priority"]),
        cooldown_days=int(data["cooldown_days"]),
        active_from=data["active_from"],
        active_to=data["active_to"],
        file=path,
        eligibility_position=(line, column),
    )


def value_position(root: yaml.Node | None, keys: Sequence[str | int]) -> tuple[int, int]:
    """1-based line and column where the text of a (nested) key's value starts; an int key
    indexes a list; (1, 1) when absent."""
    node = value_node(root, keys)
    return node_position(node) if node is not None else (1, 1)


def _thresholds(spec: Any, periods: Sequence[str], problem: Any) -> dict[str, tuple[Threshold, ...]]:
    if not isinstance(spec, Mapping):
        problem("thresholds", "must map levels (easy, medium, hard) or periods to levels")
        return {}
    per_period = spec if set(spec) <= set(PERIODS) else {p: spec for p in periods}
    if set(per_period) != set(periods):
        problem("thresholds", f"periods {sorted(per_period)} do not match `periods` {sorted(periods)}")
    result = {}
    for period, levels in per_period.items():
        if not isinstance(levels, Mapping) or list(levels) != list(LEVELS):
            problem(f"thresholds.{period}", f"must define exactly the levels {', '.join(LEVELS)}, in that order")
            continue
        parsed = []
        for level, value in levels.items():
            if isinstance(value, int | float) and value > 0:
                parsed.append(Threshold(level, target=float(value)))
            elif (
                isinstance(value, Mapping) and isinstance(value.get("relative"), int | float) and value["relative"] > 0
            ):
                parsed.append(Threshold(level, relative=float(value["relative"]), minimum=float(value.get("min", 1))))
            else:
                problem(
                    f"thresholds.{period}.{level}",
                    f"must be a positive number or {{relative: x, min: y}}, got {value!r}",
                )
        absolute = [t.target for t in parsed if t.target is not None]
        if absolute and absolute != sorted(absolute):
            problem(f"thresholds.{period}", "targets must grow from easy to hard")
        if len({t.is_relative for t in parsed}) > 1:
            problem(f"thresholds.{period}", "levels must be all absolute or all relative")
        result[period] = tuple(parsed)
    return result


def _points(reward: Any, problem: Any) -> dict[str, int]:
    points = (reward or {}).get("points") if isinstance(reward, Mapping) else None
    if isinstance(points, int) and points >= 0:
        return dict.fromkeys(LEVELS, points)
    if (
        isinstance(points, Mapping)
        and list(points) == list(LEVELS)
        and all(isinstance(v, int) and v >= 0 for v in points.values())
    ):
        return dict(points)
    problem("reward.points", f"must be a non-negative integer or one per level ({', '.join(LEVELS)})")
    return {}


# -- catalog ----------------------------------------------------------------------------------


def mission_id(template: MissionTemplate, segment: str, level: str, period: str) -> str:
    return f"{template.id}.v{template.version}.{segment}.{level}.{period}"


def catalog_rows(templates: Iterable[MissionTemplate], metrics: Mapping[str, MissionMetric]) -> list[dict[str, Any]]:
    """template x segments x levels x periods -> catalog rows (config-sized, not data-sized)."""
    rows = []
    for t in templates:
        for segment in t.segments:
            for period in t.periods:
                for threshold in t.thresholds[period]:
                    rows.append(
                        {
                            "mission_id": mission_id(t, segment, threshold.level, period),
                            "template_id": t.id,
                            "template_version": t.version,
                            "category": t.category,
                            "name": t.name,
                            "segment": segment,
                            "level": threshold.level,
                            "metric": t.metric,
                            "aggregation": t.aggregation,
                            "unit": metrics[t.metric].unit,
                            "target_value": threshold.target,
                            "target_rule": None
                            if threshold.target is not None
                            else f"baseline x {threshold.relative:g}, at least {threshold.minimum:g}",
                            "period": period,
                            "reward_points": t.points[threshold.level],
                            "offer_id": t.offer_id,
                            "badge": t.badge,
                            "priority": t.priority,
                            "cooldown_days": t.cooldown_days,
                            "is_dynamic": threshold.is_relative,
                            "description": t.description,
                        }
                    )
    return rows


def expansion_counts(templates: Iterable[MissionTemplate]) -> list[tuple[str, int, int, int, int]]:
    """(template id, segments, levels, periods, catalog rows) per template."""
    counts = []
    for t in templates:
        levels = len(next(iter(t.thresholds.values())))
        counts.append((t.id, len(t.segments), levels, len(t.periods), len(t.segments) * levels * len(t.periods)))
    return counts
