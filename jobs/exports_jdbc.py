"""The `jdbc` consumer (PostgreSQL): each dataset staged with Spark, then merged into its table
and the run recorded in one transaction on the driver's JVM; and the subscriber_state keys a
table already holds for a run date (what a rerun sends again)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from jobs.exports import RUN_DATE_COLUMN, Consumer, ExportError, flattened

JDBC_DRIVER = "org.postgresql.Driver"

_PG_TYPES = {
    "string": "text",
    "bigint": "bigint",
    "int": "integer",
    "smallint": "smallint",
    "double": "double precision",
    "float": "real",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}


def pg_type(data_type: T.DataType) -> str:
    if isinstance(data_type, T.ArrayType | T.MapType | T.StructType):
        return "jsonb"
    if isinstance(data_type, T.DecimalType):
        return f"numeric({data_type.precision},{data_type.scale})"
    return _PG_TYPES[data_type.simpleString()]


def merge_statements(consumer: Consumer, name: str, schema: T.StructType, staging: str, ds: date) -> list[str]:
    """SQL that moves one staged dataset into its target inside the run's transaction.

    subscriber_state: upsert by subscriber, never replacing a newer state by an older one (a
    rerun of a past night). Run-date datasets: the run date's rows are deleted, then the staged
    rows upserted, so a rerun leaves exactly the new content."""
    target = f"{consumer.table_prefix}{name}"
    keys = consumer.keys(name)
    columns = [f.name for f in schema.fields]
    definitions = ", ".join(f'"{f.name}" {pg_type(f.dataType)}' for f in schema.fields)
    selected = ", ".join(
        f'CAST("{f.name}" AS jsonb)' if pg_type(f.dataType) == "jsonb" else f'"{f.name}"' for f in schema.fields
    )
    quoted = ", ".join(f'"{c}"' for c in columns)
    updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in columns if c not in keys)
    run_column = RUN_DATE_COLUMN[name]
    statements = [
        f"CREATE TABLE IF NOT EXISTS {target} ({definitions}, PRIMARY KEY ({', '.join(chr(34) + k + chr(34) for k in keys)}))"
    ]
    newer_only = ""
    if name == "subscriber_state":
        newer_only = f' WHERE {target}."{run_column}" <= EXCLUDED."{run_column}"'
    else:
        statements.append(f"DELETE FROM {target} WHERE \"{run_column}\" = DATE '{ds.isoformat()}'")
    statements.append(
        f"INSERT INTO {target} ({quoted}) SELECT {selected} FROM {staging} "
        f"ON CONFLICT ({', '.join(chr(34) + k + chr(34) for k in keys)}) DO UPDATE SET {updates}{newer_only}"
    )
    return statements


def bookkeeping_statements(consumer: Consumer, ds: date, rows: Mapping[str, int]) -> list[str]:
    table = f"{consumer.table_prefix}export_runs"
    statements = [
        f"CREATE TABLE IF NOT EXISTS {table} (run_ds date, dataset text, rows bigint, identifier text, "
        "PRIMARY KEY (run_ds, dataset))"
    ]
    for name, n in sorted(rows.items()):
        statements.append(
            f"INSERT INTO {table} VALUES (DATE '{ds.isoformat()}', '{name}', {int(n)}, '{consumer.identifier}') "
            "ON CONFLICT (run_ds, dataset) DO UPDATE SET rows = EXCLUDED.rows, identifier = EXCLUDED.identifier"
        )
    return statements


def export_jdbc(spark: SparkSession, consumer: Consumer, datasets: Mapping[str, DataFrame], ds: date) -> dict[str, int]:
    """Stage every dataset with Spark, then merge them all and record the run in one transaction."""
    rows: dict[str, int] = {}
    statements: list[str] = []
    staged: list[str] = []
    for name, df in datasets.items():
        staging = f"{consumer.table_prefix}{name}__staging_{ds.strftime('%Y%m%d')}"
        out = flattened(df).localCheckpoint()
        rows[name] = out.count()
        (
            out.write.format("jdbc")
            .option("url", consumer.url)
            .option("dbtable", staging)
            .option("user", consumer.user)
            .option("password", consumer.password)
            .option("driver", JDBC_DRIVER)
            .mode("overwrite")
            .save()
        )
        staged.append(staging)
        statements += merge_statements(consumer, name, df.schema, staging, ds)
    statements += bookkeeping_statements(consumer, ds, rows)
    statements += [f"DROP TABLE IF EXISTS {s}" for s in staged]
    run_transaction(spark, consumer, statements)
    return rows


def run_transaction(spark: SparkSession, consumer: Consumer, statements: Sequence[str]) -> None:
    """Run the statements in one JDBC transaction on the driver's JVM; roll back on any error."""
    with _connection(spark, consumer) as connection:
        connection.setAutoCommit(False)
        statement = connection.createStatement()
        try:
            for sql in statements:
                statement.execute(sql)
            connection.commit()
        except Exception as exc:
            connection.rollback()
            raise ExportError(f"consumer {consumer.name}: transaction rolled back: {_first_line(exc)}") from exc
        finally:
            statement.close()


@contextmanager
def _connection(spark: SparkSession, consumer: Consumer) -> Iterator[Any]:
    """A JDBC connection of the driver's JVM to the consumer's database, closed after use."""
    jvm = spark._jvm
    # the driver jar is on Spark's class loader (spark.jars), not the JVM's system class path
    loader = jvm.org.apache.spark.util.Utils.getContextOrSparkClassLoader()
    driver = jvm.java.lang.Class.forName(JDBC_DRIVER, True, loader).newInstance()
    props = jvm.java.util.Properties()
    props.setProperty("user", consumer.user)
    props.setProperty("password", consumer.password)
    connection = driver.connect(consumer.url, props)
    if connection is None:
        raise ExportError(f"consumer {consumer.name}: the PostgreSQL driver does not accept {consumer.url}")
    try:
        yield connection
    finally:
        connection.close()


def _jdbc_reader(spark: SparkSession, consumer: Consumer) -> Any:
    return (
        spark.read.format("jdbc")
        .option("url", consumer.url)
        .option("user", consumer.user)
        .option("password", consumer.password)
        .option("driver", JDBC_DRIVER)
    )


def _first_line(exc: Exception) -> str:
    text = str(exc)
    match = re.search(r"(PSQLException|SQLException)[^\n]*", text)
    return match.group(0) if match else text.splitlines()[0] if text else type(exc).__name__


def delivered_jdbc_keys(spark: SparkSession, consumer: Consumer, ds: date) -> DataFrame | None:
    """The keys (the consumer's identifier column) of the subscriber_state rows its table holds
    for `ds`; None when the table does not exist yet."""
    target = f"{consumer.table_prefix}subscriber_state"
    with _connection(spark, consumer) as connection:
        statement = connection.createStatement()
        try:
            found = statement.executeQuery(f"SELECT to_regclass('{target}') IS NOT NULL")
            exists = found.next() and found.getBoolean(1)
        finally:
            statement.close()
    if not exists:
        return None
    column = consumer.id_column
    query = f'SELECT "{column}" FROM {target} WHERE "{RUN_DATE_COLUMN["subscriber_state"]}" = DATE \'{ds.isoformat()}\''
    return _jdbc_reader(spark, consumer).option("query", query).load()
