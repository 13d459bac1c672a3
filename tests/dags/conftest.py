"""Airflow for the DAG tests: a throwaway AIRFLOW_HOME (SQLite), this repository's dags/ folder,
no example DAGs, and a local spark_default connection. Airflow reads its configuration when it is
first imported, so this runs before any test module imports it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DAG_ID = "gamification_nightly"
LOCAL_SPARK = json.dumps({"conn_type": "spark", "host": "local[2]"})

_home = tempfile.mkdtemp(prefix="airflow-home-")
os.environ.update(
    {
        "AIRFLOW_HOME": _home,
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_SPARK_DEFAULT": LOCAL_SPARK,
    }
)


def edited_conf(tmp_path: Path, file: str, edit) -> Path:
    """A copy of the repository's conf/ under `tmp_path` whose YAML `file` `edit` changed in place."""
    import yaml

    from jobs.config import DEFAULT_CONF_DIR

    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    data = yaml.safe_load((conf / file).read_text())
    edit(data)
    (conf / file).write_text(yaml.safe_dump(data))
    return conf


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_home, ignore_errors=True)


@pytest.fixture(autouse=True)
def restored_environ():
    """Tasks run in-process by `dag.test()` export their context (AIRFLOW_CTX_DAG_RUN_ID, ...) into
    os.environ; later tests in this process would otherwise stamp their commits with that run."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def dagbag():
    """The dags/ folder parsed as the DAG processor parses it, with its parse time."""
    from airflow.dag_processing.dagbag import DagBag

    started = time.monotonic()
    bag = DagBag(dag_folder=str(DAGS))
    bag.parse_seconds = time.monotonic() - started
    return bag


@pytest.fixture(scope="session")
def dag(dagbag):
    return dagbag.dags[DAG_ID]
