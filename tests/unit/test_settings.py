"""The run's Settings (jobs.settings): the repository configuration loaded by the loader every run
uses, every problem of broken files listed at once with file and line, each file parsed once per
Config however many stages and dates read it, and the stages' context reading from it."""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
import yaml

from jobs.cli import main
from jobs.config import DEFAULT_CONF_DIR, SettingsError, load_config
from jobs.context import PipelineError, RunContext
from jobs.metrics import MetricRegistry
from jobs.settings import Settings, load_settings, templates_in
from jobs.stages import predictions as predictions_stage
from jobs.validation import config_problems

pytestmark = pytest.mark.unit

REPO = DEFAULT_CONF_DIR.parent


def _yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _conf_copy(tmp_path: Path) -> Path:
    """conf/ and templates/ side by side, as a checkout has them, to edit."""
    shutil.copytree(DEFAULT_CONF_DIR, tmp_path / "conf")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    return tmp_path / "conf"


def _replace(path: Path, old: str, new: str) -> int:
    """Replace `old` (found once) by `new`; returns the 1-based line where it was."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


# -- the repository configuration ----------------------------------------------------------------


def test_the_repository_configuration_loads_into_settings_with_its_values():
    settings = load_settings(load_config(env="test", environ={}))
    assert isinstance(settings, Settings)
    conf = DEFAULT_CONF_DIR
    base = _yaml(conf / "base.yaml")

    ingest = settings.ingest
    assert (ingest.timezone, ingest.country_code) == (base["operator"]["timezone"], base["operator"]["country_code"])
    assert ingest.max_lateness_days == base["ingest"]["max_lateness_days"]
    assert ingest.subscriber_lookback_days == base["ingest"]["subscriber_lookback_days"]
    assert ingest.profile_source == base["ingest"]["profile_source"]
    guard = base["ingest"]["shrink_guard"]
    assert (ingest.shrink_guard.min_ratio, ingest.shrink_guard.min_previous_rows, ingest.shrink_guard.action) == (
        guard["min_ratio"],
        guard["min_previous_rows"],
        guard["action"],
    )
    assert (settings.exports_root, settings.exports_require_gate) == (
        base["exports"]["root"],
        base["exports"]["require_gate"],
    )
    state = base["subscriber_state"]
    assert (settings.state_full_refresh, settings.state_max_changed_share) == (
        state["full_refresh"],
        state["max_changed_share"],
    )
    assert sorted(settings.sources) == sorted(_yaml(p)["name"] for p in (conf / "sources").glob("*.yaml"))

    metrics = _yaml(conf / "metrics.yaml")
    assert settings.metrics.names == [*metrics["daily_metrics"], *metrics["derived_metrics"]]
    assert settings.metrics.attributes == tuple(metrics["attributes"])
    assert list(settings.mission_metrics) == list(metrics["mission_metrics"])
    assert list(settings.lifetime_metrics) == list(metrics["lifetime_metrics"])

    scoring = _yaml(conf / "scoring.yaml")
    assert list(settings.scoring.scores) == list(scoring["scores"])
    assert list(settings.scoring.feature_names) == list(scoring["features"])

    segments = _yaml(conf / "segments.yaml")
    rules = [s["id"] for s in segments["segments"] if not s["spec"].get("default")]
    assert settings.segments.names == [*rules, next(s["id"] for s in segments["segments"] if s["spec"].get("default"))]

    missions = _yaml(conf / "missions.yaml")
    assert settings.missions.baseline_days == missions["baseline_days"]
    assert dict(settings.missions.period_days) == missions["period_days"]
    assert settings.missions.max_active == missions["max_active_per_subscriber"]
    assert settings.missions.holdout_share == missions["holdout"]["share"]

    offers = _yaml(conf / "offers.yaml")["offers"]
    assert sorted(settings.offers.ids) == sorted(offers)
    assert (
        settings.offers.offers["DATA_BOOST_10GB"].daily_max_grants
        == offers["DATA_BOOST_10GB"]["budget"]["daily_max_grants"]
    )

    template_ids = {_yaml(p)["id"] for p in (REPO / missions["templates_dir"]).glob("*.yaml")}
    assert {t.id for t in settings.templates.templates} == template_ids
    badge_ids = {_yaml(p)["id"] for p in (REPO / missions["badges_dir"]).glob("*.yaml")}
    assert {b.id for b in settings.badges} == badge_ids and len(settings.badges) == len(badge_ids)

    loyalty = _yaml(conf / "loyalty.yaml")
    assert settings.loyalty.points_expiry_days == loyalty["points_expiry_days"]
    assert settings.loyalty.downgrade_grace_days == loyalty["downgrade_grace_days"]
    assert settings.loyalty.names == [t["id"] for t in loyalty["tiers"]]

    campaigns = _yaml(conf / "campaigns.yaml")
    assert [c.name for c in settings.campaigns.crossings] == [t["name"] for t in campaigns["score_thresholds"]]
    assert [name for name, _ in settings.campaigns.audiences] == [a["id"] for a in campaigns["audiences"]]

    predictions = _yaml(conf / "ml_predictions.yaml")
    assert settings.predictions is not None
    assert settings.predictions.source.name == predictions["name"]
    assert settings.predictions.max_lateness_days == predictions["max_lateness_days"]

    exports = _yaml(conf / "exports.yaml")
    assert [c.name for c in settings.exports.consumers] == list(exports["consumers"])
    assert settings.exports.mapping_format == exports["msisdn_mapping"]["format"]

    quality = _yaml(conf / "quality.yaml")
    assert settings.quality.sample_size == quality["sample_size"]
    assert list(settings.quality.tables) == [t["id"] for t in quality["tables"]]

    airflow = _yaml(conf / "airflow.yaml")
    assert (settings.airflow.dag_id, settings.airflow.owner) == (airflow["dag_id"], airflow["owner"])


def test_settings_are_frozen():
    settings = load_settings(load_config(env="test", environ={}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.exports_root = "/elsewhere"  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.sources["cdr"] = settings.sources["app"]  # type: ignore[index]


def test_an_operator_without_an_ml_delivery_has_no_prediction_contract(tmp_path):
    conf = _conf_copy(tmp_path)
    (conf / "ml_predictions.yaml").unlink()
    assert load_settings(load_config(conf, env="test", environ={})).predictions is None


# -- every problem at once -----------------------------------------------------------------------


def test_two_broken_files_are_reported_together_with_their_file_and_line(tmp_path, capsys):
    conf = _conf_copy(tmp_path)
    offers_line = _replace(conf / "offers.yaml", "  ROAM_PASS_7D:        {name:", "  ROAM_PASS_7D:        [name:")
    rule_line = _replace(conf / "sources" / "cdr.yaml", "  - rule: duration_s >= 0", "  - rule: duration_s > 'abc'")
    config = load_config(conf, env="test", environ={})

    with pytest.raises(SettingsError) as raised:
        load_settings(config)
    problems = raised.value.problems
    assert len(problems) == 2, problems
    offers_problem = next(p for p in problems if "offers.yaml" in p)
    assert offers_problem.startswith(f"{conf / 'offers.yaml'}: line {offers_line}, column ")
    assert "invalid YAML" in offers_problem
    assert f"cdr.yaml:{rule_line}:22: cannot compare a number with a string" in "\n".join(problems)

    # one path: `config validate` (and the DAG's check_config) list the same problems
    assert config_problems(config) == problems
    assert main(["config", "validate", "--conf-dir", str(conf), "--env", "test"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("2 configuration problem(s):") and all(p in err for p in problems)


def test_a_failed_load_is_not_remembered_and_a_new_config_sees_edited_files(tmp_path):
    conf = _conf_copy(tmp_path)
    missions = conf / "missions.yaml"
    config = load_config(conf, env="test", environ={})
    assert load_settings(config).missions.baseline_days == 28
    _replace(missions, "baseline_days: 28", "baseline_days: 14")
    assert load_settings(config).missions.baseline_days == 28  # one run, one view of conf/
    assert load_settings(load_config(conf, env="test", environ={})).missions.baseline_days == 14

    offers = conf / "offers.yaml"
    text = offers.read_text()
    offers.write_text("offers: [")
    broken = load_config(conf, env="test", environ={})
    with pytest.raises(SettingsError, match=r"offers\.yaml"):
        load_settings(broken)
    offers.write_text(text)
    assert load_settings(broken).offers.ids == load_settings(config).offers.ids


# -- parsed once ---------------------------------------------------------------------------------


@pytest.fixture
def yaml_reads(monkeypatch):
    """Every YAML file read from disk, by path, whatever parses it."""
    reads: Counter[Path] = Counter()
    read_text = pathlib.Path.read_text

    def counting(self, *args, **kwargs):
        if self.suffix in (".yaml", ".yml"):
            reads[Path(self)] += 1
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", counting)
    return reads


def test_each_file_is_parsed_once_per_config_for_every_stage_and_date(monkeypatch, yaml_reads):
    registry_loads = []
    load = MetricRegistry.load.__func__
    monkeypatch.setattr(
        MetricRegistry, "load", classmethod(lambda cls, path: registry_loads.append(path) or load(cls, path))
    )
    config = load_config(env="test", environ={})
    yaml_reads.clear()  # base.yaml, sources/ and the overlay are read by load_config itself
    days = [RunContext(None, config, None, date(2025, 3, d)) for d in (1, 2, 3)]  # a backfill's contexts
    first = days[0].settings
    read_by_the_load = dict(yaml_reads)
    for ctx in days:
        for field in dataclasses.fields(Settings):
            getattr(ctx.settings, field.name)
        assert ctx.settings is first
        assert [s.name for s in ctx.sources()] == list(config.sources)
    assert dict(yaml_reads) == read_by_the_load  # nothing read again after the first load
    conf_files = {p for p in DEFAULT_CONF_DIR.glob("*.yaml") if p.name != "base.yaml"}
    conf_files |= set((DEFAULT_CONF_DIR / "sources").glob("*.yaml"))  # composed again for line:column positions
    definitions = {*(REPO / "templates" / "missions").glob("*.yaml"), *(REPO / "templates" / "badges").glob("*.yaml")}
    assert set(read_by_the_load) == conf_files | definitions
    assert registry_loads == [DEFAULT_CONF_DIR / "metrics.yaml"]

    other = load_config(env="test", environ={})
    assert load_settings(other) is not first and load_settings(other) == first
    assert len(registry_loads) == 2


def test_the_context_selects_its_sources_from_the_settings(yaml_reads):
    config = load_config(env="test", environ={})
    load_settings(config)
    yaml_reads.clear()
    ctx = RunContext(None, config, None, date(2025, 3, 1), only_sources=["crm_subscribers", "cdr"])
    assert [s.name for s in ctx.sources()] == [n for n in config.sources if n in ("crm_subscribers", "cdr")] != []
    assert all(s is ctx.settings.sources[s.name] for s in ctx.sources())
    with pytest.raises(PipelineError, match=r"unknown source\(s\) \['nope'\]"):
        RunContext(None, config, None, date(2025, 3, 1), only_sources=["nope"]).sources()
    assert not yaml_reads


def test_a_stage_reads_its_settings_from_the_context(tmp_path, yaml_reads):
    conf = _conf_copy(tmp_path)
    (conf / "ml_predictions.yaml").unlink()
    config = load_config(conf, env="test", environ={})
    ctx = RunContext(None, config, None, date(2025, 3, 1))  # no session, no lakehouse: the stage needs neither
    assert ctx.settings.predictions is None
    yaml_reads.clear()
    assert predictions_stage.run(ctx) == {"status": "not_configured", "read": 0, "accepted": 0}
    assert not yaml_reads


# -- templates of another folder -----------------------------------------------------------------


def test_templates_of_another_folder_are_checked_against_the_settings_and_not_kept(tmp_path):
    config = load_config(env="test", environ={})
    configured = load_settings(config).templates
    folder = tmp_path / "missions"
    shutil.copytree(REPO / "templates" / "missions", folder)
    first = sorted(folder.glob("*.yaml"))[0]
    removed = _yaml(first)["id"]
    first.unlink()
    elsewhere = templates_in(config, folder)
    assert {t.id for t in elsewhere.templates} == {t.id for t in configured.templates} - {removed}
    assert load_settings(config).templates is configured
