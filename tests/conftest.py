from __future__ import annotations

import pytest
from pyspark.sql import SparkSession

from jobs.config import DEFAULT_CONF_DIR, load_yaml
from jobs.spark import build_session


@pytest.fixture(scope="session")
def spark() -> SparkSession:
    base = load_yaml(DEFAULT_CONF_DIR / "base.yaml")["spark"]  # JDBC drivers and Delta settings as in runs
    session = build_session(
        {
            "master": "local[2]",
            "app_name": "gamify-tests",
            "packages": base.get("packages") or [],
            "conf": {**(base.get("conf") or {}), "spark.sql.shuffle.partitions": "2"},
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
