"""Badges (templates/badges/*.yaml): validation, the badge catalog, and progressive awards.

Every badge type has four levels (bronze, silver, gold, platinum), each with an auto-award rule
in the safe expression language over scores, features and lifetime metrics, and the points it
is worth. Awards are progressive: a level is awarded only when the level below is held or is
awarded the same day; a subscriber qualifying for several levels at once gets them all, in
order. A level is never awarded twice and never taken away.

Missions count toward the badge their template names: in a badge's rules, `badge_missions` is
the subscriber's lifetime number of completed missions whose template names that badge.

Badge types unlock in `unlock_order`: the first is open to everyone; any other can be earned
once the subscriber holds a badge of a lower unlock_order (earned on an earlier day).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs import expressions
from jobs.definitions import Definition, Kind, read_definition_files
from jobs.frames import ColumnMemo
from jobs.lifetime import badge_missions_name
from jobs.templates import TemplateError

LEVELS = ("bronze", "silver", "gold", "platinum")
BADGE_MISSIONS = "badge_missions"  # in a badge's rules: completed missions whose template names it
BADGE = Kind(
    "badge",
    "Badge type: four progressive levels, each with an auto-award rule and its points",
    {
        "required": ["description", "unlock_order", "auto_award_rules", "points"],
        "additionalProperties": False,
        "properties": {
            "description": {"type": "string"},
            "unlock_order": {
                "type": "integer",
                "minimum": 0,
                "description": "the lowest is open to all; another unlocks once a badge of a lower order is held",
            },
            "auto_award_rules": {
                "type": "object",
                "description": "per level, in this order, a rule in the expression language",
                "required": list(LEVELS),
                "additionalProperties": False,
                "properties": {level: {"type": "string"} for level in LEVELS},
            },
            "points": {
                "type": "object",
                "description": "per level, in this order, the points it is worth (never decreasing)",
                "required": list(LEVELS),
                "additionalProperties": False,
                "properties": {level: {"type": "integer", "minimum": 0} for level in LEVELS},
            },
        },
    },
)


@dataclass(frozen=True)
class BadgeType:
    id: str
    name: str
    version: int
    description: str
    unlock_order: int
    rules: Mapping[str, str]  # level -> rule
    points: Mapping[str, int]  # level -> points
    file: str = ""
    positions: Mapping[str, tuple[int, int]] | None = None  # level -> (line, column) of its rule

    def badge_id(self, level: str) -> str:
        return f"{self.id}.{level}"


def load_badges(directory: str | Path, names: Sequence[str]) -> list[BadgeType]:
    """Load and validate every badge type; raise TemplateError listing all problems."""
    directory = Path(directory)
    files = sorted(directory.glob("*.yaml"))
    problems: list[str] = [] if files else [f"{directory}:1:1: no badge definitions (*.yaml) found"]
    allowed = sorted(set(names))
    definitions = read_definition_files(files, [BADGE], problems, id_is_file_name=True)
    badges = [b for b in (_from_definition(d, allowed, problems) for d in definitions) if b is not None]
    by_order: dict[int, list[BadgeType]] = {}
    for badge in badges:
        by_order.setdefault(badge.unlock_order, []).append(badge)
    for badge in badges:
        others = [b.id for b in by_order[badge.unlock_order] if b is not badge]
        if others:
            line, column = next(d for d in definitions if d.id == badge.id).position("unlock_order")
            problems.append(
                f"{badge.file}:{line}:{column}: spec.unlock_order: {badge.unlock_order} is also the order of "
                f"{', '.join(others)}"
            )
    if problems:
        raise TemplateError(problems)
    return sorted(badges, key=lambda b: b.unlock_order)


def _from_definition(definition: Definition, names: Sequence[str], problems: list[str]) -> BadgeType | None:
    """The badge type of a definition whose envelope and spec shape are valid: checks the level
    order, the rules and the points."""
    start = len(problems)
    data = definition.spec
    rules, points = data["auto_award_rules"], data["points"]
    for key, spec in (("auto_award_rules", rules), ("points", points)):
        if list(spec) != list(LEVELS):
            problems.append(definition.problem([key], f"must define the levels {', '.join(LEVELS)}, in that order"))
    if len(problems) > start:
        return None
    positions: dict[str, tuple[int, int]] = {}
    for level in LEVELS:
        line, column = definition.position("auto_award_rules", level)
        positions[level] = (line, column)
        try:
            expressions.validate(
                str(rules[level]),
                names,
                source=definition.file,
                line=line,
                column=column,
                types=expressions.subject_types(names),
                expect=expressions.BOOLEAN,
            )
        except expressions.ExpressionError as exc:
            problems.append(str(exc))
    values = [points[level] for level in LEVELS]
    if values != sorted(values):
        problems.append(definition.problem(["points"], f"must not decrease from bronze to platinum: {values}"))
    if len(problems) > start:
        return None
    return BadgeType(
        id=definition.id,
        name=definition.name,
        version=definition.version,
        description=str(data["description"]),
        unlock_order=int(data["unlock_order"]),
        rules={level: str(rules[level]) for level in LEVELS},
        points={level: int(points[level]) for level in LEVELS},
        file=definition.file,
        positions=positions,
    )


def catalog_rows(badges: Sequence[BadgeType]) -> list[dict[str, Any]]:
    """badge types x levels: the badge catalog (config-sized)."""
    return [
        {
            "badge_id": b.badge_id(level),
            "badge_type": b.id,
            "name": f"{b.name} {level.capitalize()}",
            "level": level,
            "level_rank": rank,
            "rule": b.rules[level],
            "points": b.points[level],
            "unlock_order": b.unlock_order,
            "description": b.description,
            "badge_version": b.version,
        }
        for b in badges
        for rank, level in enumerate(LEVELS, 1)
    ]


def held_levels(awards: DataFrame, ds: date) -> DataFrame:
    """Highest level rank held per subscriber and badge type before `ds`."""
    return (
        awards.filter(F.col("awarded_ds") < F.lit(ds))
        .groupBy("subscriber_id", "badge_type")
        .agg(F.max("level_rank").alias("held_rank"))
    )


def not_awarded_later(new: DataFrame, awards: DataFrame, ds: date) -> DataFrame:
    """Drop levels already awarded after `ds` (a rerun of a past day never repeats them)."""
    later = awards.filter(F.col("awarded_ds") > F.lit(ds)).select("subscriber_id", "badge_id")
    return new.join(later, ["subscriber_id", "badge_id"], "left_anti").select(*new.columns)


def award(subjects: DataFrame, held: DataFrame, badges: Sequence[BadgeType], ds: date) -> DataFrame:
    """Subjects (one row per subscriber: scores, features, lifetime metrics, holdout) and the
    levels already held -> badge_awards rows for `ds`, in one pass over the subjects."""
    memo = ColumnMemo()  # the literals, names and shown values that recur across the 48 rules
    columns = {c: memo.col(c) for c in subjects.columns}
    numeric = frozenset([*(c for c, kind in subjects.dtypes if kind == "double"), BADGE_MISSIONS])
    ordered = sorted(badges, key=lambda b: b.unlock_order)
    order_of = F.create_map(*[F.lit(v) for b in ordered for v in (b.id, b.unlock_order)])
    held_by_type = held.groupBy("subscriber_id").agg(
        F.map_from_entries(F.collect_list(F.struct("badge_type", "held_rank"))).alias("_held"),
        F.min(F.element_at(order_of, F.col("badge_type"))).alias("_lowest_held_order"),
    )
    rows = subjects.join(held_by_type, "subscriber_id", "left")
    options = []
    for i, badge in enumerate(ordered):
        linked = badge_missions_name(badge.id)
        count = F.coalesce(columns[linked], memo.lit(0.0)) if linked in columns else memo.lit(0.0)
        names = {**columns, BADGE_MISSIONS: count}
        held_rank = F.coalesce(memo.col("_held").getItem(badge.id), memo.lit(0))
        # the first badge type is open to all; the others once a badge of a lower order is held
        lowest_held = memo.col("_lowest_held_order")
        chain = memo.lit(True) if i == 0 else F.coalesce(lowest_held < badge.unlock_order, memo.lit(False))
        for rank, level in enumerate(LEVELS, 1):
            line, column = (badge.positions or {}).get(level, (1, 1))
            node = expressions.parse(badge.rules[level], source=badge.file, line=line, column=column)
            qualifies = F.coalesce(expressions.compile_node(node, names.__getitem__), memo.lit(False))
            shown = expressions.shown_values(node, names, numeric, memo)
            qualifying = F.concat_ws(", ", *shown) if shown else memo.lit("")
            chain = chain & (qualifies | (held_rank >= rank))  # every level up to this one held or earned now
            options.append(
                F.when(
                    (held_rank < rank) & chain,
                    F.struct(
                        F.lit(badge.badge_id(level)).alias("badge_id"),
                        memo.lit(badge.id).alias("badge_type"),
                        memo.lit(level).alias("level"),
                        memo.lit(rank).alias("level_rank"),
                        memo.lit(badge.version).alias("badge_version"),
                        F.lit(expressions.to_text(node)).alias("rule"),
                        qualifying.alias("qualifying_values"),
                        memo.lit(badge.points[level]).alias("points"),
                    ),
                )
            )
    # the lambda keeps this projection interpreted on purpose: generated as one stage, the 48
    # award rules' code outgrows the JVM's 64 KB method limit (Spark logs a compile error, then
    # falls back)
    exploded = rows.select(
        "subscriber_id", "holdout", F.explode(F.filter(F.array(*options), lambda a: a.isNotNull())).alias("a")
    )
    return exploded.select(
        F.sha2(F.concat_ws("|", "subscriber_id", "a.badge_id"), 256).alias("award_id"),
        "subscriber_id",
        "a.*",
        "holdout",
        F.lit(ds).alias("awarded_ds"),
    )
