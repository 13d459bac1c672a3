"""Reading a warehouse over JDBC: date placeholders bound safely, credentials from the
environment only, partitioned reads for large extracts, and errors that name the server but
never the password.

A query may use `{ds}`, `{ds_nodash}`, `{prev_month}`, `{month_start}` and `{prev_month_start}`:
each is replaced by a value computed from the run date alone (digits and dashes, checked), so
nothing from data or configuration text is ever spliced into SQL, and any other brace (an
array literal, a JSON path) is left as written. Quote them as the database expects, e.g.
`where month = '{prev_month}'`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from pyspark.sql import DataFrame, SparkSession

PLACEHOLDERS = ("ds", "ds_nodash", "prev_month", "month_start", "prev_month_start")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
_SAFE_VALUE = re.compile(r"^[0-9-]+$")
_URL = re.compile(r"^jdbc:(?P<driver>[a-z0-9]+):(?://(?P<host>[^/:;?]+)(?::(?P<port>\d+))?)?/?(?P<database>[^?;]*)")


class JdbcError(RuntimeError):
    pass


@dataclass(frozen=True)
class Endpoint:
    """Where a JDBC URL points, for messages: never credentials."""

    driver: str
    host: str
    port: str
    database: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        match = _URL.match(url or "")
        if not match:
            return cls("?", "?", "?", "?")
        return cls(match["driver"], match["host"] or "?", match["port"] or "default port", match["database"] or "?")

    def __str__(self) -> str:
        return f"{self.driver} database {self.database!r} at {self.host}:{self.port}"


def placeholder_values(ds: date) -> dict[str, str]:
    month_start = ds.replace(day=1)
    prev_month_start = (month_start - timedelta(days=1)).replace(day=1)
    return {
        "ds": ds.isoformat(),
        "ds_nodash": ds.strftime("%Y%m%d"),
        "prev_month": prev_month_start.strftime("%Y-%m"),
        "month_start": month_start.isoformat(),
        "prev_month_start": prev_month_start.isoformat(),
    }


def bind_query(query: str, ds: date) -> str:
    """The query with its date placeholders replaced by values of the run date."""
    values = placeholder_values(ds)
    if any(not _SAFE_VALUE.match(v) for v in values.values()):  # dates only ever render this way
        raise JdbcError(f"unexpected placeholder value for {ds!r}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], query)


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def read_query(spark: SparkSession, connection: Mapping[str, Any], query: str, *, name: str) -> DataFrame:
    """A DataFrame over `query` (already bound), partitioned when `partition_column` is set.

    connection: url, user, password (both from ${ENV}), optional driver, fetchsize, and for
    large extracts partition_column with num_partitions (and optional lower_bound/upper_bound;
    without them a min/max query finds them first).
    """
    url = str(connection["url"])
    endpoint = Endpoint.parse(url)
    password = str(connection.get("password") or "")
    options = {
        "url": url,
        "fetchsize": str(connection.get("fetchsize", 10000)),
        "driver": str(connection.get("driver") or _default_driver(url)),  # jars on spark.jars: name the class
    }
    for option in ("user", "password"):
        if connection.get(option):
            options[option] = str(connection[option])

    def reader():
        return spark.read.format("jdbc").options(**options)

    try:
        column = connection.get("partition_column")
        if not column:
            return reader().option("query", query).load()
        lower, upper = connection.get("lower_bound"), connection.get("upper_bound")
        if lower is None or upper is None:
            bounds = (
                reader()
                .option("query", f"select min({column}) as lo, max({column}) as hi from ({query}) bounds")
                .load()
                .first()
            )
            lower, upper = bounds["lo"], bounds["hi"]
            if lower is None:  # empty extract: one partition is enough
                return reader().option("query", query).load()
        return (
            reader()
            .option("dbtable", f"({query}) extract")
            .option("partitionColumn", column)
            .option("lowerBound", _bound(lower, math.floor))
            .option("upperBound", _bound(upper, math.ceil))
            .option("numPartitions", str(connection.get("num_partitions", 8)))
            .load()
        )
    except Exception as exc:
        reason = _redact(_root_cause(exc), [password])
        raise JdbcError(f"source {name}: cannot read from {endpoint}: {reason}") from None


def _bound(value: Any, whole: Callable[[Any], int]) -> str:
    """A partition bound as Spark parses it: a numeric column's bounds are whole numbers (a
    min/max of a numeric or float column, 8.75 or 3.000000000000000000, is rounded outwards; the
    first and last partitions are open-ended anyway), dates and timestamps as written."""
    if isinstance(value, Decimal | float):
        return str(whole(value))
    return str(value)


def _root_cause(exc: BaseException) -> str:
    """The database's own words: the innermost Java cause's message, else the first line."""
    # pyspark's captured exceptions keep the Java throwable as _origin; py4j's as java_exception
    throwable = getattr(exc, "_origin", None) or getattr(exc, "java_exception", None)
    message = None
    while throwable is not None:
        message = throwable.getMessage() or message
        throwable = throwable.getCause()
    if message:
        return str(message).strip().splitlines()[0][:500]
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def probe(jars: list[str], connection: Mapping[str, Any], query: str = "select 1", timeout_s: int = 30) -> None:
    """Run a cheap readiness query in a small JVM (no Spark application): raises JdbcError if
    the database cannot be reached or answers with an error. Used by the Airflow sensor."""
    from pyspark import SparkConf
    from pyspark.java_gateway import launch_gateway

    url = str(connection["url"])
    password = str(connection.get("password") or "")
    conf = SparkConf(loadDefaults=False).set("spark.jars", ",".join(jars)).set("spark.ui.enabled", "false")
    gateway = launch_gateway(conf)
    try:
        jvm = gateway.jvm
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        driver_class = str(connection.get("driver") or _default_driver(url))
        driver = loader.loadClass(driver_class).newInstance()
        props = jvm.java.util.Properties()
        for key in ("user", "password"):
            if connection.get(key):
                props.setProperty(key, str(connection[key]))
        props.setProperty("loginTimeout", str(timeout_s))
        props.setProperty("connectTimeout", str(timeout_s))
        try:
            conn = driver.connect(url, props)
            try:
                statement = conn.createStatement()
                statement.setQueryTimeout(timeout_s)
                statement.executeQuery(query).close()
            finally:
                conn.close()
        except Exception as exc:
            reason = _redact(_root_cause(exc), [password])
            raise JdbcError(f"not ready: {Endpoint.parse(url)}: {reason}") from None
    finally:
        gateway.shutdown()
        gateway.proc.kill()


def _default_driver(url: str) -> str:
    drivers = {"postgresql": "org.postgresql.Driver"}
    kind = Endpoint.parse(url).driver
    if kind not in drivers:
        raise JdbcError(f"no default JDBC driver class for {kind!r}: set connection.driver")
    return drivers[kind]
