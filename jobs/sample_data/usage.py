"""Switch CDRs (hourly pipe files) and the per-cell network QoE extract derived from them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.sample_data import defects as D
from jobs.sample_data import personas as P
from jobs.sample_data.clock import DATA_PROFILE, VOICE_PROFILE, compact, date32
from jobs.sample_data.context import ChunkDay, Stream
from jobs.sample_data.output import Batch, Lines, csv_parts, padded, text
from jobs.sample_data.population import ROAMING_CELLS, activation_ordinals, cell_quality, personas_of

CDR_COLUMNS = (
    "record_id",
    "msisdn",
    "record_type",
    "start_time",
    "duration_s",
    "bytes_up",
    "bytes_down",
    "cell_id",
    "roaming_flag",
    "other_party",
)
RECORD_TYPES = pa.array(["MOC", "MTC", "SMSMO", "SMSMT", "GPRS"])
MOC, MTC, SMSMO, SMSMT, GPRS = range(5)
WEEKEND_FACTOR = np.array([0.85, 0.85, 0.9, 0.9, 1.15])
CDR_DEFECTS = {
    D.DUPLICATE: D.Mode.COPY,
    D.MALFORMED_TIMESTAMP: D.Mode.INPLACE,
    D.NEGATIVE_DURATION: D.Mode.INPLACE,
    D.UNKNOWN_SUBSCRIBER: D.Mode.INPLACE,
    D.BAD_LINE: D.Mode.INSERT,
}
NETWORK_DEFECTS = {D.MISSING_MSISDN: D.Mode.INPLACE}
NETWORK_SCHEMA = pa.schema(
    [
        ("msisdn", pa.string()),
        ("cell_id", pa.string()),
        ("measurement_date", pa.date32()),
        ("call_attempts", pa.int32()),
        ("dropped_calls", pa.int32()),
        ("data_sessions", pa.int32()),
        ("avg_throughput_kbps", pa.float64()),
        ("avg_latency_ms", pa.float64()),
    ]
)
_BAD_TIMESTAMPS = pa.array(["20251345999999", "N/A"])
_GARBAGE = "#### CORRUPTED RECORD - switch buffer overflow ####"
_PEER_LEADS = pa.array(["1", "2", "3", "4", "5", "9", "6"])  # external landline/other ranges, then subscribers
_SUBSCRIBER_LEAD = 6
_COUNTERPART_SHARE = 0.6  # voice/SMS counterparts that are subscribers of the operator


@dataclass(frozen=True)
class Records:
    """Clean CDRs of a chunk, sorted by start time."""

    owner: np.ndarray  # chunk-local subscriber position
    rtype: np.ndarray
    utc: np.ndarray
    duration: np.ndarray
    bytes_up: np.ndarray
    bytes_down: np.ndarray
    slot: np.ndarray  # home cell slot 0-2
    roaming: np.ndarray
    peer_lead: np.ndarray  # index into _PEER_LEADS
    peer8: np.ndarray  # 8-digit counterpart number minus 10000000

    @property
    def size(self) -> int:
        return len(self.owner)


def generate(ctx: ChunkDay, first_seq: int) -> tuple[Batch, Records]:
    """CDR lines (with defects) per local hour, and the clean records they come from.

    The lines of each hour are built lazily, when written, to keep the chunk's memory low.
    """
    records = _records(ctx)
    local = ctx.clock.local(records.utc)
    defect_rng = ctx.defect_rng(Stream.CDR)
    plan = D.plan(defect_rng, records.size, ctx.settings.defect_rate, CDR_DEFECTS)
    rows, inserted = plan.layout(local)
    flags = {kind: plan.mask(kind)[rows] for kind in (D.UNKNOWN_SUBSCRIBER, D.MALFORMED_TIMESTAMP, D.NEGATIVE_DURATION)}
    bounds = np.searchsorted(local[rows] % 86400 // 3600, np.arange(25))

    def hourly() -> Iterator[tuple[int, Lines]]:
        for hour in np.flatnonzero(np.diff(bounds)):
            part = slice(bounds[hour], bounds[hour + 1])
            columns = _columns(ctx, records, first_seq, rows[part], {k: f[part] for k, f in flags.items()}, defect_rng)
            lines = Lines(csv_parts(columns, "|"), len(columns[0]))
            if inserted[part].any():
                lines = lines.with_overrides(inserted[part], _garbage(columns, inserted[part]))
            yield int(hour), lines

    return Batch(hourly(), records.size, plan.counts()), records


def _timeline(ctx: ChunkDay, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Owner, record type and start instant of the chunk's records, in time order."""
    pop = ctx.pop
    weekend = WEEKEND_FACTOR if ctx.clock.ds.weekday() >= 5 else np.ones(5)
    counts = rng.poisson(P.column("cdr")[pop.persona] * ctx.activity[:, None] * weekend).ravel()
    owner = np.repeat(np.repeat(np.arange(pop.size), 5), counts)
    rtype = np.repeat(np.tile(np.arange(5, dtype=np.int8), pop.size), counts)
    utc = np.empty(len(owner), dtype=np.int64)
    data = rtype == GPRS
    utc[~data] = ctx.clock.sample(rng, int((~data).sum()), VOICE_PROFILE)
    utc[data] = ctx.clock.sample(rng, int(data.sum()), DATA_PROFILE)
    order = np.argsort(ctx.clock.local(utc), kind="stable")
    return owner[order], rtype[order], utc[order]


def _records(ctx: ChunkDay) -> Records:
    """Clean records; per-record draws are independent, so they are made directly in time order."""
    rng, pop = ctx.rng(Stream.CDR), ctx.pop
    owner, rtype, utc = _timeline(ctx, rng)
    n, persona = len(owner), pop.persona[owner]
    data, voice = rtype == GPRS, rtype <= MTC
    voice_s = np.clip(P.column("voice_median_s")[persona] * rng.lognormal(0.0, 0.9, n), 1, 7200)
    data_s = np.clip(420 * rng.lognormal(0.0, 1.0, n), 1, 14400)
    duration = np.where(voice, voice_s, np.where(data, data_s, 0)).astype(np.int64)
    down = np.where(data, P.column("session_mb")[persona] * 1e6 * rng.lognormal(-0.3, 0.8, n), 0).astype(np.int64)
    up = (down * rng.uniform(0.05, 0.25, n)).astype(np.int64)
    slot = np.floor(rng.random(n) ** 2 * pop.n_cells[owner]).astype(np.int8)
    roaming_day = (rng.random(pop.size) < P.column("roaming")[pop.persona]) & (ctx.activity > 0)
    return Records(owner, rtype, utc, duration, up, down, slot, roaming_day[owner], *_counterparts(ctx, n))


def _counterparts(ctx: ChunkDay, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Other parties: subscribers activated by the day (60%) or external numbers."""
    rng, settings = ctx.rng(Stream.COUNTERPART), ctx.settings
    peer = rng.integers(0, settings.subscribers, n)
    activation = activation_ordinals(
        settings.seed, peer, personas_of(settings.seed, peer), settings.start, settings.days
    )
    internal = (rng.random(n) < _COUNTERPART_SHARE) & (activation <= ctx.clock.ordinal)
    lead = np.where(internal, _SUBSCRIBER_LEAD, rng.integers(0, _SUBSCRIBER_LEAD, n))
    return lead, np.where(internal, peer, rng.integers(0, 90_000_000, n))


def _columns(
    ctx: ChunkDay,
    rec: Records,
    first_seq: int,
    rows: np.ndarray,
    flags: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> list[pa.Array]:
    """The ten CDR columns of the lines built from clean records `rows`; `flags` mark in-place defects."""
    owner = rec.owner[rows]
    msisdn = ctx.numbers.e164(ctx.msisdn8).take(owner)
    unknown = flags[D.UNKNOWN_SUBSCRIBER]
    if unknown.any():
        fake = ctx.numbers.e164(ctx.unknown_numbers(rng, int(unknown.sum())), lead="7")
        msisdn = pc.replace_with_mask(msisdn, pa.array(unknown), fake)
    start_time = compact(ctx.clock.local(rec.utc[rows]))
    malformed = flags[D.MALFORMED_TIMESTAMP]
    if malformed.any():
        start_time = pc.replace_with_mask(
            start_time, pa.array(malformed), _BAD_TIMESTAMPS.take(np.arange(int(malformed.sum())) % 2)
        )
    duration = rec.duration[rows]
    negative = flags[D.NEGATIVE_DURATION]
    duration[negative] = -(duration[negative] + 1)
    roaming = rec.roaming[rows]
    visited = ctx.settings.roaming_cell_base + (ctx.pop.index[owner] + ctx.day_index) % ROAMING_CELLS
    cell = np.where(roaming, visited, ctx.pop.cells[owner, rec.slot[rows]])
    other = pc.binary_join_element_wise(
        ctx.settings.country_code, _PEER_LEADS.take(rec.peer_lead[rows]), ctx.numbers.digits8(rec.peer8[rows]), ""
    )
    return [
        padded(first_seq + rows, 10, f"C{ctx.clock.yyyymmdd}"),
        msisdn,
        RECORD_TYPES.take(rec.rtype[rows]),
        start_time,
        text(duration),
        text(rec.bytes_up[rows]),
        text(rec.bytes_down[rows]),
        ctx.cell_labels.take(cell),
        pa.array(["N", "Y"]).take(roaming.astype(np.int8)),
        pc.if_else(pa.array(rec.rtype[rows] == GPRS), "", other),
    ]


def _garbage(columns: list[pa.Array], inserted: np.ndarray) -> pa.Array:
    """Corrupted lines: alternately free text and a record cut after three fields."""
    mask = pa.array(inserted)
    cut = pc.binary_join_element_wise(*(c.filter(mask) for c in columns[:3]), "|")
    return pc.if_else(pa.array(np.arange(len(cut)) % 2 == 0), _GARBAGE, cut)


def network(ctx: ChunkDay, records: Records) -> Batch:
    """One QoE row per subscriber and home cell used that day, from the clean CDRs."""
    rng, pop = ctx.rng(Stream.NETWORK), ctx.pop
    home = ~records.roaming
    key = records.owner[home] * 3 + records.slot[home]
    rtype = records.rtype[home]
    used = np.bincount(key, minlength=pop.size * 3)
    calls = np.bincount(key[rtype <= MTC], minlength=pop.size * 3)
    sessions = np.bincount(key[rtype == GPRS], minlength=pop.size * 3)
    keys = np.flatnonzero(used)
    owner, calls, sessions = keys // 3, calls[keys], sessions[keys]
    persona, cell = pop.persona[owner], pop.cells[owner, keys % 3]
    quality = cell_quality(ctx.settings.seed, cell)
    dropped = rng.binomial(calls, np.minimum(P.column("drop_rate")[persona] / quality, 1.0))
    throughput = P.column("throughput_kbps")[persona] * quality * rng.lognormal(0.0, 0.25, len(keys))
    latency = P.column("latency_ms")[persona] / quality * rng.lognormal(0.0, 0.2, len(keys))
    plan = D.plan(ctx.defect_rng(Stream.NETWORK), len(keys), ctx.settings.defect_rate, NETWORK_DEFECTS)
    msisdn = ctx.numbers.plus(ctx.msisdn8).take(owner)
    missing = plan.mask(D.MISSING_MSISDN)
    if missing.any():
        msisdn = pc.replace_with_mask(msisdn, pa.array(missing), pa.nulls(int(missing.sum()), pa.string()))
    table = pa.table(
        [
            msisdn,
            ctx.cell_labels.take(cell),
            date32(np.full(len(keys), ctx.clock.ordinal)),
            pa.array(calls, pa.int32()),
            pa.array(dropped, pa.int32()),
            pa.array(sessions, pa.int32()),
            pa.array(np.round(throughput, 1)),
            pa.array(np.round(latency, 1)),
        ],
        schema=NETWORK_SCHEMA,
    )
    return Batch(table, len(keys), plan.counts())
