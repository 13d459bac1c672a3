"""Benchmark: one nightly run measured stage by stage, checked against a DuckDB reference.

    python -m bench.bench_night --subscribers 100000 300000 1000000 [--history-days 30] [--repeat 3]

For each size, in one invocation on the same inputs:

1. generates the sample operator (`python -m jobs.sample_data`, in a child process so that its
   memory is not the driver's) for the new day and the last `--real-history-days` days before
   it (default 2);
2. runs those real history nights through the stages that give the new night its inputs
   (`--history-stages`, default ingest, predictions and activity: events, CRM snapshots, ML
   predictions, `daily_activity`), and fills the earlier days of the `--history-days` history
   (default 30) with synthetic `daily_activity` rows for the same subscribers (every daily
   metric a deterministic pseudo-random count, the derived flags computed as
   conf/metrics.yaml says). A real night of ingest per history day would take hours and about
   4 GB of events per day at 1M subscribers; the new night only reads the compact
   `daily_activity` history (score windows, missions, badges) and a week of events (late
   arrivals). Missions, badges and the rest run the new night as a first night (the lifetime
   snapshot is folded from the whole history); `--history-stages all` runs every stage on the
   real history nights;
3. runs the new night stage by stage (`--stages`, default every stage of jobs.pipeline.STAGES)
   and prints per stage the wall seconds, rows in (rows of the table partitions the stage read,
   from the Delta log; raw rows read for ingest), rows out (rows the stage wrote), rows/s and
   the peak RSS of the driver's Python process and of the JVM;
4. runs the DuckDB reference (bench/reference/*.sql) of the CDR ingest normalisation,
   `daily_activity` and the scores on the same inputs, checks that Spark's tables agree with
   it and prints the ratio Spark seconds / DuckDB seconds per referenced stage.

With `--repeat N` steps 3 and 4 run N times, each on a copy of the lakehouse the history left:
the figures are the medians, every run's seconds are kept beside them, and a stage agrees with
the reference only when every run did.

Writes every figure to bench/results/<timestamp>.json (`--results-dir`); with several sizes it
also prints the scaling curve (time per size and time growth / size growth).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import operator
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from deltalake import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from bench.reference_checks import Check, Reference, check_cdr_ingest, check_daily_activity, check_scores
from jobs.config import Config, load_config
from jobs.lakehouse import Lakehouse
from jobs.metrics import MetricRegistry, with_derived_flags
from jobs.pipeline import STAGES, RunContext, build_lakehouse, run_stages
from jobs.settings import load_settings
from jobs.spark import build_session
from jobs.tables import DAILY_ACTIVITY, PIPELINE_RUNS, SUBSCRIBER_PROFILE

DEFAULT_SIZES = (100_000, 300_000, 1_000_000)
DEFAULT_HISTORY_STAGES = ("ingest", "predictions", "activity")
REFERENCED = {"ingest:cdr": "cdr_ingest", "activity": "daily_activity", "scores": "scores"}
# The Spark seconds a reference is compared with: the stage's, or for a source the seconds of its
# own normalisation (read, classify, count: the result held in memory, as the reference's temp
# table is), without the write all sources of the night share.
COMPARED = {"ingest:cdr": "read_seconds"}


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """High-water mark of a process's resident memory (VmHWM), None when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak_rss(*pids: int | str | None) -> bool:
    """Start the processes' high-water marks again from their present resident memory (Linux's
    clear_refs), so that a peak read later covers only what ran since; False where it cannot."""
    try:
        for pid in pids:
            if pid is not None:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def driver_peak_rss_mb() -> float:
    """The driver's peak: VmHWM, or where there is no /proc the process's lifetime peak."""
    peak = peak_rss_mb()
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def jvm_pid(spark: SparkSession) -> int | None:
    try:
        return int(spark._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
    except Exception:  # a remote (Connect) session has no local JVM
        return None


def jvm_peak_rss_mb(pid: int | None) -> float | None:
    """High-water mark of the JVM's resident memory (VmHWM), None when it cannot be read."""
    return None if pid is None else peak_rss_mb(pid)


@dataclass
class TableTraffic:
    """Rows the stages read and wrote, recorded around Lakehouse.read / Lakehouse.write."""

    reads: list[tuple[str, tuple[tuple[str, str, Any], ...], int | None]] = field(default_factory=list)
    written: dict[str, int] = field(default_factory=dict)
    _writing: int = 0

    def reset(self) -> None:
        self.reads.clear()
        self.written.clear()

    def rows_in(self, root: str) -> int:
        """Rows of the partitions read, each table's partitions once (as of the first read's version)."""
        first: dict[tuple[str, tuple[tuple[str, str, Any], ...]], int | None] = {}
        for table, partitions, as_of in self.reads:
            first.setdefault((table, partitions), as_of)
        return sum(
            partition_rows(f"{root}/{table}", partitions, as_of) or 0 for (table, partitions), as_of in first.items()
        )

    @property
    def rows_out(self) -> int:
        return sum(n for table, n in self.written.items() if table != PIPELINE_RUNS)


def instrument(lakehouse: Lakehouse, traffic: TableTraffic) -> None:
    """Record the partitions every stage reads and the rows it writes (the stages' own calls;
    the schema reads a write makes are not counted)."""
    read, write = lakehouse.read, lakehouse.write

    def recording_read(table: str, **kwargs: Any) -> Any:
        if not traffic._writing and table != PIPELINE_RUNS:
            partitions = tuple(tuple(p) for p in kwargs.get("partitions") or ())
            traffic.reads.append((table, partitions, kwargs.get("version")))
        return read(table, **kwargs)

    def recording_write(df: Any, table: str, **kwargs: Any) -> Any:
        traffic._writing += 1
        try:
            result = write(df, table, **kwargs)
        finally:
            traffic._writing -= 1
        traffic.written[table] = traffic.written.get(table, 0) + result.rows_added
        return result

    lakehouse.read = recording_read  # type: ignore[method-assign]
    lakehouse.write = recording_write  # type: ignore[method-assign]


_COMPARE = {
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def partition_rows(uri: str, partitions: Sequence[tuple[str, str, Any]], as_of: int | None = None) -> int | None:
    """Rows of a Delta table's files in the given partitions (as of version `as_of`, default the
    latest), from the log's file statistics."""
    import pyarrow.compute as pc

    try:
        dataset = DeltaTable(uri, version=as_of).to_pyarrow_dataset()
    except Exception:
        return None
    expression = None
    for column, op, value in partitions:
        field_ = pc.field(column)
        values = [_typed(v) for v in value] if isinstance(value, list | tuple | set) else _typed(value)
        if op in ("in", "not in"):
            term = field_.isin(values) if op == "in" else ~field_.isin(values)
        else:
            term = _COMPARE[op](field_, values)
        expression = term if expression is None else expression & term
    try:
        return dataset.count_rows(filter=expression)
    except Exception:
        return None


def _typed(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return value
    return value


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    started = time.perf_counter()
    elapsed: list[float] = []
    yield lambda: elapsed[0] if elapsed else time.perf_counter() - started
    elapsed.append(time.perf_counter() - started)


def generate(raw: Path, subscribers: int, days: int, start: date, seed: int) -> tuple[float, dict[str, Any]]:
    """Sample operator in a child process; returns its seconds and manifest."""
    command = [sys.executable, "-m", "jobs.sample_data", "--subscribers", str(subscribers), "--days", str(days)]
    command += ["--start", start.isoformat(), "--seed", str(seed), "--out", str(raw)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, json.loads((raw / "_manifest.json").read_text())


def uniform(seed: int, *columns: Column) -> Column:
    """Deterministic pseudo-random number in [0, 1) from the given columns."""
    return (F.abs(F.xxhash64(F.lit(seed), *columns)) % 1_000_000) / 1_000_000.0


def synthetic_activity(subscribers: DataFrame, days: Sequence[date], registry: MetricRegistry, seed: int) -> DataFrame:
    """daily_activity of `days` for `subscribers`: on about 85% of subscriber-days each summed
    metric is a pseudo-random count 0-19 (else 0), the max metrics (DWH extract) are null, and
    the derived flags follow conf/metrics.yaml."""
    calendar = subscribers.sparkSession.createDataFrame([(d,) for d in days], "activity_date date")
    grid = subscribers.crossJoin(F.broadcast(calendar))
    day = F.col("activity_date")
    active = uniform(seed, F.col("subscriber_id"), day) < 0.85
    metrics: dict[str, Column] = {}
    for i, metric in enumerate(registry.daily):
        if metric.agg == "sum":
            count = F.floor(uniform(seed + 1 + i, F.col("subscriber_id"), day) * 20).cast("double")
            metrics[metric.name] = F.when(active, count).otherwise(F.lit(0.0))
        else:
            metrics[metric.name] = F.lit(None).cast("double")
    daily = grid.select("subscriber_id", "activity_date", *[c.alias(n) for n, c in metrics.items()])
    return with_derived_flags(daily, registry)


def write_synthetic_history(
    lakehouse: Lakehouse, config: Config, days: Sequence[date], snapshot: date, seed: int
) -> None:
    """Synthetic daily_activity for `days` (one commit), for the subscribers of the CRM snapshot of `snapshot`."""
    subscribers = (
        lakehouse.read(SUBSCRIBER_PROFILE, partitions=[("snapshot_date", "=", snapshot)])
        .select("subscriber_id")
        .distinct()
    )
    lakehouse.write(
        synthetic_activity(subscribers, days, load_settings(config).metrics, seed),
        DAILY_ACTIVITY,
        partition_by=["activity_date"],
        replace_where={"activity_date": list(days)},
    )


def bench_config(work: Path, env: str, spark_conf: dict[str, str], copy: str = "") -> Config:
    """The configuration of a size's work directory; `copy` names a lakehouse and exports of their own."""
    overrides: dict[str, Any] = {
        "raw.root": str(work / "raw"),
        "lakehouse.root": str(work / f"lakehouse{copy}"),
        "exports.root": str(work / f"exports{copy}"),
    }
    if spark_conf:
        overrides["spark.conf"] = spark_conf
    return load_config(env=env, overrides=overrides, environ={})


def copy_lakehouse(source: Path, target: Path) -> None:
    """A copy of a lakehouse that shares its data files (hard links) and copies its Delta logs.
    Delta never changes a data file once written: a rewrite adds new files and logs the old ones
    as removed, and only VACUUM deletes them (an unlink, which leaves the other copy's link).
    So a repeat costs the disk of its own writes, not a whole lakehouse (12 GB of events alone at 1M)."""

    def link_or_copy(src: str, dst: str) -> str:
        if "_delta_log" not in Path(src).parts:
            try:
                os.link(src, dst)
                return dst
            except OSError:  # another file system, or no hard links there
                pass
        return shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy)


def run_size(
    spark: SparkSession,
    subscribers: int,
    *,
    history_days: int,
    start: date,
    seed: int,
    workdir: Path,
    real_history_days: int = 2,
    env: str,
    stages: Sequence[str],
    history_stages: Sequence[str],
    repeat: int = 1,
    spark_conf: dict[str, str] | None = None,
    reference_threads: int | None = None,
    reference_memory: str | None = None,
    sources: Sequence[str] | None = None,
    out: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Generate, run the history, then `repeat` times the new night and the reference, each
    time on a copy of the lakehouse as the history left it; every figure as a dict, the
    seconds as the median of the repeats."""
    work = workdir / f"n{subscribers}"
    shutil.rmtree(work, ignore_errors=True)
    config = bench_config(work, env, spark_conf or {})
    ds = start + timedelta(days=history_days)
    real_days = max(0, min(real_history_days, history_days))
    first_real = ds - timedelta(days=real_days)
    gen_seconds, manifest = generate(work / "raw", subscribers, real_days + 1, first_real, seed)
    new_day_rows = sum(per_day.get(ds.isoformat(), 0) for per_day in manifest["rows"].values())
    out(
        f"== {subscribers:,} subscribers: generated {real_days + 1} days in {gen_seconds:.1f} s "
        f"({new_day_rows:,} raw rows on the new day {ds})"
    )
    lakehouse = build_lakehouse(spark, config)
    traffic = TableTraffic()
    instrument(lakehouse, traffic)

    history_seconds = 0.0
    for offset in range(real_days):
        day = first_real + timedelta(days=offset)
        with stopwatch() as took:
            run_stages(RunContext(spark, config, lakehouse, day, only_sources=sources), list(history_stages))
        history_seconds += took()
        out(f"   history {day}: {took():7.1f} s ({', '.join(history_stages)})")
    synthetic_days = [start + timedelta(days=offset) for offset in range(history_days - real_days)]

    def synthesize(target: Lakehouse, snapshot: date) -> None:
        nonlocal history_seconds
        with stopwatch() as took:
            write_synthetic_history(target, config, synthetic_days, snapshot, seed)
        history_seconds += took()
        out(f"   history {synthetic_days[0]} .. {synthetic_days[-1]}: {took():7.1f} s (synthetic daily_activity)")

    if synthetic_days and real_days:
        synthesize(lakehouse, first_real)
    after_ingest = (lambda target: synthesize(target, ds)) if synthetic_days and not real_days else None

    history = work / "lakehouse_history"
    if repeat > 1:  # every repeat starts from the lakehouse the history left (none without real history)
        first = Path(str(config.require("lakehouse.root")))
        first.mkdir(parents=True, exist_ok=True)
        copy_lakehouse(first, history)
    runs: list[Night] = []
    for number in range(1, repeat + 1):
        night_config, night_lakehouse = config, lakehouse
        if number > 2:  # the previous copy; the first lakehouse and the last copy stay for --keep
            for previous in (f"lakehouse_repeat{number - 1}", f"exports_repeat{number - 1}"):
                shutil.rmtree(work / previous, ignore_errors=True)
        if number > 1:
            night_config = bench_config(work, env, spark_conf or {}, copy=f"_repeat{number}")
            copy_lakehouse(history, Path(str(night_config.require("lakehouse.root"))))
            night_lakehouse = build_lakehouse(spark, night_config)
            instrument(night_lakehouse, traffic)
        if repeat > 1:
            out(f"   -- night {number} of {repeat}")
        night = run_night(
            spark,
            night_config,
            night_lakehouse,
            traffic,
            ds,
            stages,
            sources,
            f"{subscribers}-{number}",
            after_ingest,
            out,
        )
        ran = {r["stage"] for r in night.rows}
        night.checks = references_apart(night_config, ds, ran, reference_threads, reference_memory, out=out)
        report_references(night, out)
        runs.append(night)
        if night.failure:
            break
    shutil.rmtree(history, ignore_errors=True)
    rows = median_stages(runs)
    nights = [n.seconds for n in runs]
    if len(runs) > 1:
        out(
            f"   {'night (median)':<24}{statistics.median(nights):9.1f}   runs: {', '.join(f'{s:.1f}' for s in nights)}"
        )
    return {
        "subscribers": subscribers,
        "history_days": history_days,
        "real_history_days": real_days,
        "synthetic_history_days": len(synthetic_days),
        "history_stages": list(history_stages),
        "ds": ds.isoformat(),
        "raw_rows_new_day": new_day_rows,
        "generate_seconds": round(gen_seconds, 3),
        "history_seconds": round(history_seconds, 3),
        "repeats": len(runs),
        "night_seconds": round(statistics.median(nights), 3),
        "night_seconds_runs": [round(s, 3) for s in nights],
        "failure": next((n.failure for n in runs if n.failure), None),
        "stages": rows,
        "references": {name: check.as_dict() for name, check in runs[-1].checks.items()},
        "workdir": str(work),
    }


@dataclass
class Night:
    """One run of the new night: its stage entries, the failure that stopped it, the reference checks."""

    rows: list[dict[str, Any]]
    failure: str | None
    checks: dict[str, Check] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(r["seconds"] for r in self.rows if ":" not in r["stage"])


def run_night(
    spark: SparkSession,
    config: Config,
    lakehouse: Lakehouse,
    traffic: TableTraffic,
    ds: date,
    stages: Sequence[str],
    sources: Sequence[str] | None,
    label: str,
    after_ingest: Callable[[Lakehouse], None] | None,
    out: Callable[[str], None],
) -> Night:
    """The new night stage by stage; stops at the first failed stage (the later ones lack inputs)."""
    ctx = RunContext(spark, config, lakehouse, ds, only_sources=sources)
    pid = jvm_pid(spark)
    if not reset_peak_rss("self", pid):  # else a night's peaks would include the history's and earlier sizes'
        out("   (peak memory: since each process started, its high-water mark cannot be reset here)")
    rows: list[dict[str, Any]] = []
    out(
        f"   {'stage':<24}{'seconds':>9}{'rows in':>13}{'rows out':>13}{'rows/s':>11}{'driver MB':>11}{'JVM MB':>9}"
        f"{'jobs':>7}"
    )
    failure = None
    for name in [s for s in STAGES if s in stages]:
        traffic.reset()
        group = f"bench-{label}-{name}"
        spark.sparkContext.setJobGroup(group, f"benchmark stage {name}")
        try:
            with stopwatch() as took:
                run_stages(ctx, [name])
        except Exception as exc:
            failure = f"{name}: {type(exc).__name__}: {exc}"[:4000]
            out("   " + "\n   ".join(f"{name} failed: {failure}".splitlines()[:12]))
            break
        finally:
            spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
        entry = stage_entry(name, took(), traffic, lakehouse.root, ctx, pid)
        # Spark jobs the stage started: a fixed cost per job that the data size does not change
        entry["spark_jobs"] = len(spark.sparkContext.statusTracker().getJobIdsForGroup(group))
        if name == "ingest" and after_ingest:  # the subscribers come from this night's CRM snapshot
            after_ingest(lakehouse)
        rows.append(entry)
        out(_stage_line(entry))
        if name == "ingest":
            for source in ctx.results["ingest"]:
                if source.status != "succeeded":
                    continue
                sub = {
                    "stage": f"ingest:{source.source}",
                    "seconds": source.duration_s,  # with the write of every source of the batch
                    "read_seconds": source.read_s,
                    "rows_in": source.rows_read,
                    # events (or profile rows of a snapshot source) plus quarantined rows
                    "rows_out": max(source.events_written, source.rows_accepted)
                    + source.rows_rejected
                    + source.rows_duplicate,
                    "rows_per_s": round(source.rows_read / source.duration_s) if source.duration_s else None,
                }
                rows.append(sub)
                out(_stage_line(sub, indent=5))
    night = Night(rows, failure)
    out(f"   {'night':<24}{night.seconds:9.1f}")
    return night


def report_references(night: Night, out: Callable[[str], None]) -> None:
    """Put each reference's seconds, the ratio and the verdict on the stage it checks, and print them."""
    for entry in night.rows:
        check = night.checks.get(REFERENCED.get(entry["stage"], ""))
        if check is not None:  # a reference that could not run has no seconds (and does not agree)
            ran = "error" not in check.details
            entry["reference_seconds"] = round(check.reference_seconds, 3) if ran else None
            entry["ratio"] = _ratio(entry)
            entry["agree"] = check.agree
    for stage, name in REFERENCED.items():
        entry = next((r for r in night.rows if r["stage"] == stage), None)
        check = night.checks.get(name)
        if entry is None or check is None:
            continue
        verdict = "agree" if check.agree else "DISAGREE"
        compared = COMPARED.get(stage, "seconds")
        duckdb = "-" if entry["reference_seconds"] is None else f"{entry['reference_seconds']:.2f}"
        basis = "" if compared == "seconds" else f" ({compared}; {entry['seconds']:.1f} s with the shared write)"
        out(
            f"   reference {name:<15} spark {entry[compared]:7.1f} s  duckdb {duckdb:>7} s  "
            f"ratio {entry['ratio'] if entry['ratio'] is not None else '-':>6}  {verdict}{basis}"
        )
        for note in check.excluded:
            out(f"      excluded: {note}")
        if not check.agree:
            out(f"      {json.dumps(_disagreement(check.details), default=str)[:2000]}")


def median_stages(runs: Sequence[Night]) -> list[dict[str, Any]]:
    """One entry per stage over the repeats: the median seconds (every run's in `seconds_runs`),
    the median reference seconds of the runs whose reference ran and their ratio, agreement only
    when every repeat's reference ran and agreed, the highest peak memory. Rows and jobs are the
    first run's (a rerun of the same inputs)."""
    if len(runs) == 1:
        return runs[0].rows
    merged = []
    for entry in runs[0].rows:
        same = [e for night in runs for e in night.rows if e["stage"] == entry["stage"]]
        seconds = [e["seconds"] for e in same]
        row = {**entry, "seconds": round(statistics.median(seconds), 3), "seconds_runs": seconds}
        if "read_seconds" in entry:
            reads = [e["read_seconds"] for e in same]
            row |= {"read_seconds": round(statistics.median(reads), 3), "read_seconds_runs": reads}
        row["rows_per_s"] = round(max(row["rows_in"], row["rows_out"]) / row["seconds"]) if row["seconds"] else None
        for key in ("driver_peak_rss_mb", "jvm_peak_rss_mb"):
            peaks = [e[key] for e in same if e.get(key) is not None]
            if peaks:
                row[key] = max(peaks)
        references = [e["reference_seconds"] for e in same if e.get("reference_seconds") is not None]
        if "agree" in entry:
            row["agree"] = len(references) == len(runs) and all(e.get("agree") for e in same)
        if references:
            row["reference_seconds"] = round(statistics.median(references), 3)
            row["reference_seconds_runs"] = references
            row["ratio"] = _ratio(row)
        merged.append(row)
    return merged


def _ratio(entry: dict[str, Any]) -> float | None:
    """Spark seconds (those COMPARED names for the stage) over the reference's."""
    spark_seconds = entry[COMPARED.get(entry["stage"], "seconds")]
    return round(spark_seconds / entry["reference_seconds"], 2) if entry.get("reference_seconds") else None


def stage_entry(
    name: str, seconds: float, traffic: TableTraffic, root: str, ctx: RunContext, pid: int | None
) -> dict[str, Any]:
    if name == "ingest":
        results = ctx.results["ingest"]
        rows_in = sum(r.rows_read for r in results)
    else:
        rows_in = traffic.rows_in(root)
    rows_out = traffic.rows_out
    return {
        "stage": name,
        "seconds": round(seconds, 3),
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_per_s": round(max(rows_in, rows_out) / seconds) if seconds else None,
        "driver_peak_rss_mb": round(driver_peak_rss_mb(), 1),
        "jvm_peak_rss_mb": round(jvm, 1) if (jvm := jvm_peak_rss_mb(pid)) is not None else None,
    }


def _stage_line(entry: dict[str, Any], indent: int = 3) -> str:
    def number(value: Any, width: int, fmt: str = ",") -> str:
        return f"{value:>{width}{fmt}}" if value is not None else f"{'-':>{width}}"

    return (
        f"{' ' * indent}{entry['stage']:<{27 - indent}}{entry['seconds']:9.1f}{number(entry['rows_in'], 13)}"
        f"{number(entry['rows_out'], 13)}{number(entry.get('rows_per_s'), 11)}"
        f"{number(entry.get('driver_peak_rss_mb'), 11, ',.0f')}{number(entry.get('jvm_peak_rss_mb'), 9, ',.0f')}"
        f"{number(entry.get('spark_jobs'), 7)}"
    )


def references_apart(*args: Any, out: Callable[[str], None]) -> dict[str, Check]:
    """`run_references(*args)` in a process of its own: DuckDB's memory goes back to the system
    when it ends instead of staying in the driver, whose peak the next night reports."""
    spawn = multiprocessing.get_context("spawn")  # a fork would copy the driver and its py4j threads
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as child:
        checks = child.submit(run_references, *args).result()
    for name, check in checks.items():
        if "error" in check.details:
            out(f"   reference {name} could not run: {check.details['error'][:300]}")
    return checks


def run_references(
    config: Config,
    ds: date,
    ran: set[str],
    threads: int | None,
    memory_limit: str | None = None,
) -> dict[str, Check]:
    """The DuckDB reference of every referenced stage that ran; one that cannot run is a failed
    check carrying the error."""
    checks: dict[str, Check] = {}
    root = Path(str(config.require("lakehouse.root")))
    ref = Reference(root, threads, memory_limit, root.parent / "duckdb_spill")
    try:
        for stage, name, check in (
            ("ingest:cdr", "cdr_ingest", check_cdr_ingest),
            ("activity", "daily_activity", check_daily_activity),
            ("scores", "scores", check_scores),
        ):
            if stage in ran:
                try:
                    checks[name] = check(ref, config, ds)
                except Exception as exc:  # a reference that cannot run is a failed check, not a crash
                    checks[name] = Check(name, details={"error": f"{type(exc).__name__}: {exc}"[:2000]})
    finally:
        ref.close()
    return checks


def _disagreement(details: dict[str, Any]) -> dict[str, Any]:
    """The parts of a check's details that show a difference."""
    shown: dict[str, Any] = {}
    for key, value in details.items():
        if key == "outcomes":
            continue
        if isinstance(value, dict) and "differing_columns" in value:
            if value["differing_columns"] or value["only_spark"] or value["only_reference"]:
                shown[key] = value
        else:
            shown[key] = value
    return shown


def scaling(sizes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Night seconds per size, and time growth / size growth between consecutive sizes."""
    ordered = sorted(sizes, key=lambda s: s["subscribers"])
    curve = []
    for previous, current in zip([None, *ordered], ordered, strict=False):
        point = {"subscribers": current["subscribers"], "night_seconds": current["night_seconds"]}
        if previous is not None and previous["night_seconds"]:
            size_growth = current["subscribers"] / previous["subscribers"]
            time_growth = current["night_seconds"] / previous["night_seconds"]
            point.update(
                size_growth=round(size_growth, 3),
                time_growth=round(time_growth, 3),
                growth_ratio=round(time_growth / size_growth, 3),
            )
            point["stages"] = {
                s["stage"]: round(s["seconds"] / p["seconds"] / size_growth, 3)
                for s in current["stages"]
                for p in previous["stages"]
                if s["stage"] == p["stage"] and p["seconds"]
            }
        curve.append(point)
    return curve


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    """Run the benchmark; with `spark` given, that session is used (and left running)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--history-days", type=int, default=30, help="days of daily_activity before the new day")
    parser.add_argument(
        "--real-history-days",
        type=int,
        default=2,
        help="of those, the last days generated and run through the real stages (the rest synthetic)",
    )
    parser.add_argument("--start", type=date.fromisoformat, default=date(2025, 3, 1))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path(".bench"))
    parser.add_argument("--results-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--env", default="local", help="configuration environment (conf/env/<env>.yaml)")
    parser.add_argument("--stages", default="all", help="stages of the new night, comma separated (default all)")
    parser.add_argument(
        "--history-stages",
        default=",".join(DEFAULT_HISTORY_STAGES),
        help="stages run for each history night (default %(default)s; 'all' for a steady-state night)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of the new night per size, each from the same history; medians reported",
    )
    parser.add_argument("--sources", default=None, help="ingest only these sources, comma separated (default all)")
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--reference-threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    parser.add_argument("--reference-memory", default="6GB", help="DuckDB memory limit; it spills beyond (default 6GB)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data and lakehouses")
    args = parser.parse_args(argv)

    stages = list(STAGES) if args.stages == "all" else [s.strip() for s in args.stages.split(",") if s.strip()]
    history_stages = (
        list(STAGES) if args.history_stages == "all" else [s.strip() for s in args.history_stages.split(",") if s]
    )
    if args.real_history_days < args.history_days and args.real_history_days <= 0 and "ingest" not in stages:
        parser.error("synthetic history without a real history day takes its subscribers from the new night's ingest")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    unknown = sorted(set(stages + history_stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {unknown}; known: {list(STAGES)}")
    spark_conf = {"spark.driver.memory": args.driver_memory}
    spark_conf.update(dict(item.split("=", 1) for item in args.spark_conf))
    settings = {**bench_config(args.workdir / "_session", args.env, spark_conf).get("spark", {}), "log_level": "ERROR"}
    session = spark or build_session(settings)
    runtime = machine(session)
    java = runtime["java"]
    print(f"Java {java['version']} ({java['vendor']}), Spark {runtime['spark']}, delta-spark {runtime['delta_spark']}")
    started = datetime.now().astimezone()
    sizes = []
    try:
        for n in args.subscribers:
            result = run_size(
                session,
                n,
                history_days=args.history_days,
                real_history_days=args.real_history_days,
                start=args.start,
                seed=args.seed,
                workdir=args.workdir,
                env=args.env,
                stages=stages,
                history_stages=history_stages,
                repeat=args.repeat,
                spark_conf=spark_conf,
                reference_threads=args.reference_threads,
                reference_memory=args.reference_memory,
                sources=[s.strip() for s in args.sources.split(",")] if args.sources else None,
            )
            sizes.append(result)
            if not args.keep:
                shutil.rmtree(result["workdir"], ignore_errors=True)
    finally:
        if spark is None:
            session.stop()
    report = {
        "started": started.isoformat(timespec="seconds"),
        "machine": runtime,
        "settings": {
            "history_days": args.history_days,
            "real_history_days": args.real_history_days,
            "start": args.start.isoformat(),
            "seed": args.seed,
            "env": args.env,
            "stages": stages,
            "history_stages": history_stages,
            "repeat": args.repeat,
            "sources": args.sources or "all",
            "spark": settings,
        },
        "sizes": sizes,
        "scaling": scaling(sizes),
    }
    path = write_report(report, args.results_dir, started)
    if len(sizes) > 1:
        print("scaling (night seconds; time growth / size growth, 1.0 = linear):")
        for point in report["scaling"]:
            ratio = f"{point['growth_ratio']:.2f}" if "growth_ratio" in point else "-"
            print(f"   {point['subscribers']:>11,} subscribers {point['night_seconds']:9.1f} s  {ratio}")
    print(f"results: {path}")
    ok = all(s["failure"] is None and all(e.get("agree", True) for e in s["stages"]) for s in sizes)
    return 0 if ok else 1


def machine(spark: SparkSession) -> dict[str, Any]:
    """What ran the figures: cores, platform and the versions that change them (the JVM's
    above all: the same night runs at different speeds on different Java releases)."""
    system = spark.sparkContext._jvm.java.lang.System  # type: ignore[union-attr]
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "java": {
            "version": system.getProperty("java.version"),
            "vendor": system.getProperty("java.vendor"),
            "home": system.getProperty("java.home"),
        },
        "spark": spark.version,
        "delta_spark": version("delta-spark"),
    }


def write_report(report: dict[str, Any], directory: Path, started: datetime) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{started.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    sys.exit(main())
