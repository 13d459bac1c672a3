from __future__ import annotations

import pytest

from jobs.config import load_config
from jobs.spark import BASE_CONF, scoped_sql_conf

# what conf/env/test.yaml sets for tiny data (interpreted expressions, no adaptive re-planning),
# with the value production runs: the base setting, or unset for Spark's default
PRODUCTION_SQL = {
    key: BASE_CONF.get(key)
    for key in load_config(env="test", environ={}).get("spark")["conf"]
    if key.startswith(("spark.sql.codegen.", "spark.sql.adaptive."))
}


@pytest.fixture(scope="module", autouse=True)
def production_sql(spark):
    """The golden day runs with generated code and adaptive execution, as production does (the
    other tests interpret expressions and plan once: conf/env/test.yaml)."""
    with scoped_sql_conf(spark, PRODUCTION_SQL):
        yield
