"""subscriber_state written incrementally equals a full recomputation, day by day, row for row.

A small synthetic operator (scores, segments, missions with their daily progress, badge awards,
ledger entries with expiries, tiers) is written once into two lakehouses; the state stage runs
over consecutive days in one incrementally and in the other with a full refresh every night.
The days are chosen so that every reason of the incremental rule fires at least once: new and
no-longer-scored subscribers, score, segment and tier moves, missions assigned, progressing,
completed and ending, completions leaving the recent window, badges, points earned, points
entering and leaving the expiring window. The incremental lakehouse stays incremental whatever
share of rows changed the day before; the last test moves that threshold around the share.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import date, timedelta

import pytest
from chispa import assert_df_equality

from jobs.config import load_config
from jobs.pipeline import RunContext, build_lakehouse
from jobs.stages import subscriber_state
from jobs.subscriber_state import REASONS
from jobs.tables import (
    BADGE_AWARDS,
    BEHAVIOR_SCORES,
    LOYALTY_LEDGER,
    LOYALTY_TIERS,
    MISSION_ASSIGNMENTS,
    MISSION_PROGRESS,
    SUBSCRIBER_SEGMENTS,
    SUBSCRIBER_STATE,
    schema_of,
)

pytestmark = pytest.mark.integration

START = date(2025, 4, 10)
DAYS = [START + timedelta(days=i) for i in range(6)]
HOLDOUT_SALT, HOLDOUT_SHARE = "gamify-holdout-v1", 0.05  # conf/missions.yaml
THRESHOLDS = (("member", 0), ("silver", 200), ("gold", 750), ("platinum", 2000))  # conf/loyalty.yaml


def _holdout(subscriber_id: str) -> bool:
    digest = hashlib.sha256(f"{subscriber_id}|{HOLDOUT_SALT}".encode()).hexdigest()
    return int(digest[:8], 16) < int(HOLDOUT_SHARE * 16**8)


def _subscribers() -> list[str]:
    """20 rewarded subscribers and 2 of the holdout."""
    ids = [hashlib.sha256(f"s{i}".encode()).hexdigest() for i in range(400)]
    return [s for s in ids if not _holdout(s)][:20] + [s for s in ids if _holdout(s)][:2]


def _world() -> dict[str, list[dict]]:
    subs = _subscribers()
    tables: dict[str, list[dict]] = {t: [] for t in (BEHAVIOR_SCORES, SUBSCRIBER_SEGMENTS, MISSION_ASSIGNMENTS)}
    tables.update({t: [] for t in (MISSION_PROGRESS, BADGE_AWARDS, LOYALTY_LEDGER, LOYALTY_TIERS)})
    ledger = tables[LOYALTY_LEDGER]

    def credit(sid: str, points: int, day: date, source: str, kind: str = "mission_completion") -> None:
        entry = f"{kind}|{source}"
        ledger.append(
            {"entry_id": entry, "subscriber_id": sid, "entry_type": kind, "source_id": source, "points": points,
             "expires_ds": day + timedelta(days=365), "entry_ds": day}
        )  # fmt: skip
        expiry = day + timedelta(days=365)
        if expiry <= DAYS[-1]:
            ledger.append(
                {"entry_id": f"expiry|{entry}", "subscriber_id": sid, "entry_type": "expiry", "source_id": entry,
                 "points": -points, "expires_ds": None, "entry_ds": expiry}
            )  # fmt: skip

    for i, sid in enumerate(subs):
        # points earned a year ago: expiring during the run (leaving the window) or entering it
        credit(sid, 30 + i, START - timedelta(days=365 - i % 6), f"old{i}")
        credit(sid, 40 + i, START - timedelta(days=335 - i % 7), f"older{i}")
        # missions: staggered periods, progress on alternate days, some completed, some not
        for n, offset in enumerate((-9, -4, 1) if i % 3 else (-6, 2)):
            assigned = START + timedelta(days=offset + i % 4)
            start, end = assigned + timedelta(days=1), assigned + timedelta(days=2 + i % 5)
            aid = f"as{i}-{n}"
            tables[MISSION_ASSIGNMENTS].append(
                {"assignment_id": aid, "subscriber_id": sid, "mission_id": f"m{i % 4}", "template_id": f"t{i % 4}",
                 "category": "engagement", "level": "easy", "offer_id": "OFF_A" if i % 2 else None,
                 "description": f"Use data {2 + n} days", "holdout": _holdout(sid), "assigned_ds": assigned}
            )  # fmt: skip
            value, completed = 0.0, None
            day = assigned
            while day <= end and day <= DAYS[-1]:
                if day >= start and (i + day.toordinal()) % 2 == 0:
                    value += 1.0
                target = 2.0 + n
                if completed is None and value >= target:
                    completed = day
                    credit(sid, 50, day, aid)
                status = (
                    "assigned"
                    if day < start
                    else "completed"
                    if completed
                    else "expired"
                    if day == end and i % 2
                    else "active"
                )
                tables[MISSION_PROGRESS].append(
                    {"assignment_id": aid, "subscriber_id": sid, "mission_id": f"m{i % 4}",
                     "template_id": f"t{i % 4}", "category": "engagement", "period_start": start, "period_end": end,
                     "target_value": target, "progress_value": min(value, target),
                     "progress_pct": round(min(value / target, 1.0) * 100, 1), "status": status,
                     "completed_ds": completed, "newly_completed": completed == day, "reward_points": 50,
                     "holdout": _holdout(sid), "progress_ds": day}
                )  # fmt: skip
                day += timedelta(days=1)
        for level, rank, offset in (("bronze", 1, -3 + i % 5), ("silver", 2, 1 + i % 7)):
            awarded = START + timedelta(days=offset)
            tables[BADGE_AWARDS].append(
                {"award_id": f"aw{i}-{rank}", "subscriber_id": sid, "badge_id": f"explorer.{level}",
                 "badge_type": "explorer", "level": level, "level_rank": rank, "points": 400, "holdout": _holdout(sid),
                 "awarded_ds": awarded}
            )  # fmt: skip
            if not _holdout(sid):
                credit(sid, 400, awarded, f"aw{i}-{rank}", "badge_award")
    for d, day in enumerate(DAYS):
        for i, sid in enumerate(subs):
            if (i == 3 and d == 2) or (i == 5 and d < 2):  # not scored that day / new from day 2
                continue
            drift = d if i % 4 == 0 else 0
            tables[BEHAVIOR_SCORES].append(
                {"subscriber_id": sid, "engagement": 10.0 + i + drift / 3, "revenue": 50.0, "loyalty": 45.0,
                 "risk": 100.0 / (i + 2), "digital": 30.0 + (d >= 3 and i % 5 == 1), "score_date": day}
            )  # fmt: skip
            segment = "value" if (i % 3 == 0) != (i == 7 and d >= 3) else "mass"
            tables[SUBSCRIBER_SEGMENTS].append({"subscriber_id": sid, "segment": segment, "segment_date": day})
            balance = sum(e["points"] for e in ledger if e["subscriber_id"] == sid and e["entry_ds"] <= day)
            rank = max(r for r, (_, threshold) in enumerate(THRESHOLDS, 1) if balance >= threshold)
            tables[LOYALTY_TIERS].append(
                {"subscriber_id": sid, "points_balance": balance, "lifetime_points": balance,
                 "tier": THRESHOLDS[rank - 1][0], "tier_rank": rank, "holdout": _holdout(sid), "tier_ds": day}
            )  # fmt: skip
    return tables


PARTITIONS = {
    BEHAVIOR_SCORES: "score_date",
    SUBSCRIBER_SEGMENTS: "segment_date",
    MISSION_ASSIGNMENTS: "assigned_ds",
    MISSION_PROGRESS: "progress_ds",
    BADGE_AWARDS: "awarded_ds",
    LOYALTY_LEDGER: "entry_ds",
    LOYALTY_TIERS: "tier_ds",
}


@pytest.fixture(scope="module")
def lakehouses(spark, tmp_path_factory):
    """Two lakehouses over the same inputs: (incremental every night, full refresh every night)."""
    root = tmp_path_factory.mktemp("state")
    out = []
    always_incremental = {"subscriber_state.max_changed_share": 1.0}  # however many rows changed the day before
    for name, overrides in (("incremental", always_incremental), ("full", {"subscriber_state.full_refresh": True})):
        config = load_config(env="test", overrides={"lakehouse.root": str(root / name), **overrides}, environ={})
        out.append((config, build_lakehouse(spark, config)))
    first = out[0][1]
    for table, rows in _world().items():
        schema = schema_of(table)
        frame = spark.createDataFrame([tuple(r.get(f.name) for f in schema.fields) for r in rows], schema)
        column = PARTITIONS[table]
        first.write(frame, table, partition_by=[column], replace_where={column: sorted({r[column] for r in rows})})
    for table in PARTITIONS:
        shutil.copytree(f"{first.root}/{table}", f"{out[1][1].root}/{table}")
    return out


def run_state(spark, lakehouse_pair, ds: date) -> dict:
    config, lakehouse = lakehouse_pair
    return subscriber_state.run(RunContext(spark, config, lakehouse, ds))


def day_rows(lakehouse, ds: date):
    return lakehouse.read(SUBSCRIBER_STATE, partitions=[("state_ds", "=", ds)])


def test_incremental_state_equals_a_full_recomputation_every_day_and_on_a_rerun(spark, lakehouses):
    incremental, full = lakehouses
    summaries = {}
    for ds in DAYS:
        summaries[ds] = run_state(spark, incremental, ds)
        assert run_state(spark, full, ds)["mode"] == "full"
    for ds in DAYS:
        assert_df_equality(
            day_rows(incremental[1], ds), day_rows(full[1], ds), ignore_row_order=True, ignore_nullable=True
        )
    first, *later = (summaries[ds] for ds in DAYS)
    assert (first["mode"], first["recomputed"], first["carried"]) == ("full", 21, 0)
    assert all(s["mode"] == "incremental" for s in later)
    assert all(s["recomputed"] + s["carried"] == s["subscribers"] and s["carried"] > 0 for s in later)
    assert [s["subscribers"] for s in summaries.values()] == [21, 21, 21, 22, 22, 22]
    seen = {reason for s in later for reason in s["reasons"]}
    assert seen == set(REASONS)

    # a rerun of a middle day folds from the day before it and gives the same rows
    middle = DAYS[2]
    before = {ds: day_rows(incremental[1], ds).localCheckpoint() for ds in DAYS}
    again = run_state(spark, incremental, middle)
    assert (again["mode"], again["previous_state_ds"]) == ("incremental", DAYS[1].isoformat())
    assert {k: again[k] for k in ("recomputed", "carried", "reasons")} == {
        k: summaries[middle][k] for k in ("recomputed", "carried", "reasons")
    }
    for ds in DAYS:
        assert_df_equality(day_rows(incremental[1], ds), before[ds], ignore_row_order=True, ignore_nullable=True)
        assert_df_equality(
            day_rows(incremental[1], ds), day_rows(full[1], ds), ignore_row_order=True, ignore_nullable=True
        )


def test_a_night_recomputes_everyone_when_most_rows_changed_the_day_before(spark, lakehouses):
    """The share of the previous state day's changed rows decides: above
    subscriber_state.max_changed_share everyone is recomputed, with the same rows."""
    incremental, full = lakehouses
    for pair in lakehouses:  # the days before, unless the test above wrote them
        written = set(pair[1].partition_values(SUBSCRIBER_STATE, "state_ds"))
        for ds in DAYS[:3]:
            if ds.isoformat() not in written:
                run_state(spark, pair, ds)
    ds, previous_day = DAYS[3], DAYS[2]
    previous = day_rows(incremental[1], previous_day)
    share = previous.filter("changed").count() / previous.count()
    assert 0 < share < 1
    lakehouse = incremental[1]
    for threshold, mode in ((share, "incremental"), (share - 0.01, "full")):
        overridden = load_config(
            env="test",
            overrides={"lakehouse.root": lakehouse.root, "subscriber_state.max_changed_share": threshold},
            environ={},
        )
        summary = run_state(spark, (overridden, lakehouse), ds)
        assert (summary["mode"], summary["previous_changed_share"]) == (mode, round(share, 4))
        run_state(spark, full, ds)
        assert_df_equality(day_rows(lakehouse, ds), day_rows(full[1], ds), ignore_row_order=True, ignore_nullable=True)
