"""`gamify`: the command line for the nightly jobs, sample data and configuration.

gamify run --ds 2025-03-01                  one run date, all stages
gamify run --from 2025-03-01 --to 2025-03-28 --stages ingest
gamify run --from 2025-03-06 --to latest --stages activity,scores   up to the latest processed date
gamify report --ds 2025-03-01                what pipeline_runs recorded for a run date
gamify report --ds 2025-03-01 --html         the nightly HTML report with charts
gamify sql -e "select * from mission_funnel" [--ds D] [--format table|csv|json|parquet] [--out FILE]
gamify sql -f sql/mission_uplift.sql --ds 2025-03-01
gamify sample-data --subscribers 2000 --days 28 --start 2025-03-01 --out data/raw
gamify config validate [--env prod]
gamify config schema [--out DIR] [--check]  JSON Schemas of the definitions (docs/schemas/) for editors
gamify maintain [--tables events,daily_activity] [--retention-hours 168]
gamify docs [--check]                       render the data dictionary docs/tables.md
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import date
from typing import Any

from jobs.config import ConfigError, SettingsError, load_config
from jobs.templates import TemplateError

log = logging.getLogger("gamify")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD date: {text!r}") from exc


LATEST = "latest"


def _date_or_latest(text: str) -> date | str:
    return LATEST if text == LATEST else _date(text)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gamify", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )

    def add_common(target: argparse.ArgumentParser, default: Any) -> None:
        target.add_argument(
            "--env", default=default, help="configuration overlay conf/env/<env>.yaml (default: $GAMIFY_ENV or local)"
        )
        target.add_argument(
            "--conf-dir", default=default, help="configuration folder (default: the repository's conf/)"
        )
        target.add_argument("-v", "--verbose", action="store_true", default=default or False)

    add_common(parser, None)
    common = argparse.ArgumentParser(add_help=False)  # the same options after the subcommand
    add_common(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)
    add_parser = commands.add_parser

    def with_common(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return add_parser(name, parents=[common], **kwargs)

    commands.add_parser = with_common  # type: ignore[method-assign]

    run = commands.add_parser("run", help="run pipeline stages for one date or a date range")
    when = run.add_mutually_exclusive_group(required=True)
    when.add_argument("--ds", type=_date, help="run date YYYY-MM-DD")
    when.add_argument("--from", dest="start", type=_date, help="first run date of a range")
    run.add_argument(
        "--to",
        dest="end",
        type=_date_or_latest,
        help="last run date of a range (inclusive), or `latest`: the latest date pipeline_runs recorded (then only the "
        "dates it recorded are run)",
    )
    run.add_argument("--stages", type=_csv, help="comma-separated stages (default: all, in order)")
    run.add_argument("--sources", type=_csv, help="comma-separated sources to ingest (default: all due)")
    run.add_argument(
        "--html-report",
        action="store_true",
        help="after a successful run, write the run date's nightly HTML report with the same Spark session",
    )
    run.add_argument("--raw-root", help="override raw.root (where extracts are)")
    run.add_argument("--lakehouse-root", help="override lakehouse.root")

    sample = commands.add_parser("sample-data", help="generate a sample operator's raw extracts")
    sample.add_argument("args", nargs=argparse.REMAINDER, help="see `gamify sample-data --help`")

    cfg = commands.add_parser("config", help="configuration tools")
    cfg.add_argument("action", choices=["validate", "show", "schema"])
    cfg.add_argument("--out", help="schema: output folder (default: docs/schemas of the repository)")
    cfg.add_argument("--check", action="store_true", help="schema: fail when the files are not current")

    sql = commands.add_parser(
        "sql",
        help="query the lakehouse: every table and sql/ view by name",
        description="Every lakehouse table and every sql/ view is registered by name; views are bound to --ds "
        "(default: the latest run date in pipeline_runs).",
    )
    query = sql.add_mutually_exclusive_group(required=True)
    query.add_argument("-e", "--execute", metavar="SQL", help='a query, e.g. "select * from mission_funnel"')
    query.add_argument("-f", "--file", help="a .sql file (or the name of a sql/ view); :ds is bound to --ds")
    query.add_argument("path", nargs="?", help=argparse.SUPPRESS)  # `gamify sql FILE` as before
    sql.add_argument("--ds", type=_date, help="run date for :ds and the views (default: latest processed)")
    sql.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    sql.add_argument("--out", help="write to this file instead of stdout (required for parquet)")
    sql.add_argument("--limit", type=int, help="at most this many rows (table format: 200 unless given)")
    sql.add_argument("--lakehouse-root", help="override lakehouse.root")

    report = commands.add_parser(
        "report", help="what pipeline_runs recorded for a run date; --html: the nightly report with charts"
    )
    report.add_argument("--ds", type=_date, required=True)
    report.add_argument("--html", action="store_true", help="also write the HTML report with charts; prints its path")
    report.add_argument("--out", help="HTML file (default: <lakehouse root>/_reports/<ds>.html)")
    report.add_argument("--lakehouse-root", help="override lakehouse.root")

    maintain = commands.add_parser("maintain", help="compact, Z-order, vacuum and checkpoint the Delta tables")
    maintain.add_argument("--tables", type=_csv, help="comma-separated tables (default: every table)")
    maintain.add_argument(
        "--retention-hours",
        type=float,
        help="vacuum files unreferenced for longer than this (default: lakehouse.maintenance.vacuum_retention_hours)",
    )
    maintain.add_argument("--lakehouse-root", help="override lakehouse.root")
    docs = commands.add_parser("docs", help="render the data dictionary (docs/tables.md) from the table specs")
    docs.add_argument("--out", help="output file (default: docs/tables.md of the repository)")
    docs.add_argument("--check", action="store_true", help="fail when the file is not current instead of writing")

    templates = commands.add_parser("templates", help="mission templates: validate, expand, preview")
    templates.add_argument("action", choices=["validate", "expand", "preview"])
    templates.add_argument("--dir", help="templates folder (default: missions.yaml templates_dir)")
    templates.add_argument("--ds", type=_date, help="preview: the scored day to preview against")
    templates.add_argument("--template", help="preview: only this template id")
    templates.add_argument("--lakehouse-root", help="preview: override lakehouse.root")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sample-data"]:
        from jobs.sample_data import main as sample_main

        return sample_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for chatty in ("py4j", "great_expectations"):  # their INFO lines drown the run's own
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        if args.command == "config":
            return _config_command(args)
        if args.command == "templates":
            return _templates_command(args)
        if args.command == "docs":
            return _docs_command(args)
        if args.command == "sql":
            return _sql_command(args)
        if args.command == "report":
            return _report_command(args)
        if args.command == "maintain":
            return _maintain_command(args)
        return _run_command(args)
    except SettingsError as exc:
        print(f"{len(exc.problems)} configuration problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except TemplateError as exc:  # every problem of a set of definitions (before ConfigError: it is one)
        print(f"{len(exc.problems)} definition problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


def _config_command(args: argparse.Namespace) -> int:
    from jobs.validation import config_problems, masked

    if args.action == "schema":
        return _schema_command(args)
    config = load_config(args.conf_dir, args.env)
    if args.action == "validate":
        problems = config_problems(config)
        if problems:
            print(f"{len(problems)} configuration problem(s):", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            return 2
        print(f"ok: {config.conf_dir} (env {config.env}), {len(config.sources)} sources")
        return 0
    import yaml

    shown = masked(dict(config.data))
    shown["privacy"] = {k: "***" for k in config.data.get("privacy", {})}
    print(yaml.safe_dump(shown, sort_keys=False))
    return 0


def _schema_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jobs.definitions import SCHEMA_DIR, stale_schemas, write_schemas

    out = Path(args.out) if args.out else SCHEMA_DIR
    if args.check:
        stale = stale_schemas(out)
        if stale:
            print(f"not current in {out}: {', '.join(stale)}: run `gamify config schema`", file=sys.stderr)
            return 1
        print(f"ok: the schemas in {out} are current")
        return 0
    written = write_schemas(out)
    print(f"wrote {len(written)} schemas to {out}: {', '.join(p.name for p in written)}")
    return 0


def _docs_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jobs.docs import DOC_PATH, configured_specs, render

    config = load_config(args.conf_dir, args.env)
    out = Path(args.out) if args.out else Path(config.conf_dir).parent / DOC_PATH
    text = render(configured_specs(config.conf_dir))
    if args.check:
        if not out.exists() or out.read_text(encoding="utf-8") != text:
            print(f"{out} is not current: run `gamify docs`", file=sys.stderr)
            return 1
        print(f"ok: {out} is current")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({text.count(chr(10) + '## ')} tables)")
    return 0


def _templates_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from jobs.settings import load_settings, templates_in
    from jobs.templates import expansion_counts

    overrides = {"lakehouse.root": args.lakehouse_root} if args.lakehouse_root else None
    config = load_config(args.conf_dir, args.env, overrides)
    settings = load_settings(config)  # raises SettingsError listing every problem
    templates = templates_in(config, Path(args.dir)) if args.dir else settings.templates
    if args.action == "validate":
        categories = sorted({t.category for t in templates.templates})
        print(f"ok: {len(templates.templates)} templates, categories: {', '.join(categories)}")
        badges = settings.badges
        print(f"ok: {len(badges)} badge types, {sum(len(b.rules) for b in badges)} badge levels")
        return 0
    if args.action == "expand":
        total = 0
        for template_id, segments, levels, periods, rows in expansion_counts(templates.templates):
            print(f"  {template_id:<32} {segments} segments x {levels} thresholds x {periods} periods = {rows}")
            total += rows
        print(f"total: {total} catalog missions from {len(templates.templates)} templates")
        return 0
    if not args.ds:
        print("preview needs --ds", file=sys.stderr)
        return 2
    return _preview(config, templates, args)


def _preview(config, templates, args: argparse.Namespace) -> int:
    from pyspark.sql import functions as F

    from jobs.context import RunContext, build_lakehouse
    from jobs.missions import candidates
    from jobs.spark import build_session
    from jobs.stages import mission_subjects

    spark = build_session(config.get("spark", {}))
    ctx = RunContext(spark, config, build_lakehouse(spark, config), args.ds)
    settings = ctx.settings.missions
    chosen = [t for t in templates.active_on(args.ds) if not args.template or t.id == args.template]
    if not chosen:
        print(f"no active template {args.template or ''} on {args.ds}", file=sys.stderr)
        return 1
    preview = (
        candidates(mission_subjects(ctx, templates), chosen, templates.metrics, settings, args.ds)
        .filter(~F.col("holdout"))
        .groupBy("template_id", "segment", "level")
        .agg(F.count(F.lit(1)).alias("subscribers"), F.sum("reward_points").alias("points"))
        .orderBy("template_id", "segment", "level")
        .collect()  # one row per catalog mission at most
    )
    print(f"eligible subscribers on {args.ds} (before caps and cooldowns, holdout excluded):")
    print(f"  {'template':<32} {'segment':<22} {'level':<7} {'subscribers':>11} {'points at stake':>15}")
    for row in preview:
        print(f"  {row.template_id:<32} {row.segment:<22} {row.level:<7} {row.subscribers:>11} {row.points:>15}")
    print(f"  total: {sum(r.subscribers for r in preview)} missions, {sum(r.points for r in preview)} points")
    return 0


def _sql_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pyspark.errors import AnalysisException, ParseException

    from jobs.analytics.output import format_table, to_csv, to_json_lines, write_parquet
    from jobs.analytics.views import register_tables, register_views, run_view, views
    from jobs.context import build_lakehouse
    from jobs.run_log import latest_processed_date
    from jobs.spark import build_session

    if args.format == "parquet" and not args.out:
        print("--format parquet needs --out FILE", file=sys.stderr)
        return 2
    text = args.execute
    if text is None:
        path = Path(args.file or args.path)
        known = views()
        if not path.exists() and path.stem in known:
            path = known[path.stem].path
        if not path.exists():
            print(f"no such file or view: {path}", file=sys.stderr)
            return 2
        text = path.read_text(encoding="utf-8")
    overrides = {"lakehouse.root": args.lakehouse_root} if args.lakehouse_root else None
    config = load_config(args.conf_dir, args.env, overrides)
    ds = args.ds or latest_processed_date(config)
    if ds is None:
        print(f"no run recorded in {config.require('lakehouse.root')}: pass --ds", file=sys.stderr)
        return 2
    if isinstance(ds, str):
        ds = _date(ds)
    spark = build_session(config.get("spark", {}))
    register_tables(build_lakehouse(spark, config))
    register_views(spark, ds)
    print(f"-- run date {ds}", file=sys.stderr)
    try:
        result = run_view(spark, text, ds)
    except (AnalysisException, ParseException) as exc:
        print(f"query error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    limit = args.limit if args.limit is not None else (200 if args.format == "table" else None)
    limited = result.limit(limit + 1) if limit is not None else result
    if args.format == "parquet":
        write_parquet(limited.limit(limit).toArrow() if limit is not None else limited.toArrow(), args.out)
        print(f"wrote {args.out}", file=sys.stderr)
        return 0
    rows = [tuple(r) for r in limited.collect()]  # an analyst's result; --limit bounds it
    more = limit is not None and len(rows) > limit
    rows = rows[:limit] if limit is not None else rows
    render = {"table": format_table, "csv": to_csv, "json": to_json_lines}[args.format]
    output = render(result.columns, rows)
    if args.out:
        Path(args.out).write_text(output, encoding="utf-8")
        print(f"wrote {len(rows)} rows to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(output)
    if more:
        print(f"-- first {limit} rows shown; --limit N for more", file=sys.stderr)
    elif args.format == "table":
        print(f"-- {len(rows)} rows", file=sys.stderr)
    return 0


def _report_command(args: argparse.Namespace) -> int:
    from jobs.run_log import format_report, latest_processed_date, run_report

    overrides = {"lakehouse.root": args.lakehouse_root} if args.lakehouse_root else None
    config = load_config(args.conf_dir, args.env, overrides)
    print(format_report(args.ds, run_report(config, args.ds), latest_processed_date(config)), flush=True)
    if args.html:
        from jobs.analytics.report import write_report

        print(write_report(config, args.ds, args.out))  # the last line: the page's path
    return 0


def _maintain_command(args: argparse.Namespace) -> int:
    from jobs.context import build_lakehouse
    from jobs.maintenance import MaintenanceSettings, maintain
    from jobs.spark import build_session

    overrides = {"lakehouse.root": args.lakehouse_root} if args.lakehouse_root else None
    config = load_config(args.conf_dir, args.env, overrides)
    settings = MaintenanceSettings.from_config(config)
    spark = build_session(config.get("spark", {}))
    results = maintain(build_lakehouse(spark, config), settings, args.tables, args.retention_hours)
    print(f"  {'table':<22} {'compacted':>9} {'written':>8} {'vacuumed':>9} {'checkpoint':>10}")
    for r in results:
        print(
            f"  {r.table:<22} {r.files_compacted:>9} {r.files_written:>8} {r.files_vacuumed:>9} "
            f"{r.checkpoint_version:>10}"
        )
    return 0


def _run_command(args: argparse.Namespace) -> int:
    if args.start and not args.end:
        print("--from needs --to", file=sys.stderr)
        return 2
    overrides = {}
    if args.raw_root:
        overrides["raw.root"] = args.raw_root
    if args.lakehouse_root:
        overrides["lakehouse.root"] = args.lakehouse_root
    config = load_config(args.conf_dir, args.env, overrides)
    from jobs.validation import config_problems

    problems = config_problems(config)  # every file compiled before any Spark work
    if problems:
        print(f"{len(problems)} configuration problem(s), nothing was run:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    processed = None
    if args.start and args.end == LATEST:
        from jobs.run_log import processed_dates

        processed = processed_dates(config)  # from the Delta log: a no-op starts no Spark session
        latest = max(processed, default=None)
        if latest is None or latest < args.start:
            print(f"nothing to run: the latest processed date is {latest}, before {args.start}", flush=True)
            return 0
        args.end = latest
    from jobs.pipeline import PipelineError, RunContext, build_lakehouse, date_range, run_stages
    from jobs.spark import build_session

    dates = [args.ds] if args.ds else date_range(args.start, args.end)
    if processed is not None:  # up to `latest`: the processed days; a day never run (a missed night) has no input
        skipped = [ds for ds in dates if ds not in processed]
        if skipped:
            print(f"not processed, skipped: {', '.join(ds.isoformat() for ds in skipped)}", flush=True)
        dates = [ds for ds in dates if ds in processed]
    spark = build_session(config.get("spark", {}))
    lakehouse = build_lakehouse(spark, config)
    exit_code = 0
    for i, ds in enumerate(dates, 1):
        started = time.monotonic()
        print(f"[{i}/{len(dates)}] {ds}: running {','.join(args.stages or ['all stages'])}", flush=True)
        ctx = RunContext(spark, config, lakehouse, ds, only_sources=args.sources)
        try:
            results = run_stages(ctx, args.stages)
        except PipelineError as exc:
            print(f"[{i}/{len(dates)}] {ds}: FAILED: {exc}", file=sys.stderr, flush=True)
            exit_code = 1
            break
        print(format_summary(results), flush=True)
        print(f"[{i}/{len(dates)}] {ds}: done in {time.monotonic() - started:.1f}s", flush=True)
    if args.html_report and exit_code == 0:
        from jobs.analytics.report import write_report

        for ds in dates:
            print(write_report(config, ds, spark=spark), flush=True)  # the last line: the page's path
    return exit_code


def format_summary(results: dict) -> str:
    lines = []
    ingest = results.get("ingest") or []
    if ingest:
        lines.append(
            f"  {'source':<18} {'status':<10} {'read':>9} {'accepted':>9} {'rejected':>9} {'dupes':>7} {'events':>9} {'sec':>6}"
        )
        for r in ingest:
            lines.append(
                f"  {r.source:<18} {r.status:<10} {r.rows_read:>9} {r.rows_accepted:>9} {r.rows_rejected:>9} "
                f"{r.rows_duplicate:>7} {r.events_written:>9} {r.duration_s:>6.1f}"
                + (f"  {r.message}" if r.status not in ("succeeded",) and r.message else "")
            )
    for name, value in results.items():
        if name != "ingest":
            lines.append(f"  {name}: {value}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
