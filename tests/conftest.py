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


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """`make test` runs the suite on two pytest-xdist workers (`--dist loadgroup`), each taking
    whole groups: the tests of the shared nightly runs (the session `pipeline` fixture) form one,
    every other module another, so no fixture is built twice. The shared runs' group goes first:
    it is the longest."""
    groups = {}
    for item in items:
        shared = item._fixtureinfo.name2fixturedefs.get("pipeline")
        groups[item] = "pipeline" if shared and shared[-1].scope == "session" else item.module.__name__
        item.add_marker(pytest.mark.xdist_group(groups[item]))
    items.sort(key=lambda item: groups[item] != "pipeline")
