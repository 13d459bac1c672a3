from __future__ import annotations

import pytest
from pyspark.sql import SparkSession

from jobs.config import load_config
from jobs.spark import build_session


@pytest.fixture(scope="session")
def spark() -> SparkSession:
    packages = load_config(env="test", environ={}).get("spark.packages")  # the JDBC driver beside Delta's jars
    session = build_session(
        {
            "master": "local[2]",
            "app_name": "gamify-tests",
            "packages": packages,
            "conf": {"spark.sql.shuffle.partitions": "2"},
        }
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of its own for the session (Debian's `postgresql` binaries)."""
    from tests.support.postgres import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()
