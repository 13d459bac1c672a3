"""Segments (conf/segments.yaml): one segment per subscriber per day, first matching rule wins."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs import expressions
from jobs.config import ConfigError, load_yaml

PROFILE_NAMES = ("payment_type", "plan_code", "status", "age_band", "region")


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
        path = Path(path)
        data = load_yaml(path) or {}
        allowed = sorted(set(allowed_names) | set(PROFILE_NAMES))
        segments = []
        for i, spec in enumerate(data.get("segments") or []):
            key = f"segments[{i}]"
            if not spec.get("name") or not spec.get("rule"):
                raise ConfigError(path, key, "every segment needs a name and a rule")
            try:
                expressions.validate(
                    str(spec["rule"]),
                    allowed,
                    source=f"{path}#{key}.rule",
                    types=expressions.subject_types(allowed),
                    expect=expressions.BOOLEAN,
                )
            except expressions.ExpressionError as exc:
                raise ConfigError(path, f"{key}.rule", str(exc)) from exc
            segments.append(Segment(spec["name"], str(spec["rule"]), spec.get("description", "")))
        names = [s.name for s in segments]
        if len(set(names)) != len(names):
            raise ConfigError(path, "segments", "segment names must be unique")
        if not data.get("default"):
            raise ConfigError(path, "default", "a default segment is required")
        return cls(str(data.get("version", "1")), str(data["default"]), tuple(segments), str(path))


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
