"""The stages' config loaders (each file parsed once per Config) and the pure lifetime fold
the badges stage runs (settled state + recent days -> subscriber_lifetime rows)."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import date, timedelta

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from jobs import lifetime
from jobs.config import DEFAULT_CONF_DIR, ConfigError, load_config
from jobs.metrics import MetricRegistry
from jobs.stages import settings

pytestmark = pytest.mark.unit

D = date(2025, 5, 20)

LOADERS = (
    settings.metric_registry,
    settings.scoring_config,
    settings.segment_rules,
    settings.mission_settings,
    settings.offer_catalogue,
    settings.template_set,
    settings.badge_types,
    settings.loyalty_settings,
    settings.campaign_settings,
    settings.prediction_contract,
    settings.export_settings,
)


def _conf_copy(tmp_path):
    """conf/ and templates/ side by side, as a checkout has them, to edit."""
    shutil.copytree(DEFAULT_CONF_DIR, tmp_path / "conf")
    shutil.copytree(DEFAULT_CONF_DIR.parent / "templates", tmp_path / "templates")
    return tmp_path / "conf"


def test_every_loader_parses_its_files_once_per_config(monkeypatch):
    loads = []
    load = MetricRegistry.load.__func__
    monkeypatch.setattr(MetricRegistry, "load", classmethod(lambda cls, path: loads.append(path) or load(cls, path)))
    config = load_config(env="test", environ={})
    first = [loader(config) for loader in LOADERS]
    again = [loader(config) for loader in LOADERS]
    for loader, a, b in zip(LOADERS, first, again, strict=True):
        if isinstance(a, list):  # badge_types: a list of its own for each caller, the same types
            assert a == b and a is not b and all(x is y for x, y in zip(a, b, strict=True)), loader.__name__
        else:
            assert a is b, loader.__name__
    # metrics.yaml behind the registry every other loader validates against: parsed once
    assert loads == [DEFAULT_CONF_DIR / "metrics.yaml"]
    other = load_config(env="test", environ={})
    assert settings.metric_registry(other) is not first[0]
    assert settings.metric_registry(other) == first[0]
    assert len(loads) == 2


def test_a_new_config_sees_an_edited_file_and_a_failed_load_is_not_remembered(tmp_path):
    conf = _conf_copy(tmp_path)
    missions = conf / "missions.yaml"
    config = load_config(conf, env="test", environ={})
    assert settings.mission_settings(config).baseline_days == 28
    missions.write_text(missions.read_text().replace("baseline_days: 28", "baseline_days: 14"))
    assert settings.mission_settings(config).baseline_days == 28  # one run, one view of conf/
    assert settings.mission_settings(load_config(conf, env="test", environ={})).baseline_days == 14

    offers = conf / "offers.yaml"
    text = offers.read_text()
    offers.write_text("offers: [")
    broken = load_config(conf, env="test", environ={})
    with pytest.raises(ConfigError, match=r"offers\.yaml"):
        settings.offer_catalogue(broken)
    offers.write_text(text)
    assert settings.offer_catalogue(broken).ids == settings.offer_catalogue(config).ids


def test_templates_of_other_settings_or_another_folder_are_loaded_for_them(tmp_path):
    config = load_config(env="test", environ={})
    cached = settings.template_set(config)
    assert settings.template_set(config, settings.mission_settings(config)) is cached
    own = dataclasses.replace(settings.mission_settings(config))
    assert settings.template_set(config, own) is not cached
    assert settings.template_set(config, own).templates == cached.templates
    folder = tmp_path / "missions"
    shutil.copytree(DEFAULT_CONF_DIR.parent / "templates" / "missions", folder)
    first = next(folder.glob("*.yaml"))
    first.unlink()
    elsewhere = settings.template_set(config, templates_dir=folder)
    assert len(elsewhere.templates) == len(cached.templates) - 1
    assert settings.template_set(config, templates_dir=folder) is elsewhere


# -- the lifetime fold --------------------------------------------------------------------------

METRICS = {
    "total_data_mb": lifetime.LifetimeMetric("total_data_mb", "data_mb", "sum"),
    "data_days": lifetime.LifetimeMetric("data_days", "data_mb", "days"),
}
STATE = T.MapType(T.StringType(), T.DoubleType(), valueContainsNull=False)  # every key always has a value


def test_completed_missions_are_the_newly_completed_with_their_templates_badge(spark):
    progress = spark.createDataFrame(
        [
            ("s1", "t_streak", "loyalty", True),
            ("s1", "t_plain", "revenue", True),
            ("s2", "t_streak", "loyalty", False),  # completed on an earlier day
            ("s2", "t_unknown", "usage", True),
        ],
        "subscriber_id string, template_id string, category string, newly_completed boolean",
    )
    got = lifetime.completed_missions(progress, {"t_streak": "streak", "t_plain": None})
    expected = spark.createDataFrame(
        [("s1", "loyalty", "streak"), ("s1", "revenue", None), ("s2", "usage", None)],
        "subscriber_id string, category string, badge string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_snapshot_carries_the_settled_state_and_adds_the_recent_days(spark):
    settled_through = D - timedelta(days=7)
    settling = spark.createDataFrame(
        [
            ("s1", D - timedelta(days=12), 100.0),
            ("s1", D - timedelta(days=9), 50.0),
            ("s3", D - timedelta(days=8), 0.0),
        ],
        "subscriber_id string, activity_date date, data_mb double",
    )
    completions = spark.createDataFrame(
        [("s1", "loyalty", "streak")], "subscriber_id string, category string, badge string"
    )
    settled = lifetime.advance(None, settling, completions, METRICS, ["loyalty"], ["streak"])
    recent = spark.createDataFrame(
        [("s1", D - timedelta(days=2), 30.0), ("s2", D, 0.0), ("s2", D - timedelta(days=1), 20.0)],
        "subscriber_id string, activity_date date, data_mb double",
    )
    got = lifetime.snapshot(settled, recent, METRICS, ["loyalty"], D, settled_through, ["streak"])

    def counts(data_mb, days, completed):
        return {
            "total_data_mb": data_mb,
            "data_days": days,
            "missions_completed": completed,
            "missions_completed_loyalty": completed,
            "missions_completed_for_streak": completed,
        }

    expected = spark.createDataFrame(
        [
            ("s1", counts(150.0, 2.0, 1.0), settled_through, counts(180.0, 3.0, 1.0), D),
            ("s2", None, settled_through, counts(20.0, 1.0, 0.0), D),
            ("s3", counts(0.0, 0.0, 0.0), settled_through, counts(0.0, 0.0, 0.0), D),
        ],
        T.StructType(
            [
                T.StructField("subscriber_id", T.StringType()),
                T.StructField("settled", STATE),
                T.StructField("settled_through", T.DateType()),
                T.StructField("metrics", STATE),
                T.StructField("stats_date", T.DateType()),
            ]
        ),
    )
    # one row per subscriber; ordered by it (maps cannot be sorted on)
    assert_df_equality(got.orderBy("subscriber_id"), expected, ignore_nullable=True)
