from __future__ import annotations

import pytest
from pyspark.sql import SparkSession

from jobs.config import load_config
from jobs.spark import build_session


@pytest.fixture(scope="session")
def spark() -> SparkSession:
    """One session for the whole run, built from the test environment's `spark:` block
    (conf/env/test.yaml) with the JDBC driver beside Delta's jars."""
    session = build_session(load_config(env="test", environ={}).get("spark"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server of its own for the session (Debian's `postgresql` binaries)."""
    from tests.support.postgres import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()
