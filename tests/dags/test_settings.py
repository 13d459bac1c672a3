"""conf/airflow.yaml and the pipeline's shape as the scheduler reads them: no secret needed."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import timedelta

import pytest
import yaml

from jobs.config import DEFAULT_CONF_DIR, ConfigError
from jobs.orchestration.settings import AirflowSettings, pipeline_config, source_shapes
from tests.dags.conftest import edited_conf

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
    conf = edited_conf(tmp_path, "airflow.yaml", lambda data: data["sensors"].pop("monthly"))
    with pytest.raises(ConfigError, match=r"airflow.yaml: sensors: .*missing \['monthly'\]"):
        AirflowSettings.load(conf)


STAGES = ["ingest", "predictions", "activity", "scores", "quality", "exports"]


def settings_with(groups) -> AirflowSettings:
    return dataclasses.replace(AirflowSettings.load(), groups={k: tuple(v) for k, v in groups.items()})


def shape(groups) -> list[tuple[str, tuple[str, ...]]]:
    return [(g.name, g.stages) for g in settings_with(groups).stage_groups(STAGES)]


def test_stages_no_group_names_join_the_group_before_them():
    assert shape({"ingest": ["ingest"], "daily": ["activity"], "publish": ["quality"]}) == [
        ("ingest", ("ingest", "predictions")),
        ("daily", ("activity", "scores")),
        ("publish", ("quality", "exports")),
    ]
    assert shape({}) == [(s, (s,)) for s in STAGES]  # no groups: a task per stage


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ({"a": ["ingest"], "b": ["scorez"]}, r"unknown stages \['scorez'\]"),
        ({"a": ["ingest", "scores"], "b": ["scores"]}, r"stages in two groups \['scores'\]"),
        ({"a": ["ingest"], "b": []}, "an empty group"),
        ({"a": ["activity"]}, "the first stage, ingest, must be in a group"),
        ({"a": ["ingest", "quality"], "b": ["activity"]}, "a is not a contiguous run"),
    ],
)
def test_groups_that_do_not_cut_the_pipeline_into_runs_are_refused(groups, message):
    with pytest.raises(ConfigError, match=rf"airflow.yaml: groups: .*{message}"):
        settings_with(groups).stage_groups(STAGES)


def test_a_run_timeout_shorter_than_the_longest_night_is_refused():
    shipped = AirflowSettings.load()
    assert shipped.dagrun_timeout is None  # sensors and tasks carry their own timeouts
    shipped.check_run_timeout(3)
    # monthly sensors wait up to 24 h; 3 groups x 3 attempts x 240 min = 36 h more
    longest = max(p.timeout for p in shipped.sensors.values()) + 3 * (shipped.retries + 1) * shipped.execution_timeout
    assert longest.total_seconds() / 3600 == 60
    with pytest.raises(
        ConfigError, match=r"airflow.yaml: dagrun_timeout_hours: 20 h is shorter than a night may take \(60 h"
    ):
        dataclasses.replace(shipped, dagrun_timeout=timedelta(hours=20)).check_run_timeout(3)
    dataclasses.replace(shipped, dagrun_timeout=longest).check_run_timeout(3)


def test_the_dag_refuses_a_run_timeout_that_would_skip_a_day(tmp_path):
    from jobs.orchestration.dag_factory import build_nightly_dag

    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    text = (conf / "airflow.yaml").read_text().replace("dagrun_timeout_hours: null", "dagrun_timeout_hours: 20")
    (conf / "airflow.yaml").write_text(text)
    with pytest.raises(ConfigError, match="dagrun_timeout_hours: 20 h is shorter"):
        build_nightly_dag(conf_dir=str(conf))
    (conf / "airflow.yaml").write_text(text.replace("dagrun_timeout_hours: 20", "dagrun_timeout_hours: 72"))
    assert build_nightly_dag(conf_dir=str(conf)).dagrun_timeout == timedelta(hours=72)


def test_a_schedule_outside_utc_is_refused_as_it_would_shift_the_run_date(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, conf)
    data = yaml.safe_load((conf / "airflow.yaml").read_text())
    data["schedule"]["timezone"] = "Europe/Paris"
    (conf / "airflow.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"airflow.yaml: schedule.timezone: Europe/Paris: only UTC is supported"):
        AirflowSettings.load(conf)
