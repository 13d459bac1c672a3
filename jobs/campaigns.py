"""Campaign integration: triggers (events for the campaign system) and named audiences.

Triggers of a run date: missions assigned, missions completed, badges awarded, tier changes and
scores crossing configured thresholds. Each has a deterministic id, the subscriber, and a
payload of strings the campaign system renders from (offer id, mission text, badge, tier...).
The universal holdout never produces triggers and is never in an audience.

Audiences are definitions (jobs.definitions) of kind `audience` in the `audiences:` list of
conf/campaigns.yaml, a rule each; the audience version written with each row is the highest
version among them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs import expressions
from jobs.config import compose_yaml, load_yaml
from jobs.definitions import DefinitionError, Kind, newest_version, node_position, read_definitions, unique, value_node
from jobs.frames import local_frame, string_map
from jobs.offers import with_offer_grants

TRIGGER_TYPES = ("mission_assigned", "mission_completed", "badge_awarded", "tier_changed", "score_crossed")
AUDIENCE = Kind(
    "audience",
    "Campaign audience: the scored subscribers (holdout excluded) its rule matches, materialised daily",
    {
        "required": ["rule"],
        "additionalProperties": False,
        "properties": {
            "rule": {
                "type": "string",
                "description": "expression language over scores, segment, features, tier and points_balance",
            },
            "description": {"type": "string"},
        },
    },
)


@dataclass(frozen=True)
class ScoreCrossing:
    name: str
    score: str
    threshold: float
    direction: str  # up: from below to at-or-above; down: from at-or-above to below


@dataclass(frozen=True)
class CampaignSettings:
    crossings: tuple[ScoreCrossing, ...]
    audiences: tuple[tuple[str, str], ...]  # (name, rule)
    version: str = "1"
    file: str = "conf/campaigns.yaml"

    @classmethod
    def load(cls, path: str | Path, scores: Sequence[str], names: Sequence[str]) -> CampaignSettings:
        """Score crossings and audiences of `path`; raise DefinitionError listing every problem."""
        path = Path(path)
        problems: list[str] = []
        audiences = []
        definitions = unique(read_definitions(path, [AUDIENCE], problems, key="audiences", required=False), problems)
        for definition in definitions:
            rule = str(definition.spec["rule"])
            line, column = definition.position("rule")
            try:
                expressions.validate(
                    rule,
                    names,
                    source=definition.file,
                    line=line,
                    column=column,
                    types=expressions.subject_types(names),
                    expect=expressions.BOOLEAN,
                )
            except expressions.ExpressionError as exc:
                problems.append(str(exc))
            audiences.append((definition.id, rule))
        crossings = _crossings(path, scores, problems) if path.exists() else []
        if problems:
            raise DefinitionError(problems)
        return cls(tuple(crossings), tuple(audiences), str(newest_version(definitions)), str(path))


def _crossings(path: Path, scores: Sequence[str], problems: list[str]) -> list[ScoreCrossing]:
    text = path.read_text(encoding="utf-8")
    data, root = load_yaml(path) or {}, compose_yaml(text)
    crossings = []
    names: set[str] = set()
    for i, spec in enumerate(data.get("score_thresholds") or []):
        start = len(problems)

        def problem(key: str, message: str, i: int = i) -> None:
            node = value_node(root, ("score_thresholds", i, key)) or value_node(root, ("score_thresholds", i))
            line, column = node_position(node) if node is not None else (1, 1)
            problems.append(f"{path}:{line}:{column}: score_thresholds[{i}].{key}: {message}")

        if not isinstance(spec, dict):
            problem("-", "must be a mapping of name, score, threshold, direction")
            continue
        if not spec.get("name"):
            problem("name", "is required")
        elif str(spec["name"]) in names:  # the name is the trigger's source: two would share trigger ids
            problem("name", f"{spec['name']!r} is used by an earlier threshold; names must be unique")
        else:
            names.add(str(spec["name"]))
        if spec.get("score") not in scores:
            problem("score", f"must be one of {', '.join(scores)}")
        if spec.get("direction", "up") not in ("up", "down"):
            problem("direction", "must be up or down")
        if not isinstance(spec.get("threshold"), int | float):
            problem("threshold", "must be a number")
        if len(problems) == start:
            crossings.append(
                ScoreCrossing(str(spec["name"]), spec["score"], float(spec["threshold"]), spec.get("direction", "up"))
            )
    return crossings


def _trigger(df: DataFrame, kind: str, source_id: Column, payload: Mapping[str, Column], ds: date) -> DataFrame:
    return df.select(
        F.sha2(F.concat_ws("|", F.lit(kind), F.col("subscriber_id"), source_id, F.lit(ds.isoformat())), 256).alias(
            "trigger_id"
        ),
        "subscriber_id",
        F.lit(kind).alias("trigger_type"),
        source_id.alias("source_id"),
        string_map(payload).alias("payload"),
        F.lit(ds).alias("trigger_ds"),
    )


def triggers(
    assigned: DataFrame,
    completed: DataFrame,
    awards: DataFrame,
    tier_rows: DataFrame,
    score_pairs: DataFrame,
    settings: CampaignSettings,
    ds: date,
    assignment_offers: DataFrame | None = None,
    offers: DataFrame | None = None,
    segments: DataFrame | None = None,
    segment_grants: Mapping[str, int] | None = None,
) -> DataFrame:
    """The run date's outputs -> campaign_triggers rows (holdout excluded).

    `score_pairs`: subscriber_id, holdout, <score> (today) and prev_<score> (previous scoring day).
    `assignment_offers` (assignment_id, offer_id) and `offers` (the catalogue frame), when given,
    put the offer of a completed mission in its payload with its grant status under the offer's
    daily budget (granted | capped), the reason of a cap, and validity. With `segments`
    (subscriber_id, segment of the day) and `segment_grants` (segment -> daily_offer_grants of
    conf/loyalty.yaml budgets) a segment's grants of the day are capped too.
    """
    completed = completed.filter(F.col("newly_completed") & ~F.col("holdout"))
    offer_payload: dict[str, Column] = {}
    if assignment_offers is not None and offers is not None:
        with_offers = completed.join(assignment_offers.select("assignment_id", "offer_id"), "assignment_id", "left")
        if segments is not None and segment_grants:
            with_offers = with_offers.join(segments.select("subscriber_id", "segment"), "subscriber_id", "left")
        else:
            segment_grants = None
        completed = with_offer_grants(with_offers, offers, segment_grants)
        offer_payload = {
            "offer_id": F.col("offer_id"),
            "offer_name": F.col("offer_name"),
            "offer_type": F.col("offer_type"),
            "offer_status": F.col("offer_status"),
            "offer_status_reason": F.col("offer_status_reason"),
            "offer_valid_until": F.col("offer_valid_until"),
        }
        assigned = assigned.join(F.broadcast(offers.select("offer_id", "offer_name", "offer_type")), "offer_id", "left")
    assigned_offer = (
        {"offer_name": F.col("offer_name"), "offer_type": F.col("offer_type")}
        if "offer_name" in assigned.columns
        else {}
    )
    parts = [
        _trigger(
            assigned.filter(~F.col("holdout")),
            "mission_assigned",
            F.col("assignment_id"),
            {
                "mission_id": F.col("mission_id"),
                "category": F.col("category"),
                "text": F.col("description"),
                "offer_id": F.col("offer_id"),
                **assigned_offer,
                "reward_points": F.col("reward_points"),
                "period_end": F.col("period_end"),
            },
            ds,
        ),
        _trigger(
            completed,
            "mission_completed",
            F.col("assignment_id"),
            {
                "mission_id": F.col("mission_id"),
                "category": F.col("category"),
                "reward_points": F.col("reward_points"),
                "completed_ds": F.col("completed_ds"),
                **offer_payload,
            },
            ds,
        ),
        _trigger(
            awards.filter(~F.col("holdout")),
            "badge_awarded",
            F.col("award_id"),
            {"badge_id": F.col("badge_id"), "level": F.col("level"), "points": F.col("points")},
            ds,
        ),
        _trigger(
            tier_rows.filter(F.col("tier_change").isNotNull() & ~F.col("holdout")),
            "tier_changed",
            F.concat_ws(">", F.col("previous_tier"), F.col("tier")),
            {
                "from_tier": F.col("previous_tier"),
                "to_tier": F.col("tier"),
                "direction": F.col("tier_change"),
                "points_balance": F.col("points_balance"),
            },
            ds,
        ),
    ]
    for c in settings.crossings:
        now, before = F.col(c.score), F.col(f"prev_{c.score}")
        threshold = F.lit(c.threshold)
        crossed = (
            (before < threshold) & (now >= threshold)
            if c.direction == "up"
            else (before >= threshold) & (now < threshold)
        )
        parts.append(
            _trigger(
                score_pairs.filter(crossed & ~F.col("holdout")),
                "score_crossed",
                F.lit(c.name),
                {
                    "crossing": F.lit(c.name),
                    "score": F.lit(c.score),
                    "threshold": F.lit(c.threshold),
                    "previous": F.round(before, 2),
                    "current": F.round(now, 2),
                },
                ds,
            )
        )
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def audiences(subjects: DataFrame, settings: CampaignSettings, ds: date) -> DataFrame:
    """Subjects (one row per scored subscriber) -> one row per subscriber per matching audience."""
    names = {c: F.col(c) for c in subjects.columns}
    members = [
        F.when(F.coalesce(expressions.compile_expression(rule, names), F.lit(False)), F.lit(name))
        for name, rule in settings.audiences
    ]
    if not members:
        return local_frame(
            subjects.sparkSession,
            [],
            "audience string, subscriber_id string, audience_version string, audience_ds date",
        )
    exploded = subjects.filter(~F.col("holdout")).select(
        F.explode(F.array(*members)).alias("audience"),
        "subscriber_id",
        F.lit(settings.version).alias("audience_version"),
        F.lit(ds).alias("audience_ds"),
    )
    return exploded.filter(F.col("audience").isNotNull())
