"""Segments (conf/segments.yaml): one segment per subscriber per day, first matching rule wins.

Each segment is a definition (jobs.definitions) of kind `segment` in the `segments:` list: its
spec has the rule (and a description); exactly one segment, the `default: true` one, has no rule
and takes every subscriber no rule matches. The segments version written with each row is the
highest version among the definitions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs import expressions
from jobs.definitions import DefinitionError, Kind, newest_version, read_definitions, unique
from jobs.tables import PROFILE_NAMES

SEGMENT = Kind(
    "segment",
    "Subscriber segment: the first segment whose rule matches, in file order, else the default one",
    {
        "additionalProperties": False,
        "properties": {
            "rule": {
                "type": "string",
                "description": "expression language over the scores, scoring features and CRM profile",
            },
            "default": {"const": True, "description": "the segment of subscribers no rule matches (exactly one)"},
            "description": {"type": "string"},
        },
    },
)


@dataclass(frozen=True)
class Segment:
    name: str
    rule: str
    description: str = ""


@dataclass(frozen=True)
class SegmentRules:
    version: str
    default: str
    segments: tuple[Segment, ...]
    file: str = "conf/segments.yaml"

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.segments] + [self.default]

    @classmethod
    def load(cls, path: str | Path, allowed_names: Iterable[str]) -> SegmentRules:
        """The segments of `path`; raise DefinitionError listing every problem."""
        path = Path(path)
        allowed = sorted(set(allowed_names) | set(PROFILE_NAMES))
        problems: list[str] = []
        definitions = unique(read_definitions(path, [SEGMENT], problems, key="segments"), problems)
        segments, defaults = [], []
        for definition in definitions:
            spec = definition.spec
            if spec.get("default"):
                defaults.append(definition)
                if "rule" in spec:
                    problems.append(definition.problem(["rule"], "the default segment has no rule"))
                continue
            if "rule" not in spec:
                problems.append(definition.problem([], "needs a rule (or `default: true` for the default segment)"))
                continue
            line, column = definition.position("rule")
            try:
                expressions.validate(
                    str(spec["rule"]),
                    allowed,
                    source=definition.file,
                    line=line,
                    column=column,
                    types=expressions.subject_types(allowed),
                    expect=expressions.BOOLEAN,
                )
            except expressions.ExpressionError as exc:
                problems.append(str(exc))
            segments.append(Segment(definition.id, str(spec["rule"]), str(spec.get("description", ""))))
        for extra in defaults[1:]:
            problems.append(extra.problem(["default"], f"{defaults[0].id!r} is already the default segment"))
        if not defaults and not problems:
            problems.append(f"{path}:1:1: segments: one segment must be `default: true` (the segment of the rest)")
        if problems:
            raise DefinitionError(problems)
        return cls(str(newest_version(definitions)), defaults[0].id, tuple(segments), str(path))


def assign_segments(scored: DataFrame, rules: SegmentRules, ds: date) -> DataFrame:
    """Scores + features + profile (one row per subscriber) -> subscriber_segments rows."""
    names = {c: F.col(c) for c in scored.columns}
    segment: Column = F.lit(rules.default)
    rule: Column = F.lit("default")
    for i, s in reversed(list(enumerate(rules.segments))):
        matched = F.coalesce(
            expressions.compile_expression(s.rule, names, source=f"{rules.file}#segments[{i}].rule"), F.lit(False)
        )
        segment = F.when(matched, F.lit(s.name)).otherwise(segment)
        rule = F.when(matched, F.lit(s.rule)).otherwise(rule)
    return scored.select(
        "subscriber_id",
        segment.alias("segment"),
        rule.alias("matched_rule"),
        F.lit(rules.version).alias("segments_version"),
        F.lit(ds).alias("segment_date"),
    )
