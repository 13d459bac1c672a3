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
