from __future__ import annotations

import pytest
from pyspark.sql import SparkSession

from jobs.spark import build_session


@pytest.fixture(scope="session")
def spark() -> SparkSession:
    session = build_session(
        {"master": "local[2]", "app_name": "gamify-tests", "conf": {"spark.sql.shuffle.partitions": "2"}}
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
