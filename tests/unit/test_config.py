"""Every configuration file in the repo loads and validates; errors name file, key and problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from jobs.config import DEFAULT_CONF_DIR, ConfigError, load_config
from jobs.sources import Source

pytestmark = pytest.mark.unit

PROD_ENV = {
    "GAMIFY_LAKEHOUSE_ROOT": "s3://lake/gamify",
    "GAMIFY_RAW_ROOT": "s3://landing/extracts",
    "GAMIFY_EXPORTS_ROOT": "s3://deliveries/gamify",
    "GAMIFY_PSEUDONYMISATION_KEY": "k",
    "DWH_JDBC_URL": "jdbc:postgresql://dwh:5432/dw",
    "DWH_USER": "gamify",
    "DWH_PASSWORD": "secret",
}


@pytest.mark.parametrize("env", sorted(p.stem for p in (DEFAULT_CONF_DIR / "env").glob("*.yaml")))
def test_every_environment_loads_and_every_source_parses(env):
    config = load_config(env=env, environ=PROD_ENV)
    assert config.env == env
    sources = [Source.from_config(spec) for spec in config.sources.values()]
    assert {s.kind for s in sources} == {"cdr", "billing", "crm", "app", "network", "dwh", "xiva"}


def test_every_yaml_file_under_conf_parses():
    files = sorted(DEFAULT_CONF_DIR.rglob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_prod_overlay_switches_storage_and_dwh_to_jdbc():
    config = load_config(env="prod", environ=PROD_ENV)
    assert config.get("lakehouse.root") == "s3://lake/gamify"
    assert config.get("spark.conf")["spark.sql.shuffle.partitions"] == 400
    assert "org.postgresql:postgresql:42.7.8" in config.get("spark.packages")  # the JDBC driver shipped
    assert config.sources["dwh_monthly_kpis"]["format"] == "jdbc"
    assert config.sources["dwh_monthly_kpis"]["connection"]["password"] == "secret"
    assert config.sources["cdr"]["format"] == "csv"  # untouched by the overlay


def test_a_missing_secret_names_the_file_and_key():
    with pytest.raises(ConfigError) as error:
        load_config(env="prod", environ={k: v for k, v in PROD_ENV.items() if k != "DWH_PASSWORD"})
    assert error.value.file.endswith("conf/env/prod.yaml")
    assert error.value.key == "sources.dwh_monthly_kpis.connection.password"
    assert "DWH_PASSWORD is not set" in str(error.value)


def test_local_demo_key_is_used_only_when_no_key_is_set():
    assert (
        load_config(env="local", environ={}).get("privacy.pseudonymisation_key")
        == "demo-pseudonymisation-key-not-secret"
    )
    assert (
        load_config(env="local", environ={"GAMIFY_PSEUDONYMISATION_KEY": "real"}).get("privacy.pseudonymisation_key")
        == "real"
    )


@pytest.fixture
def conf_copy(tmp_path) -> Path:
    target = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, target)
    return target


def edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        (lambda d: d.update(kind="telex"), "sources.cdr.kind", "must be one of"),
        (lambda d: d.update(sync_frequency="sometimes"), "sources.cdr.sync_frequency", "must be one of"),
        (
            lambda d: d["contract"].update(duration_s="integer"),
            "sources.cdr.contract.duration_s",
            "unknown type 'integer'",
        ),
        (lambda d: d["connection"].update(path="/data/cdr/today.csv"), "sources.cdr.connection.path", "{ds}"),
        (lambda d: d.update(natural_key=["call_id"]), "sources.cdr.natural_key", "'call_id' is not a contract column"),
        (
            lambda d: d.update(subscriber={"column": "imsi"}),
            "sources.cdr.subscriber.column",
            "must name a contract column",
        ),
        (lambda d: d.update(mappings=[]), "sources.cdr.mappings", "non-empty list"),
        (lambda d: d["connection"].update(password="hunter2"), "connection.password", "${ENV_VAR} references"),
    ],
)
def test_source_errors_name_file_key_and_problem(conf_copy, change, key, message):
    edit(conf_copy / "sources" / "cdr.yaml", change)
    with pytest.raises(ConfigError) as error:
        load_config(conf_copy, env="local", environ={})
    assert error.value.file.endswith("cdr.yaml")
    assert error.value.key == key
    assert message in error.value.message


@pytest.mark.parametrize(
    ("small_data", "key"),
    [
        ({"max_subscribers": "a few", "conf": {}}, "spark.small_data.max_subscribers"),
        ({"max_subscribers": -1, "conf": {}}, "spark.small_data.max_subscribers"),
        ({"max_subscribers": 5000, "conf": ["spark.sql.adaptive.enabled"]}, "spark.small_data.conf"),
    ],
)
def test_small_data_settings_name_the_key_at_fault(conf_copy, small_data, key):
    edit(conf_copy / "base.yaml", lambda d: d["spark"].update(small_data=small_data))
    with pytest.raises(ConfigError) as error:
        load_config(conf_copy, env="local", environ={})
    assert (Path(error.value.file).name, error.value.key) == ("base.yaml", key)


@pytest.mark.parametrize(
    ("listed", "message"),
    [
        ({"events": ["nope"]}, "'nope' is not a non-partition column of events"),
        ({"events": ["event_date"]}, "'event_date' is not a non-partition column of events"),
        ({"behavior_scores": ["engagement_breakdown"]}, "'engagement_breakdown' is map<string,struct<"),
        ({"daily_activity": ["voice_minutes"]}, "must include ['subscriber_id']: maintenance Z-orders by them"),
        ({"events": []}, "must be a non-empty list of column names"),
        ({"event": ["subscriber_id"]}, "no such table; tables: badge_awards, badge_catalog"),
    ],
)
def test_statistics_columns_are_existing_scalar_columns_and_cover_the_z_order(conf_copy, listed, message):
    from jobs.context import stats_columns
    from jobs.docs import configured_specs
    from jobs.validation import config_problems

    edit(conf_copy / "base.yaml", lambda d: d["lakehouse"].update(stats_columns=listed))
    config = load_config(conf_copy, env="local", environ={})
    with pytest.raises(ConfigError) as error:
        stats_columns(config, {spec.name: spec for spec in configured_specs(conf_copy)})
    table = next(iter(listed))
    assert (Path(error.value.file).name, error.value.key) == ("base.yaml", f"lakehouse.stats_columns.{table}")
    assert message in error.value.message
    assert [p for p in config_problems(config) if "stats_columns" in p] == [str(error.value)]


@pytest.mark.parametrize(("lateness", "message"), [(31, "must be at most 30 days, got 31"), (-1, "non-negative")])
def test_the_lateness_window_fits_one_lifetime_fold(conf_copy, lateness, message):
    edit(conf_copy / "base.yaml", lambda d: d["ingest"].update(max_lateness_days=lateness))
    with pytest.raises(ConfigError, match=message) as error:
        load_config(conf_copy, env="local", environ={})
    assert (Path(error.value.file).name, error.value.key) == ("base.yaml", "ingest.max_lateness_days")


@pytest.mark.parametrize("share", [1.5, -0.1, "half", True])
def test_the_changed_share_of_subscriber_state_is_a_fraction(conf_copy, share):
    edit(conf_copy / "base.yaml", lambda d: d["subscriber_state"].update(max_changed_share=share))
    with pytest.raises(ConfigError) as error:
        load_config(conf_copy, env="local", environ={})
    assert (Path(error.value.file).name, error.value.key) == ("base.yaml", "subscriber_state.max_changed_share")


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_requiring_the_gate_for_exports_is_true_or_false(conf_copy, value):
    edit(conf_copy / "base.yaml", lambda d: d["exports"].update(require_gate=value))
    with pytest.raises(ConfigError) as error:
        load_config(conf_copy, env="local", environ={})
    assert (Path(error.value.file).name, error.value.key) == ("base.yaml", "exports.require_gate")


def test_weekly_source_needs_a_weekday(conf_copy):
    edit(conf_copy / "sources" / "xiva.yaml", lambda d: d.update(sync_frequency="weekly"))
    with pytest.raises(ConfigError, match=r"xiva.yaml: sources.xiva.due.weekday: weekly sources need"):
        load_config(conf_copy, env="local", environ={})


def test_broken_yaml_reports_the_line(conf_copy):
    (conf_copy / "base.yaml").write_text("lakehouse:\n  root: [unclosed\n")
    with pytest.raises(ConfigError, match=r"base.yaml: line \d+, column \d+: invalid YAML"):
        load_config(conf_copy, env="local", environ={})


def test_unknown_environment_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown environment 'staging' \(known: local, prod, test"):
        load_config(env="staging", environ={})


def test_due_dates_follow_the_sync_frequency():
    from datetime import date

    config = load_config(env="local", environ={})
    dwh = Source.from_config(config.sources["dwh_monthly_kpis"])
    cdr = Source.from_config(config.sources["cdr"])
    assert [dwh.is_due(date(2025, 3, d)) for d in (1, 2, 31)] == [True, False, False]
    assert all(cdr.is_due(date(2025, 3, d)) for d in range(1, 32))
    assert cdr.path_for(date(2025, 3, 7), "/raw") == "/raw/cdr/2025-03-07/*.csv"
