"""The DWH source over JDBC against a real PostgreSQL, configured by the production overlay
(conf/env/prod.yaml): credentials from the environment, `{prev_month}` bound from the run date,
partitioned reads, readable errors without the password, and the readiness probe of the sensor."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.config import load_config
from jobs.context import RunContext, build_lakehouse
from jobs.jdbc import JdbcError, bind_query, probe
from jobs.pipeline import run_stages
from jobs.privacy import pseudonymise_py
from jobs.sources import Source, SourceError, read_extract
from jobs.spark import cached_jars, required_packages
from jobs.tables import EVENTS, PIPELINE_RUNS, SUBSCRIBER_PROFILE, schema_of

pytestmark = pytest.mark.integration

DS = date(2025, 3, 1)
KEY = "jdbc-test-key"
# (msisdn, month, arpu, tenure_months): February is the month the 1 March run loads
KPIS = [
    ("33611111111", "2025-02", "12.50", 14),
    ("33622222222", "2025-02", "30.00", 3),
    ("33633333333", "2025-02", "8.75", 40),
    ("33644444444", "2025-02", "55.10", 27),
    ("33611111111", "2025-01", "11.00", 13),
]


@pytest.fixture(scope="module")
def warehouse(postgres):
    rows = ",\n".join(
        f"('{m}', '{month}', {arpu}, {tenure}, {arpu} * 3, 1024.5, 60.0, 12)" for m, month, arpu, tenure in KPIS
    )
    postgres.psql(
        "create schema if not exists marts;"
        "drop table if exists marts.subscriber_monthly_kpis;"
        "create table marts.subscriber_monthly_kpis (msisdn text, month text, arpu numeric(12,2), "
        "tenure_months int, total_revenue numeric(12,2), data_mb float8, voice_minutes float8, sms_count int);"
        f"insert into marts.subscriber_monthly_kpis values {rows};"
    )
    return postgres


def prod_config(tmp_path, postgres, **overrides):
    environ = {
        "GAMIFY_LAKEHOUSE_ROOT": str(tmp_path / "lakehouse"),
        "GAMIFY_RAW_ROOT": str(tmp_path / "raw"),
        "GAMIFY_EXPORTS_ROOT": str(tmp_path / "exports"),
        "GAMIFY_PSEUDONYMISATION_KEY": KEY,
        "DWH_JDBC_URL": postgres.jdbc_url,
        "DWH_USER": postgres.user,
        "DWH_PASSWORD": postgres.password,
    }
    return load_config(env="prod", environ=environ, overrides=overrides)


def dwh_source(config) -> Source:
    return Source.from_config(config.sources["dwh_monthly_kpis"], config.file_of("sources.dwh_monthly_kpis"))


def test_placeholders_are_bound_from_the_run_date_and_other_braces_are_left_alone():
    query = "select '{1,2}'::int[] as a, x from t where month = '{prev_month}' and d <= '{ds}' and k = '{other}'"
    assert bind_query(query, DS) == (
        "select '{1,2}'::int[] as a, x from t where month = '2025-02' and d <= '2025-03-01' and k = '{other}'"
    )


def test_the_prod_query_reads_the_previous_month(spark, warehouse, tmp_path):
    config = prod_config(tmp_path, warehouse)
    assert config.sources["dwh_monthly_kpis"]["connection"]["password"] == warehouse.password  # from the env
    df = read_extract(spark, dwh_source(config), DS, str(tmp_path / "raw")).rows
    rows = sorted((r.msisdn, r.month, str(r.arpu), r.tenure_months) for r in df.collect())
    assert rows == sorted((m, month, arpu, tenure) for m, month, arpu, tenure in KPIS if month == "2025-02")


def read_in_partitions(spark, warehouse, tmp_path, column: str):
    """The DWH extract read in 3 partitions of `column`, bounds from the data."""
    overrides = {
        "sources.dwh_monthly_kpis.connection.partition_column": column,
        "sources.dwh_monthly_kpis.connection.num_partitions": 3,
    }
    config = prod_config(tmp_path, warehouse, **overrides)
    return read_extract(spark, dwh_source(config), DS, str(tmp_path / "raw")).rows


def test_a_large_extract_is_read_in_partitions(spark, warehouse, tmp_path):
    df = read_in_partitions(spark, warehouse, tmp_path, "tenure_months")
    assert df.rdd.getNumPartitions() == 3
    sizes = sorted(df.rdd.glom().map(len).collect())
    assert sum(sizes) == 4 and sizes[-1] < 4  # the rows are spread, none lost
    assert sorted(r.tenure_months for r in df.collect()) == [3, 14, 27, 40]


def test_an_unreachable_database_names_host_port_and_database_never_the_password(spark, warehouse, tmp_path):
    config = prod_config(tmp_path, warehouse)
    source = dwh_source(config)
    wrong_port = {**source.connection, "url": f"jdbc:postgresql://127.0.0.1:1/{warehouse.database}"}
    unreachable = Source.from_config({**config.sources["dwh_monthly_kpis"], "connection": wrong_port})
    with pytest.raises(SourceError) as error:
        read_extract(spark, unreachable, DS, str(tmp_path / "raw"))
    message = str(error.value)
    assert "dwh_monthly_kpis" in message and "'warehouse' at 127.0.0.1:1" in message
    assert warehouse.password not in message

    bad_password = {**source.connection, "password": "not-the-password-" + warehouse.password[:4]}
    refused = Source.from_config({**config.sources["dwh_monthly_kpis"], "connection": bad_password})
    with pytest.raises(SourceError) as error:
        read_extract(spark, refused, DS, str(tmp_path / "raw"))
    assert "password authentication failed" in str(error.value)
    assert bad_password["password"] not in str(error.value)


def test_the_readiness_probe_answers_for_the_warehouse(warehouse, tmp_path):
    config = prod_config(tmp_path, warehouse)
    jars = cached_jars(required_packages(config.get("spark")))
    assert any(Path(j).name.startswith("org.postgresql_postgresql-") for j in jars), (
        jars
    )  # cached by the session fixture
    connection = config.sources["dwh_monthly_kpis"]["connection"]
    probe(jars, connection, "select 1 from marts.subscriber_monthly_kpis limit 1")
    with pytest.raises(JdbcError, match=r"not ready: postgresql database 'warehouse' at 127\.0\.0\.1:1") as error:
        probe(jars, {**connection, "url": f"jdbc:postgresql://127.0.0.1:1/{warehouse.database}"}, timeout_s=5)
    assert warehouse.password not in str(error.value)


def test_the_ingest_stage_loads_the_warehouse_into_events(spark, warehouse, tmp_path):
    config = prod_config(tmp_path, warehouse)
    lakehouse = build_lakehouse(spark, config)
    known = [
        (pseudonymise_py(m, KEY, "33"), "PRE_S", "PREPAID", date(2024, 1, 1), "ACTIVE", "25-34", "North", DS)
        for m in ("33611111111", "33622222222", "33633333333")  # 33644444444 is not a subscriber
    ]
    lakehouse.write(
        spark.createDataFrame(known, schema_of(SUBSCRIBER_PROFILE)),
        SUBSCRIBER_PROFILE,
        partition_by=["snapshot_date"],
        replace_where={"snapshot_date": DS},
    )
    run_stages(RunContext(spark, config, lakehouse, DS, only_sources=["dwh_monthly_kpis"]), ["ingest"])
    events = lakehouse.read(EVENTS).filter(F.col("source") == "dwh_monthly_kpis")
    assert sorted(round(float(r.amount), 2) for r in events.collect()) == [8.75, 12.5, 30.0]
    run = lakehouse.read(PIPELINE_RUNS).filter(F.col("source") == "dwh_monthly_kpis").first()
    # 4 February rows: 3 known subscribers accepted, the fourth quarantined as unknown
    assert (run.status, run.rows_read, run.rows_accepted, run.rows_rejected) == ("succeeded", 4, 3, 1)
    assert warehouse.password not in (run.message or "")


def test_a_decimal_partition_column_is_read_in_partitions_with_bounds_from_the_data(spark, warehouse, tmp_path):
    """arpu is numeric(12,2): its min/max (8.75, 55.10) are not whole numbers, which Spark's
    numeric partition bounds must be."""
    df = read_in_partitions(spark, warehouse, tmp_path, "arpu")
    assert df.rdd.getNumPartitions() == 3
    assert sorted(str(r.arpu) for r in df.collect()) == ["12.50", "30.00", "55.10", "8.75"]
