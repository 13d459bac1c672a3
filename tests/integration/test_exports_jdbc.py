"""The JDBC export against a real PostgreSQL: one transaction per run date, idempotent reruns; a
rerun of a corrected day replaces the subscriber states an earlier delivery of it sent (also files)."""

from __future__ import annotations

import gzip
from datetime import date, timedelta

import pytest

from jobs.exports import Consumer, ExportError, export_files, state_rows, with_identifier
from jobs.exports_jdbc import export_jdbc
from jobs.stages.exports import delivered_state_keys

pytestmark = pytest.mark.integration

NIGHT1 = date(2025, 3, 1)
NIGHT2 = NIGHT1 + timedelta(days=1)
A, B = "a" * 64, "b" * 64


def triggers(spark, ds: date, ids: list[str]):
    return spark.createDataFrame(
        [(f"{t}-{ds:%d}", A, "mission_assigned", {"offer_id": "OFF_A"}, ds) for t in ids],
        "trigger_id string, subscriber_id string, trigger_type string, payload map<string,string>, trigger_ds date",
    )


def ledger(spark, ds: date, points: dict[str, int]):
    return spark.createDataFrame(
        [(f"{e}-{ds:%d}", B, "mission_completion", p, ds) for e, p in points.items()],
        "entry_id string, subscriber_id string, entry_type string, points int, entry_ds date",
    )


def state(spark, ds: date, tier: str):
    return spark.createDataFrame(
        [(A, tier, [{"badge_type": "comeback", "level": "bronze"}], ds)],
        "subscriber_id string, tier string, badges array<struct<badge_type:string,level:string>>, state_ds date",
    )


def night(spark, ds: date, trigger_ids: list[str], points: dict[str, int], tier: str) -> dict:
    return {
        "subscriber_state": state(spark, ds, tier),
        "campaign_triggers": triggers(spark, ds, trigger_ids),
        "ledger_entries": ledger(spark, ds, points),
    }


def snapshot(postgres) -> dict[str, str]:
    return {
        "triggers": postgres.psql(
            "select trigger_id, trigger_ds, payload->>'offer_id' from app_campaign_triggers order by 1"
        ),
        "ledger": postgres.psql("select entry_id, points, entry_ds from app_ledger_entries order by 1"),
        "state": postgres.psql("select subscriber_id, tier, badges->0->>'level', state_ds from app_subscriber_state"),
        "runs": postgres.psql("select run_ds, dataset, rows, identifier from app_export_runs order by 1, 2"),
    }


def test_jdbc_export_is_one_transaction_per_night_and_idempotent(spark, postgres):
    consumer = Consumer(
        "app_backend",
        "jdbc",
        "pseudonym",
        ("subscriber_state", "campaign_triggers", "ledger_entries"),
        url=postgres.jdbc_url,
        user=postgres.user,
        password=postgres.password,
        table_prefix="app_",
    )
    rows = export_jdbc(spark, consumer, night(spark, NIGHT1, ["t1", "t2"], {"e1": 100}, "silver"), NIGHT1)
    assert rows == {"subscriber_state": 1, "campaign_triggers": 2, "ledger_entries": 1}
    after_night1 = snapshot(postgres)
    assert after_night1 == {
        "triggers": "t1-01|2025-03-01|OFF_A\nt2-01|2025-03-01|OFF_A",
        "ledger": "e1-01|100|2025-03-01",
        "state": f"{A}|silver|bronze|2025-03-01",
        "runs": "2025-03-01|campaign_triggers|2|pseudonym\n2025-03-01|ledger_entries|1|pseudonym\n"
        "2025-03-01|subscriber_state|1|pseudonym",
    }

    # night 2 fails on its last dataset, after triggers and state were merged in the transaction
    postgres.psql("alter table app_ledger_entries add constraint night1_only check (entry_ds < date '2025-03-02')")
    with pytest.raises(ExportError, match="rolled back"):
        export_jdbc(spark, consumer, night(spark, NIGHT2, ["t3"], {"e2": 40}, "gold"), NIGHT2)
    assert snapshot(postgres) == after_night1

    postgres.psql("alter table app_ledger_entries drop constraint night1_only")
    export_jdbc(spark, consumer, night(spark, NIGHT2, ["t3", "t4"], {"e2": 40}, "gold"), NIGHT2)
    after_night2 = snapshot(postgres)
    assert after_night2 == {
        "triggers": "t1-01|2025-03-01|OFF_A\nt2-01|2025-03-01|OFF_A\nt3-02|2025-03-02|OFF_A\nt4-02|2025-03-02|OFF_A",
        "ledger": "e1-01|100|2025-03-01\ne2-02|40|2025-03-02",
        "state": f"{A}|gold|bronze|2025-03-02",
        "runs": after_night1["runs"] + "\n2025-03-02|campaign_triggers|2|pseudonym\n"
        "2025-03-02|ledger_entries|1|pseudonym\n2025-03-02|subscriber_state|1|pseudonym",
    }

    # rerunning night 2 gives the same tables; a rerun with fewer rows replaces that night's rows
    export_jdbc(spark, consumer, night(spark, NIGHT2, ["t3", "t4"], {"e2": 40}, "gold"), NIGHT2)
    assert snapshot(postgres) == after_night2
    export_jdbc(spark, consumer, night(spark, NIGHT2, ["t3"], {"e2": 40}, "gold"), NIGHT2)
    fewer = snapshot(postgres)
    assert fewer == {
        **after_night2,
        "triggers": "t1-01|2025-03-01|OFF_A\nt2-01|2025-03-01|OFF_A\nt3-02|2025-03-02|OFF_A",
        "runs": after_night2["runs"].replace("2025-03-02|campaign_triggers|2|", "2025-03-02|campaign_triggers|1|"),
    }

    # rerunning night 1 changes nothing, and does not put an older state over the newer one
    export_jdbc(spark, consumer, night(spark, NIGHT1, ["t1", "t2"], {"e1": 100}, "silver"), NIGHT1)
    assert snapshot(postgres) == fewer
    assert postgres.psql("select count(*) from pg_tables where tablename like '%staging%'") == "0"


def day_state(spark, ds: date, tiers: dict[str, tuple[str, bool]]):
    """subscriber_state rows of a day as the stage reads them: subscriber -> (tier, changed)."""
    return spark.createDataFrame(
        [(s, tier, changed, ds) for s, (tier, changed) in tiers.items()],
        "subscriber_id string, tier string, changed boolean, state_ds date",
    )


def deliver_state(spark, consumer, state, ds: date, root: str = "", mapping=None) -> dict:
    """What the exports stage sends of a day's subscriber_state to one consumer."""
    rows = state_rows(state, delivered_state_keys(spark, root, consumer, ds, mapping))
    if consumer.kind == "jdbc":
        return export_jdbc(spark, consumer, {"subscriber_state": rows}, ds)
    leaving, _ = with_identifier(rows, consumer, mapping)
    return export_files(root, consumer, {"subscriber_state": leaving}, {}, ds)


def test_a_corrected_rerun_replaces_a_state_the_first_run_delivered(spark, postgres):
    """Night 2's first run moved A to gold (bad data); its corrected rerun leaves A as on night 1,
    so A's row is not `changed`, yet the table must lose the gold row: the rerun sends again the
    rows the first run sent (B, unchanged in both runs, stays as it was)."""
    consumer = Consumer(
        "app_rerun", "jdbc", "pseudonym", ("subscriber_state",),
        url=postgres.jdbc_url, user=postgres.user, password=postgres.password, table_prefix="rerun_",
    )  # fmt: skip
    table = "select subscriber_id, tier, state_ds from rerun_subscriber_state order by 1"
    deliver_state(spark, consumer, day_state(spark, NIGHT1, {A: ("silver", True), B: ("member", True)}), NIGHT1)
    first = deliver_state(spark, consumer, day_state(spark, NIGHT2, {A: ("gold", True), B: ("member", False)}), NIGHT2)
    assert first == {"subscriber_state": 1}
    assert postgres.psql(table) == f"{A}|gold|2025-03-02\n{B}|member|2025-03-01"

    corrected = day_state(spark, NIGHT2, {A: ("silver", False), B: ("member", False)})
    assert deliver_state(spark, consumer, corrected, NIGHT2) == {"subscriber_state": 1}
    assert postgres.psql(table) == f"{A}|silver|2025-03-02\n{B}|member|2025-03-01"
    assert deliver_state(spark, consumer, corrected, NIGHT2) == {"subscriber_state": 1}  # and again: the same
    assert postgres.psql(table) == f"{A}|silver|2025-03-02\n{B}|member|2025-03-01"


def test_a_corrected_rerun_rewrites_a_state_the_first_delivery_folder_held(spark, tmp_path):
    """The same for a files consumer keyed by MSISDN: the rerun's folder holds A's corrected row,
    found through the MSISDN the first folder carried."""
    consumer = Consumer("crm_feed", "files", "msisdn", ("subscriber_state",), format="csv")
    mapping = spark.createDataFrame([(A, "33600000001"), (B, "33600000002")], "subscriber_id string, msisdn string")
    root = str(tmp_path)

    def delivered() -> list[str]:
        folder = tmp_path / "crm_feed" / NIGHT2.isoformat() / "subscriber_state"
        return gzip.decompress(next(folder.iterdir()).read_bytes()).decode().splitlines()

    deliver_state(
        spark, consumer, day_state(spark, NIGHT2, {A: ("gold", True), B: ("member", False)}), NIGHT2, root, mapping
    )
    assert delivered() == ["msisdn,tier,state_ds", "33600000001,gold,2025-03-02"]
    corrected = day_state(spark, NIGHT2, {A: ("silver", False), B: ("member", False)})
    manifest = deliver_state(spark, consumer, corrected, NIGHT2, root, mapping)
    assert delivered() == ["msisdn,tier,state_ds", "33600000001,silver,2025-03-02"]
    assert manifest["datasets"]["subscriber_state"]["rows"] == 1
    assert state_rows(corrected).count() == 0  # a first delivery of the corrected day would send nothing
