from __future__ import annotations

import pytest

GENERATED_CODE = ("spark.sql.codegen.wholeStage", "spark.sql.codegen.factoryMode")


@pytest.fixture(scope="module", autouse=True)
def generated_code(spark):
    """The golden day runs with generated code, as production does (the other tests interpret
    expressions: conf/env/test.yaml)."""
    before = {key: spark.conf.get(key, None) for key in GENERATED_CODE}
    for key in GENERATED_CODE:
        spark.conf.unset(key)
    yield
    for key, value in before.items():
        if value is not None:
            spark.conf.set(key, value)
