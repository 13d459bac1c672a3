from __future__ import annotations

import pytest

from jobs.config import load_config

# what conf/env/test.yaml sets to interpret expressions instead of generating code
GENERATED_CODE = [
    k for k in load_config(env="test", environ={}).get("spark")["conf"] if k.startswith("spark.sql.codegen.")
]


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
