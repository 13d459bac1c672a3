"""The JDBC export against a real PostgreSQL: one transaction per run date, idempotent reruns."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from jobs.exports import Consumer, ExportError, export_jdbc

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
