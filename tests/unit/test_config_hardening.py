"""Configuration that an attacker or a typo could abuse: strict YAML, secrets, paths, the
command line and `config validate` reporting every problem with its position."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml

from jobs.cli import build_parser, main
from jobs.config import DEFAULT_CONF_DIR, ConfigError, load_config, path_template_problem, render_template
from jobs.validation import config_problems, mask_url, masked

pytestmark = pytest.mark.unit


@pytest.fixture
def conf_copy(tmp_path) -> Path:
    target = tmp_path / "conf"
    shutil.copytree(DEFAULT_CONF_DIR, target)
    shutil.copytree(DEFAULT_CONF_DIR.parent / "templates", tmp_path / "templates")
    return target


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


# ------------------------------------------------------------------------------------- YAML


def test_duplicate_keys_are_refused_with_their_line(conf_copy):
    _replace(conf_copy / "sources" / "cdr.yaml", "active: true\n", "active: true\nactive: false\n")
    with pytest.raises(ConfigError) as error:
        load_config(conf_copy, env="local", environ={})
    assert error.value.file.endswith("cdr.yaml")
    assert "duplicate key 'active' (first defined on line" in error.value.message
    assert error.value.key.startswith("line ")


def test_an_alias_bomb_is_refused_at_once(conf_copy):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    (conf_copy / "base.yaml").write_text((conf_copy / "base.yaml").read_text() + bomb)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases"):
        load_config(conf_copy, env="local", environ={})
    assert time.perf_counter() - started < 5


def test_oversized_files_are_refused(conf_copy):
    path = conf_copy / "sources" / "cdr.yaml"
    path.write_text(path.read_text() + "#" + "x" * 1_000_001 + "\n")
    with pytest.raises(ConfigError, match="larger than 1,000,000 bytes"):
        load_config(conf_copy, env="local", environ={})


# ---------------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("password", "${DB_PASSWORD:-hunter2}", "must not hold a real value"),
        ("AWS_SECRET_ACCESS_KEY", "AKIAEXAMPLE", "references"),
        ("AZURE_STORAGE_ACCOUNT_KEY", "abc==", "references"),
        ("passwd", "hunter2", "references"),
        ("url", "jdbc:postgresql://bob:hunter2@db:5432/x", "literal password"),
        ("url", "jdbc:sqlserver://db;user=bob;password=hunter2", "literal password"),
        ("url", "jdbc:postgresql://bob:${DB_PASSWORD:-hunter2}@db:5432/x", "must not hold a real value"),
        ("url", "jdbc:sqlserver://db;user=bob;password=${DB_PASSWORD:-hunter2}", "must not hold a real value"),
        # Spark/Hadoop settings name their secrets with dots
        ("spark.hadoop.fs.s3a.secret.key", "wJalrXUtnFEMI", "references"),
        ("spark.hadoop.fs.s3a.access.key", "AKIAEXAMPLE", "references"),
        ("spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net", "abc==", "references"),
    ],
)
def test_literal_secrets_are_refused(conf_copy, key, value, message):
    data = yaml.safe_load((conf_copy / "base.yaml").read_text())
    data.setdefault("lakehouse", {}).setdefault("storage_options", {})[key] = value
    (conf_copy / "base.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as error:
        load_config(conf_copy, env="local", environ={})
    assert error.value.file.endswith("base.yaml") and message in error.value.message


def test_references_and_demo_defaults_are_accepted(conf_copy):
    data = yaml.safe_load((conf_copy / "base.yaml").read_text())
    data["lakehouse"]["storage_options"] = {
        "AWS_SECRET_ACCESS_KEY": "${AWS_SECRET_ACCESS_KEY}",
        "url": "jdbc:postgresql://bob:${DB_PASSWORD}@db/x",
        "token": "${TOKEN:-local-demo-not-secret}",
    }
    (conf_copy / "base.yaml").write_text(yaml.safe_dump(data))
    config = load_config(conf_copy, env="local", environ={"AWS_SECRET_ACCESS_KEY": "s", "DB_PASSWORD": "p"})
    assert config.get("lakehouse.storage_options.token") == "local-demo-not-secret"


def test_config_show_masks_every_secret():
    shown = masked(
        {
            "privacy": {"pseudonymisation_key": "k1"},
            "sources": {
                "dwh": {"connection": {"url": "jdbc:postgresql://bob:pw1@db/x?password=pw2", "password": "pw3"}}
            },
            "lakehouse": {"storage_options": {"AWS_SECRET_ACCESS_KEY": "pw4", "AWS_REGION": "eu-west-1"}},
            "spark": {"conf": {"spark.hadoop.fs.s3a.secret.key": "pw5", "spark.sql.shuffle.partitions": 4}},
            "natural_key": ["msisdn"],
        }
    )
    assert shown == {
        "privacy": {"pseudonymisation_key": "***"},
        "sources": {"dwh": {"connection": {"url": "jdbc:postgresql://bob:***@db/x?password=***", "password": "***"}}},
        "lakehouse": {"storage_options": {"AWS_SECRET_ACCESS_KEY": "***", "AWS_REGION": "eu-west-1"}},
        "spark": {"conf": {"spark.hadoop.fs.s3a.secret.key": "***", "spark.sql.shuffle.partitions": 4}},
        "natural_key": ["msisdn"],
    }
    assert mask_url("https://example.org/a") == "https://example.org/a"


def test_config_show_prints_no_password(capsys, monkeypatch):
    environ = {
        "GAMIFY_LAKEHOUSE_ROOT": "/tmp/lh",
        "GAMIFY_RAW_ROOT": "/tmp/raw",
        "GAMIFY_EXPORTS_ROOT": "/tmp/exports",
        "GAMIFY_PSEUDONYMISATION_KEY": "pk-Secret-1",
        "DWH_JDBC_URL": "jdbc:postgresql://bob:url-Secret-2@dwh:5432/dw",
        "DWH_USER": "bob",
        "DWH_PASSWORD": "pw-Secret-3",
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["config", "show", "--env", "prod"]) == 0
    out = capsys.readouterr().out
    assert "Secret-" not in out and "jdbc:postgresql://bob:***@dwh:5432/dw" in out


# ------------------------------------------------------------------------------------ paths


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{raw_root}/cdr/{ds}/*.csv", None),
        ("{raw_root}/../../etc/{ds}/*.csv", "must not contain '..'"),
        ("/etc/{ds}/passwd", "must start with {raw_root}/"),
        ("s3://other-bucket/{ds}/*.csv", "must start with {raw_root}/"),
        ("{raw_root}/file:///etc/{ds}", "URI scheme"),
        ("{raw_root}/x/{ds.__class__}", "unknown placeholder(s) {ds.__class__}"),
        ("{raw_root}/x/{ds!r}", "unknown placeholder(s) {ds!r}"),
        ("{raw_root}/x\\..\\{ds}", "backslashes"),
        ("{raw_root}/x/{ds}/{raw_root}", "{raw_root} may only start"),
    ],
)
def test_source_paths_cannot_leave_raw_root(template, problem):
    got = path_template_problem(template)
    assert (got is None) if problem is None else (problem in got)


def test_templates_substitute_known_placeholders_only():
    assert render_template("{raw_root}/a/{ds}", {"raw_root": "/r", "ds": "2025-03-01"}) == "/r/a/2025-03-01"
    with pytest.raises(ValueError, match="unknown placeholder"):
        render_template("{ds.__class__.__mro__}", {"ds": "x"})


def test_a_path_leaving_raw_root_is_refused_on_load(conf_copy):
    _replace(conf_copy / "sources" / "cdr.yaml", '"{raw_root}/cdr/{ds}/*.csv"', '"{raw_root}/../{ds}/*.csv"')
    with pytest.raises(ConfigError, match=r"sources.cdr.connection.path: must not contain '..'"):
        load_config(conf_copy, env="local", environ={})


# ------------------------------------------------------------------------- command line


@pytest.mark.parametrize("argv", [["--env", "prod", "config", "validate"], ["config", "validate", "--env", "prod"]])
def test_env_is_accepted_before_or_after_the_subcommand(argv):
    assert build_parser().parse_args(argv).env == "prod"


def test_env_defaults_to_none():
    args = build_parser().parse_args(["config", "validate"])
    assert (args.env, args.conf_dir, args.verbose) == (None, None, False)


# --------------------------------------------------------------------------- validate


def test_validate_reports_every_problem_with_file_line_and_column(conf_copy):
    cdr = conf_copy / "sources" / "cdr.yaml"
    _replace(cdr, "quantity: {expr: duration_s / 60.0}", "quantity: {expr: record_type + 1}")
    _replace(cdr, "  - rule: duration_s >= 0", "  - rule: duration_s > 'abc'")
    _replace(cdr, "  other_party:", "  subscriber_id: string\n  other_party:")
    problems = config_problems(load_config(conf_copy, env="local", environ={}))
    text = "\n".join(problems)
    lines = cdr.read_text().splitlines()
    rule_line = next(i for i, line in enumerate(lines, 1) if "duration_s > 'abc'" in line)
    expr_line = next(i for i, line in enumerate(lines, 1) if "record_type + 1" in line)
    assert f"cdr.yaml:{rule_line}:22: cannot compare a number with a string" in text
    assert f"cdr.yaml:{expr_line}:" in text and "'+' needs numbers (strings cannot be joined)" in text
    assert "raw column 'subscriber_id' has the name of a column the pipeline adds" in text
    assert len(problems) == 3


def test_validate_reports_broken_quality_airflow_and_scoring_files(conf_copy):
    (conf_copy / "airflow.yaml").write_text("tasks: [1, 2\n")
    _replace(
        conf_copy / "scoring.yaml",
        'spend_30:             {expr: "recharge_amount_30 + bill_amount_30"}',
        'spend_30:             {expr: "recharge_amount_30 + bill_amount_3O"}',
    )
    (conf_copy / "quality.yaml").write_text("tables: {a: 1}\ntables: {}\n")
    text = "\n".join(config_problems(load_config(conf_copy, env="local", environ={})))
    assert "airflow.yaml: line 2" in text and "invalid YAML" in text
    assert "unknown name 'bill_amount_3O'" in text
    assert "quality.yaml: line 2, column 1: invalid YAML: duplicate key 'tables'" in text


def test_a_lakehouse_root_delta_rs_would_misread_is_a_problem_naming_the_key():
    config = load_config(env="local", environ={}, overrides={"lakehouse.root": "/data/lake%20house"})
    (problem,) = config_problems(config)
    assert problem.startswith(f"{config.file_of('lakehouse.root')}: lakehouse.root: ")
    assert "holds '%20', which delta-rs" in problem


def test_repository_configuration_has_no_problem():
    for env in ("local", "test"):
        assert config_problems(load_config(env=env, environ={})) == []


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("segments.yaml", "rule: risk >= 25", "rule: payment_type + 1 > 2", "'+' needs numbers"),
        ("segments.yaml", "rule: risk >= 25", "rule: risk > 'abc'", "cannot compare a number with a string"),
        ("segments.yaml", "rule: risk >= 25", "rule: risk + 25", "must be a condition (true/false)"),
        ("loyalty.yaml", 'rule: "points_balance >= 200"', 'rule: "points_balance + 200"', "must be a condition"),
        ("campaigns.yaml", 'rule: "days_since_active >= 14"', 'rule: "segment > 14"', "cannot compare a string"),
    ],
)
def test_rule_type_errors_are_found_at_validate_time(conf_copy, file, old, new, message):
    _replace(conf_copy / file, old, new)
    text = "\n".join(config_problems(load_config(conf_copy, env="local", environ={})))
    assert file in text and message in text


def test_a_run_with_a_broken_rule_stops_before_any_spark_work(conf_copy, capsys):
    _replace(conf_copy / "segments.yaml", "rule: risk >= 25", "rule: risk > 'high'")
    code = main(["run", "--ds", "2025-03-01", "--conf-dir", str(conf_copy), "--env", "test"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("1 configuration problem(s), nothing was run:")
    assert "segments.yaml" in err and "cannot compare a number with a string" in err
