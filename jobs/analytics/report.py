"""The nightly report: one self-contained HTML page with charts of a run date.

`report_data` aggregates in Spark, through the sql/ views, and brings only small results to the
driver (per segment, category, level, stage, source or day). `render_html` is pure: it turns
those rows into a page with inline SVG charts and inline CSS, with no script, font or stylesheet
loaded from anywhere, so it opens offline and can be mailed or archived as one file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from html import escape
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.analytics import svg
from jobs.analytics.views import register_tables, register_views
from jobs.config import Config
from jobs.context import RunContext
from jobs.lakehouse import Lakehouse
from jobs.tables import ML_PREDICTIONS, TABLES

SCORES = ("engagement", "revenue", "loyalty", "risk", "digital")
OUTCOMES = {
    "engagement_change": ("Engagement score change", "points"),
    "revenue_change": ("Revenue score change", "points"),
    "risk_change": ("Risk score change", "points"),
    "recharge_amount": ("Recharge amount over the period", "EUR"),
    "churn_signal": ("Churn or suspension rate", "share"),
}
LEVELS = ("bronze", "silver", "gold", "platinum")
Row = dict[str, Any]


@dataclass(frozen=True)
class ReportData:
    ds: date
    scores: list[Row]  # score_drift rows of ds: segment x score
    missions: list[Row]  # mission_funnel summed per category
    uplift: list[Row]  # mission_uplift rows of segment 'all'
    badges: list[Row]  # badge_awards_by_day
    points: list[Row]  # points_liability
    rejects: list[Row]  # rejects_by_reason of ds
    stages: list[Row]  # stage_durations of ds
    row_counts: list[Row]  # table x rows written for ds
    quality: list[Row]  # quality_results of ds summed per status and severity
    data_docs: str | None = None  # the run date's Data Docs index, as a link from the report
    notes: list[str] = field(default_factory=list)


def _rows(df: DataFrame) -> list[Row]:
    return [r.asDict() for r in df.collect()]  # callers pass aggregated, config-sized results


def _view(spark: SparkSession, name: str) -> DataFrame | None:
    return spark.table(name) if spark.catalog.tableExists(name) else None


def row_counts(lakehouse: Lakehouse, ds: date) -> list[Row]:
    """Rows of every table's run-date partition (tables partitioned by a date)."""
    counts = []
    for name, spec in TABLES.items():
        if name == ML_PREDICTIONS or not lakehouse.exists(name):
            continue
        column = spec.partition_by[0]
        counts.append({"table": name, "rows": lakehouse.read(name, partitions=[(column, "=", ds)]).count()})
    return counts


def report_data(spark: SparkSession, lakehouse: Lakehouse, ds: date, data_docs: str | None = None) -> ReportData:
    """Every aggregate the report draws, computed in Spark from the views bound to `ds`."""
    register_tables(lakehouse)
    skipped = register_views(spark, ds)
    notes = [f"view {name} unavailable: {reason}" for name, reason in sorted(skipped.items())]
    empty: list[Row] = []

    def view(name: str, transform: Any = None) -> list[Row]:
        df = _view(spark, name)
        if df is None:
            return empty
        return _rows(transform(df) if transform else df)

    funnel_columns = ("assigned", "started", "active", "completed", "expired")
    quality = (
        _rows(
            spark.table("quality_results")
            .filter(F.col("run_ds") == F.lit(ds))
            .groupBy("status", "severity")
            .agg(F.count(F.lit(1)).alias("expectations"))
        )
        if spark.catalog.tableExists("quality_results")
        else empty
    )
    return ReportData(
        ds=ds,
        scores=view("score_drift", lambda df: df.filter(F.col("score_date") == F.lit(ds))),
        missions=view(
            "mission_funnel",
            lambda df: (
                df.groupBy("category")
                .agg(*[F.sum(c).cast("long").alias(c) for c in funnel_columns])
                .orderBy("category")
            ),
        ),
        uplift=view("mission_uplift", lambda df: df.filter(F.col("segment") == "all")),
        badges=view("badge_awards_by_day"),
        points=view("points_liability"),
        rejects=view(
            "rejects_by_reason",
            lambda df: df.filter(F.col("ingest_date") == F.lit(ds)).orderBy(F.desc("rejected_rows")),
        ),
        stages=view("stage_durations", lambda df: df.filter(F.col("run_ds") == F.lit(ds))),
        row_counts=row_counts(lakehouse, ds),
        quality=quality,
        data_docs=data_docs,
        notes=notes,
    )


# -- rendering (pure) -------------------------------------------------------------------------


def _by(rows: Sequence[Row], *keys: str) -> dict[Any, Row]:
    return {tuple(r[k] for k in keys) if len(keys) > 1 else r[keys[0]]: r for r in rows}


def score_charts(rows: Sequence[Row]) -> list[str]:
    segments = sorted({r["segment"] for r in rows})
    by_key = _by(rows, "segment", "score")
    charts = []
    for score in SCORES:
        present = [s for s in segments if (s, score) in by_key]
        stats = [
            tuple(float(by_key[(s, score)][k]) for k in ("min_value", "p25", "median", "p75", "max_value"))
            for s in present
        ]
        charts.append(svg.box_chart(f"scores-{score}", f"{score.capitalize()} score by segment", present, stats))
    return charts


def drift_chart(rows: Sequence[Row]) -> str:
    segments = sorted({r["segment"] for r in rows})
    by_key = _by(rows, "segment", "score")
    series = {
        score: [
            None if (s, score) not in by_key or by_key[(s, score)]["drift_vs_week_before"] is None
            else float(by_key[(s, score)]["drift_vs_week_before"])
            for s in segments
        ]
        for score in SCORES
    }  # fmt: skip
    return svg.bar_chart("score-drift", "Mean score change against the week before", segments, series, unit="points")


def mission_charts(rows: Sequence[Row]) -> list[str]:
    categories = [r["category"] for r in rows]
    by_status = svg.bar_chart(
        "missions-by-category",
        "Missions by category (assigned, completed, expired)",
        categories,
        {k: [r[k] for r in rows] for k in ("assigned", "completed", "expired")},
        unit="missions",
    )
    stages = ("assigned", "started", "completed", "expired")
    totals = [sum(r[k] or 0 for r in rows) for k in stages]
    funnel = svg.hbar_chart(
        "mission-funnel", "Mission funnel (holdout excluded)", list(stages) if rows else [], totals, unit="missions"
    )
    return [by_status, funnel]


def uplift_charts(rows: Sequence[Row]) -> list[str]:
    categories = sorted({r["category"] for r in rows})
    by_key = _by(rows, "category", "outcome")
    charts = []
    for outcome, (title, unit) in OUTCOMES.items():
        picked = [by_key.get((c, outcome), {}) for c in categories]

        def values(key: str, picked: list[Row] = picked) -> list[float | None]:
            return [None if r.get(key) is None else float(r[key]) for r in picked]

        charts.append(
            svg.interval_chart(
                f"uplift-{outcome}",
                f"{title}: treated minus holdout, 95% CI",
                categories,
                values("uplift"),
                values("ci95_low"),
                values("ci95_high"),
                unit=unit,
            )
        )
    return charts


def badge_chart(rows: Sequence[Row]) -> str:
    days = sorted({r["awarded_ds"] for r in rows})
    by_key = _by(rows, "awarded_ds", "level")
    series = {level: [by_key.get((d, level), {}).get("awards") for d in days] for level in LEVELS}
    series = {k: v for k, v in series.items() if any(x is not None for x in v)}
    labels = [d.isoformat()[5:] for d in days]
    return svg.bar_chart("badge-awards", "Badge awards per day by level", labels, series, stacked=True, unit="awards")


def points_chart(rows: Sequence[Row]) -> str:
    labels = [r["entry_ds"].isoformat()[5:] for r in rows]
    series = {
        "issued": [r["points_issued"] for r in rows],
        "expired": [r["points_expired"] for r in rows],
        "outstanding (liability)": [r["points_outstanding"] for r in rows],
    }
    return svg.line_chart("points", "Loyalty points issued, expired and outstanding", labels, series, unit="points")


def reject_chart(rows: Sequence[Row]) -> str:
    labels = [f"{r['source']} / {r['reject_reason']}" for r in rows]
    return svg.hbar_chart("rejects", "Rejected rows by source and reason", labels, [r["rejected_rows"] for r in rows])


def stage_charts(stages: Sequence[Row], counts: Sequence[Row]) -> list[str]:
    ordered = sorted(stages, key=lambda r: -(r["duration_s"] or 0))
    durations = svg.hbar_chart(
        "stage-durations",
        "Stage durations",
        [r["stage"] for r in ordered],
        [float(r["duration_s"] or 0) for r in ordered],
        unit="s",
    )
    written = [r for r in counts if r["rows"]]
    rows = svg.hbar_chart(
        "row-counts", "Rows of the run date per table", [r["table"] for r in written], [r["rows"] for r in written]
    )
    return [durations, rows]


def _table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape('' if r.get(c) is None else str(r.get(c)))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cards(data: ReportData) -> str:
    scored = sum(r["subscribers"] for r in data.scores if r["score"] == SCORES[0])
    assigned = sum(r["assigned"] or 0 for r in data.missions)
    completed = sum(r["completed"] or 0 for r in data.missions)
    outstanding = data.points[-1]["points_outstanding"] if data.points else 0
    failed = sum(r["expectations"] for r in data.quality if r["status"] == "failed" and r["severity"] == "critical")
    checked = sum(r["expectations"] for r in data.quality if r["status"] != "skipped")
    quality = f"{checked - failed}/{checked} passed" if checked else "not run"
    cards = [
        ("subscribers scored", f"{scored:,}"),
        ("missions assigned to date", f"{assigned:,}"),
        ("missions completed", f"{completed:,}"),
        ("points outstanding", f"{outstanding:,}"),
        ("quality checks", quality),
    ]
    return "".join(f"<div class='card'><b>{escape(v)}</b><span>{escape(k)}</span></div>" for k, v in cards)


CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1340px;color:#222;background:#fafafa}
h1{margin:0 0 4px}h2{margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666}.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:10px 16px;min-width:150px}
.card b{display:block;font-size:22px}.card span{color:#666;font-size:12px}
.grid{display:flex;flex-wrap:wrap;gap:12px}.chart{background:#fff;border:1px solid #e3e3e3;border-radius:6px}
table{border-collapse:collapse;background:#fff;font-size:12px}td,th{border:1px solid #e3e3e3;padding:3px 8px}
th{background:#f0f0f0;text-align:left}td{text-align:right}td:first-child{text-align:left}
p.note{color:#666;font-size:12px;max-width:1000px}
"""


def render_html(data: ReportData) -> str:
    """The whole report as one HTML document (inline CSS and SVG, no external resources)."""
    ds = data.ds.isoformat()
    docs = (
        f"<a href='{escape(data.data_docs)}'>quality Data Docs for {ds}</a>"
        if data.data_docs
        else "no quality Data Docs for this date"
    )
    uplift_rows = [
        {**r, "outcome": OUTCOMES.get(r["outcome"], (r["outcome"],))[0]}
        for r in data.uplift
        if r["n_treated"] or r["n_holdout"]
    ]
    sections = [
        ("Scores", "Score distributions per segment on the run date (box: quartiles, whiskers: min and max), "
         "and the change of each segment's mean score against seven days earlier.",
         [*score_charts(data.scores), drift_chart(data.scores)]),
        ("Missions", "Missions assigned up to the run date by category, by their latest status, and the funnel "
         "assigned, started, completed, expired. Holdout excluded.", mission_charts(data.missions)),
        ("Uplift against the holdout", "Mean outcome of treated subscribers minus the holdout's, over each "
         "mission's period so far, with a 95% confidence interval (normal approximation, unpooled variances). "
         "Green: the interval excludes zero.", uplift_charts(data.uplift)),
        ("Badges and points", "Badge levels awarded per day, and loyalty points issued, expired and outstanding "
         "(the liability).", [badge_chart(data.badges), points_chart(data.points)]),
        ("Data and pipeline", "Rows quarantined at ingest on the run date by source and reason, how long each "
         "stage took, and the rows each table holds for the run date.",
         [reject_chart(data.rejects), *stage_charts(data.stages, data.row_counts)]),
    ]  # fmt: skip
    body = [
        f"<h1>Gamification nightly report: {ds}</h1>",
        f"<div class='sub'>Run date {ds} &middot; {docs}</div>",
        f"<div class='cards'>{_cards(data)}</div>",
    ]
    for title, note, charts in sections:
        body += [
            f"<h2>{escape(title)}</h2>",
            f"<p class='note'>{escape(note)}</p>",
            f"<div class='grid'>{''.join(charts)}</div>",
        ]
        if title.startswith("Uplift") and uplift_rows:
            columns = ["category", "outcome", "n_treated", "n_holdout", "mean_treated", "mean_holdout", "uplift",
                       "ci95_low", "ci95_high"]  # fmt: skip
            body.append(f"<details><summary>uplift table</summary>{_table(columns, uplift_rows)}</details>")
    for note in data.notes:
        body.append(f"<p class='note'>{escape(note)}</p>")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Gamification report {ds}</title><style>{CSS}</style></head><body>" + "".join(body) + "</body></html>\n"
    )


def relative_link(target: str | Path, page: str | Path) -> str:
    """A link from the page to a local file, relative when both are on the same drive."""
    try:
        return Path(os.path.relpath(Path(target).resolve(), Path(page).resolve().parent)).as_posix()
    except ValueError:
        return Path(target).resolve().as_uri()


def default_path(config: Config, ds: date) -> Path:
    root = str(config.require("lakehouse.root")).removeprefix("file://")
    base = Path(root) / "_reports" if "://" not in root else Path("reports")
    return base / f"{ds.isoformat()}.html"


def data_docs_index(ctx: RunContext) -> Path | None:
    """The run date's quality Data Docs index, when it was built locally."""
    from jobs.quality import site_dir

    site = site_dir(ctx, ctx.settings.quality)
    index = Path(site, "index.html") if site else None
    return index if index and index.exists() else None


def write_report(config: Config, ds: date, out: str | Path | None = None, spark: SparkSession | None = None) -> Path:
    """Aggregate the run date in Spark, render the page, write it; returns its path."""
    from jobs.context import build_lakehouse
    from jobs.spark import build_session

    path = Path(out) if out else default_path(config, ds)
    spark = spark or build_session(config.get("spark", {}))
    lakehouse = build_lakehouse(spark, config)
    docs = data_docs_index(RunContext(spark, config, lakehouse, ds))
    data = report_data(spark, lakehouse, ds, relative_link(docs, path) if docs else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(data), encoding="utf-8")
    return path.resolve()
