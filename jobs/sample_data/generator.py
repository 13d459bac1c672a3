"""Deterministic generator of a fictional operator's raw daily extracts.

`generate` writes one folder per source and date (see the package docstring for the layout),
the persona truth file and `_manifest.json`. Subscribers are processed in chunks, each chunk
appending to the day's files, so memory stays bounded whatever the number of subscribers.
Same parameters => byte-identical files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa

from jobs.privacy import pseudonymise_py
from jobs.sample_data import accounts, digital, predictions, usage
from jobs.sample_data import personas as P
from jobs.sample_data.clock import DayClock
from jobs.sample_data.context import ChunkDay, Settings
from jobs.sample_data.output import Batch, Lines, ParquetSink, TextSink, csv_parts
from jobs.sample_data.population import MAX_SUBSCRIBERS, Numbers, Population

DEMO_KEY = "demo-pseudonymisation-key-not-secret"
# Source names as in conf/sources (the DWH extract lands in the dwh/ folder).
SOURCES = ("cdr", "billing", "crm_subscribers", "crm_interactions", "app", "network", "dwh_monthly_kpis", "xiva")
DWH = "dwh_monthly_kpis"
DEFECT_KINDS = {
    "cdr": tuple(usage.CDR_DEFECTS),
    "billing": tuple(accounts.BILLING_DEFECTS),
    "app": tuple(digital.APP_DEFECTS),
    "network": tuple(usage.NETWORK_DEFECTS),
}
MAX_DEFECT_RATE = 0.2


class InvalidParameters(ValueError):
    """A generation parameter is out of range."""


@dataclass(frozen=True)
class DayReport:
    """Rows written per source and defects injected per source and kind, for one day."""

    ds: str
    rows: dict[str, int]
    defects: dict[str, dict[str, int]]
    files: int
    seconds: float


class DayFiles:
    """The output files of one day; every chunk appends to them."""

    def __init__(self, out: Path, clock: DayClock) -> None:
        self.ds = ds = clock.ds.isoformat()
        ymd = clock.yyyymmdd
        self.cdr = {
            hour: TextSink(out / "cdr" / ds / f"cdr_{ymd}_{hour:02d}.csv", "|".join(usage.CDR_COLUMNS))
            for hour in clock.wall_hours()
        }
        self.text = {
            "crm_subscribers": TextSink(
                out / "crm_subscribers" / ds / f"subscribers_{ymd}.csv", ",".join(accounts.SUBSCRIBER_COLUMNS)
            ),
            "crm_interactions": TextSink(
                out / "crm_interactions" / ds / f"interactions_{ymd}.csv", ",".join(accounts.INTERACTION_COLUMNS)
            ),
            "app": TextSink(out / "app" / ds / f"app_events_{ymd}.jsonl"),
            "xiva": TextSink(out / "xiva" / ds / f"xiva_{ymd}.json"),
        }
        self.parquet = {
            "billing": ParquetSink(out / "billing" / ds / f"billing_{ymd}.parquet", accounts.BILLING_SCHEMA),
            "network": ParquetSink(out / "network" / ds / f"qoe_{ymd}.parquet", usage.NETWORK_SCHEMA),
        }
        if clock.ds.day == 1:
            previous = (clock.ds - dt.timedelta(days=1)).strftime("%Y%m")
            path = out / "dwh" / ds / f"monthly_kpis_{previous}.parquet"
            self.parquet[DWH] = ParquetSink(path, accounts.DWH_SCHEMA)
        self.defects = {source: dict.fromkeys(kinds, 0) for source, kinds in DEFECT_KINDS.items()}
        self.issued = dict.fromkeys(SOURCES, 0)  # next record id per source

    def rows(self, source: str) -> int:
        if source == "cdr":
            return sum(sink.rows for sink in self.cdr.values())
        return (self.text.get(source) or self.parquet[source]).rows

    def write(self, source: str, batch: Batch) -> None:
        if source == "cdr":
            for hour, lines in batch.data:
                self.cdr[hour].write(lines)
        else:
            (self.text.get(source) or self.parquet[source]).write(batch.data)
        self.issued[source] += batch.issued
        for kind, n in batch.defects.items():
            self.defects[source][kind] += n

    def _sinks(self) -> list[TextSink | ParquetSink]:
        return [*self.cdr.values(), *self.text.values(), *self.parquet.values()]

    def close(self) -> None:
        for sink in self._sinks():
            sink.close()

    def report(self, seconds: float) -> DayReport:
        sources = [s for s in SOURCES if s != DWH or DWH in self.parquet]
        return DayReport(self.ds, {s: self.rows(s) for s in sources}, self.defects, len(self._sinks()), seconds)


def _write_chunk(files: DayFiles, ctx: ChunkDay) -> None:
    """Generate every source for one chunk of subscribers and append it to the day's files."""
    cdr, records = usage.generate(ctx, files.issued["cdr"])
    files.write("cdr", cdr)
    files.write("network", usage.network(ctx, records))
    files.write("billing", accounts.billing(ctx, files.issued["billing"]))
    files.write("app", digital.app_events(ctx, files.issued["app"]))
    files.write("crm_subscribers", accounts.subscribers(ctx))
    files.write("crm_interactions", accounts.interactions(ctx, files.issued["crm_interactions"]))
    files.write("xiva", digital.xiva_events(ctx, files.issued["xiva"]))
    if DWH in files.parquet:
        files.write(DWH, accounts.monthly_kpis(ctx))


def _generate_day(out: Path, settings: Settings, day_index: int) -> DayReport:
    began = time.perf_counter()
    clock = DayClock.for_day(settings.start + dt.timedelta(days=day_index), settings.tz)
    files = DayFiles(out, clock)
    try:
        for chunk_index, (lo, hi) in enumerate(settings.chunks()):
            pop = Population.build(settings.seed, lo, hi, settings.subscribers, settings.start, settings.days)
            _write_chunk(files, ChunkDay.build(settings, day_index, chunk_index, clock, pop))
    finally:
        files.close()
    return files.report(time.perf_counter() - began)


def _write_truth(out: Path, settings: Settings, key: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """`_truth/personas.csv` (msisdn, subscriber_id, persona), the operator's MSISDN mapping
    extract (`operator_mapping/msisdn_mapping.csv`: subscriber_id, msisdn) and the data-science team's daily
    predictions keyed by the same pseudonyms; returns subscribers per persona and, per day, the
    prediction rows and defects written."""
    sink = TextSink(out / "_truth" / "personas.csv", "msisdn,subscriber_id,persona")
    mapping = TextSink(out / "operator_mapping" / "msisdn_mapping.csv", "subscriber_id,msisdn")
    days = [settings.start + dt.timedelta(days=i) for i in range(settings.days)]
    prediction_sinks = [predictions.sink_for(out, day) for day in days]
    defects = [0] * len(days)
    counts = np.zeros(len(P.PERSONAS), dtype=np.int64)
    try:
        for lo, hi in settings.chunks():
            pop = Population.build(settings.seed, lo, hi, settings.subscribers, settings.start, settings.days)
            msisdn = settings.numbers.plus(Numbers.digits8(pop.index))
            ids = pa.array([pseudonymise_py(m, key, settings.country_code) for m in msisdn.to_pylist()])
            sink.write(Lines(csv_parts([msisdn, ids, pa.array(P.PERSONAS).take(pop.persona)], ","), pop.size))
            mapping.write(Lines(csv_parts([ids, msisdn], ","), pop.size))
            counts += np.bincount(pop.persona, minlength=len(P.PERSONAS))
            for i, day in enumerate(days):
                scored = np.flatnonzero(pop.activation <= day.toordinal())  # the active base only
                lines, injected = predictions.day_lines(
                    ids.take(scored),
                    pop.persona[scored],
                    day,
                    i / max(settings.days - 1, 1),
                    predictions.rng_for(settings.seed, i, lo),
                    settings.defect_rate,
                )
                prediction_sinks[i].write(lines)
                defects[i] += injected
    finally:
        sink.close()
        mapping.close()
        for prediction_sink in prediction_sinks:
            prediction_sink.close()
    written = {
        day.isoformat(): {"rows": s.rows, "defects": d}
        for day, s, d in zip(days, prediction_sinks, defects, strict=True)
    }
    return {name: int(n) for name, n in zip(P.PERSONAS, counts, strict=True)}, written


def _settings(
    subscribers: int,
    days: int,
    start: dt.date,
    seed: int,
    defect_rate: float,
    country_code: str,
    timezone: str,
    chunk_size: int,
) -> Settings:
    if not 1 <= subscribers <= MAX_SUBSCRIBERS:
        raise InvalidParameters(f"subscribers must be in 1..{MAX_SUBSCRIBERS}, got {subscribers}")
    if days < 1 or chunk_size < 1 or seed < 0:
        raise InvalidParameters("days and chunk_size must be >= 1 and seed >= 0")
    if not 0 <= defect_rate <= MAX_DEFECT_RATE:
        raise InvalidParameters(f"defect_rate must be in [0, {MAX_DEFECT_RATE}], got {defect_rate}")
    if not country_code.isdigit():
        raise InvalidParameters(f"country_code must be digits, got {country_code!r}")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidParameters(f"unknown timezone {timezone!r}") from exc
    return Settings(subscribers, days, start, seed, defect_rate, country_code, timezone, chunk_size)


def generate(
    out_dir: str | Path,
    *,
    subscribers: int,
    days: int,
    start: dt.date,
    seed: int,
    defect_rate: float = 0.005,
    key: str = DEMO_KEY,
    country_code: str = "33",
    timezone: str = "Europe/Paris",
    chunk_size: int = 200_000,
    progress: Callable[[DayReport], None] | None = None,
) -> dict:
    """Write the extracts of `days` days from `start` into `out_dir`; returns the manifest plus `seconds`.

    `progress` is called with each day's report once the day is written.
    """
    began = time.perf_counter()
    settings = _settings(subscribers, days, start, seed, defect_rate, country_code, timezone, chunk_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, int]] = {source: {} for source in SOURCES}
    defects: dict[str, dict[str, dict[str, int]]] = {source: {} for source in DEFECT_KINDS}
    files = 3  # truth file, MSISDN mapping extract and manifest
    for day_index in range(days):
        report = _generate_day(out, settings, day_index)
        for source, n in report.rows.items():
            rows[source][report.ds] = n
        for source, counts in report.defects.items():
            defects[source][report.ds] = counts
        files += report.files
        if progress is not None:
            progress(report)
    personas, predicted = _write_truth(out, settings, key)
    manifest = {
        "generator": "jobs.sample_data",
        "params": {
            "subscribers": subscribers,
            "days": days,
            "start": start.isoformat(),
            "seed": seed,
            "defect_rate": defect_rate,
            "country_code": country_code,
            "timezone": timezone,
            "chunk_size": chunk_size,
            "key": "demo" if key == DEMO_KEY else "custom",
        },
        "personas": personas,
        "ml_predictions": predicted,
        "files": files + days,
        "rows": rows,
        "defects": defects,
    }
    (out / "_manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return {**manifest, "seconds": round(time.perf_counter() - began, 3)}


def _print_day(report: DayReport) -> None:
    rows = "  ".join(f"{source}={n:,}" for source, n in report.rows.items())
    injected = sum(n for counts in report.defects.values() for n in counts.values())
    print(f"{report.ds}  {rows}  defects={injected:,}  ({report.seconds:.1f}s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sample-data", description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, required=True)
    parser.add_argument("--days", type=int, required=True)
    parser.add_argument("--start", type=dt.date.fromisoformat, required=True, help="first day, YYYY-MM-DD")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--defect-rate", type=float, default=0.005)
    parser.add_argument("--chunk-size", type=int, default=200_000)
    args = parser.parse_args(argv)
    try:
        summary = generate(
            args.out,
            subscribers=args.subscribers,
            days=args.days,
            start=args.start,
            seed=args.seed,
            defect_rate=args.defect_rate,
            chunk_size=args.chunk_size,
            progress=_print_day,
        )
    except InvalidParameters as exc:
        parser.error(str(exc))
    print(
        f"wrote {summary['files']} files ({args.subscribers:,} subscribers x {args.days} days) "
        f"to {args.out} in {summary['seconds']:.1f}s"
    )
    return 0
