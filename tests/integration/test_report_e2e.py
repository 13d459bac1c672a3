"""The nightly HTML report of the pipeline's last day, rendered in headless chromium with the
network disabled: every chart drawn with data, nothing loaded from anywhere."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from jobs.analytics.report import write_report
from jobs.cli import main

pytestmark = pytest.mark.integration

CHARTS = {
    *(f"scores-{s}" for s in ("engagement", "revenue", "loyalty", "risk", "digital")),
    "score-drift",
    "missions-by-category",
    "mission-funnel",
    *(f"uplift-{o}" for o in ("engagement_change", "revenue_change", "risk_change", "recharge_amount", "churn_signal")),
    "badge-awards",
    "points",
    "rejects",
    "stage-durations",
    "row-counts",
}
RESOURCE_URL = re.compile(r"""(?:src|href|xlink:href|action|poster)\s*=\s*["']?\s*(?:https?:)?//|url\(|@import""", re.I)


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("headless chromium is needed: apt-get install -y chromium")
    return path


def dump_dom(page: Path, profile: Path) -> str:
    """The page's DOM after loading in headless chromium, with every network path closed."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--proxy-server=127.0.0.1:9",  # nothing listens there: any request fails
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--dump-dom",
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def charts_in(dom: str) -> dict[str, tuple[int, int]]:
    """chart id -> (its data-points attribute, marks drawn inside it)."""
    found = {}
    for block in dom.split("<svg")[1:]:
        block = block.split("</svg>")[0]
        chart = re.search(r"""data-chart=["']([^"']+)""", block)
        if chart:
            points = int(re.search(r"""data-points=["'](\d+)""", block).group(1))
            found[chart.group(1)] = (points, len(re.findall(r"""class=["']mark["']""", block)))
    return found


def test_html_report_renders_offline_with_every_chart_populated(pipeline, tmp_path):
    page = write_report(pipeline.config, pipeline.last_day, tmp_path / "report.html", spark=pipeline.spark)
    html = page.read_text(encoding="utf-8")
    assert not RESOURCE_URL.search(html), RESOURCE_URL.search(html).group(0)
    assert "<script" not in html

    dom = dump_dom(page, tmp_path / "profile")
    assert f"Gamification nightly report: {pipeline.last_day}" in dom
    charts = charts_in(dom)
    assert set(charts) == CHARTS
    empty = {chart: counts for chart, counts in charts.items() if counts[0] == 0 or counts[1] == 0}
    assert not empty, f"charts without data: {empty}"
    assert all(points == marks for points, marks in charts.values())

    links = re.findall(r"""href=["']([^"']*index\.html)["']""", dom)
    site = Path(pipeline.lakehouse.root, "_data_docs", pipeline.last_day.isoformat(), "index.html")  # quality.yaml
    assert [(page.parent / link).resolve() for link in links] == [site.resolve()], "the quality Data Docs link"
    assert site.is_file()


def test_report_command_prints_the_runs_and_the_page_path(pipeline, tmp_path, capsys):
    root = str(pipeline.config.require("lakehouse.root"))
    base = ["--env", "test", "report", "--ds", str(pipeline.last_day), "--lakehouse-root", root]
    assert main(base) == 0
    text = capsys.readouterr().out
    assert re.search(r"^  scores +- +succeeded", text, re.M) and ".html" not in text

    out = tmp_path / "nightly.html"
    assert main([*base, "--html", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "\n".join(lines[:-1]) == text.rstrip("\n")
    assert lines[-1] == str(out.resolve()) and out.is_file()
