"""conf/airflow.yaml and the pipeline's shape as the scheduler reads them: no secret needed."""

from __future__ import annotations

import shutil

import pytest
import yaml

from jobs.config import DEFAULT_CONF_DIR, ConfigError
from jobs.orchestration.settings import AirflowSettings, pipeline_config, source_shapes

pytestmark = pytest.mark.unit


def test_production_shape_parses_without_its_secrets(monkeypatch):
    monkeypatch.setenv("GAMIFY_ENV", "prod")
    for name in ("GAMIFY_LAKEHOUSE_ROOT", "GAMIFY_RAW_ROOT", "GAMIFY_PSEUDONYMISATION_KEY", "DWH_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    config = pipeline_config()
    assert config.get("lakehouse.root") == "<GAMIFY_LAKEHOUSE_ROOT>"
    shapes = {s.name: s for s in source_shapes(config)}
    assert not shapes["dwh_monthly_kpis"].has_extract  # a JDBC query in production: no file to wait for
    assert shapes["cdr"].has_extract and shapes["cdr"].mandatory


def test_a_missing_sensor_policy_is_named(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    data = yaml.safe_load((conf / "airflow.yaml").read_text())
    del data["sensors"]["monthly"]
    (conf / "airflow.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"airflow.yaml: sensors: .*missing \['monthly'\]"):
        AirflowSettings.load(conf)
