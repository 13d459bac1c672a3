"""The fictional subscriber base: personas, contracts, tenure, home cells and numbering.

Every attribute is a pure function of (seed, subscriber index) computed with a counter-based
hash, so any set of subscribers (a chunk, or random call counterparts) is reproducible on its
own and does not depend on the chunk size.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.sample_data import personas as P

MAX_SUBSCRIBERS = 89_999_999  # 8-digit subscriber numbers from 10000000
REGIONS = (
    "Ile-de-France",
    "Auvergne-Rhone-Alpes",
    "Nouvelle-Aquitaine",
    "Occitanie",
    "Hauts-de-France",
    "Provence-Alpes-Cote-Azur",
    "Grand-Est",
    "Bretagne",
)
REGION_SHARES = np.array([0.24, 0.15, 0.12, 0.12, 0.11, 0.10, 0.08, 0.08])
PREPAID_PLANS = ("PRE_S", "PRE_M", "PRE_L")
POSTPAID_PLANS = ("POST_M", "POST_L", "POST_XL")
ROAMING_CELLS = 40
_CELL_COUNT_CDF = np.array([0.4, 0.8, 1.0])  # 1, 2 or 3 home cells
_CADENCE_DAYS = np.array([7, 10, 14, 30])
_CADENCE_CDF = np.array([0.4, 0.6, 0.9, 1.0])
_DAYS_PER_YEAR = 365.25

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


class Attr(IntEnum):
    """Hash streams of the per-subscriber (and per-subscriber-month) draws."""

    PERSONA = 1
    POSTPAID = 2
    PLAN = 3
    TENURE = 4
    AGE = 5
    REGION = 6
    DEVICE = 7
    SUSPENDED = 8
    CELL_COUNT = 9
    HOME_CELL = 10
    BILL_DAY = 12
    BILL_BASE = 13
    CADENCE = 14
    CADENCE_PHASE = 15
    HETERO_A = 16
    HETERO_B = 17
    CELL_QUALITY = 18
    MONTHLY = 1000  # + 16 * month index: bill amount, payment delay/failure/channel, DWH noise


def _mix_int(x: int) -> int:
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9 & _MASK64
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
    return x ^ (x >> 31)


def _mix(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, stream: int, idx: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) floats that depend only on (seed, stream, idx) (splitmix64)."""
    key = _mix_int((_mix_int(seed & _MASK64) + stream * _GOLDEN) & _MASK64)
    x = np.asarray(idx).astype(np.uint64) * np.uint64(_GOLDEN) + np.uint64(key)
    return (_mix(x) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def hash_normal(seed: int, stream_a: int, stream_b: int, idx: np.ndarray) -> np.ndarray:
    """Standard normal draws from two hash streams (Box-Muller)."""
    u1 = 1.0 - hash_uniform(seed, stream_a, idx)
    u2 = hash_uniform(seed, stream_b, idx)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def pick(u: np.ndarray, cdf: np.ndarray, group: np.ndarray | None = None) -> np.ndarray:
    """Categorical draw by inverse CDF; `cdf` is 1-D, or 2-D with one row per `group` value."""
    if cdf.ndim == 1:
        return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1).astype(np.int8)
    out = np.zeros(len(u), dtype=np.int8)
    for g in np.unique(group):
        rows = group == g
        out[rows] = np.minimum(np.searchsorted(cdf[g], u[rows], side="right"), cdf.shape[1] - 1)
    return out


def cell_pool_size(subscribers: int) -> int:
    """Number of radio cells of the network (4-digit cell ids)."""
    return int(np.clip(subscribers // 200, 40, 9999))


def personas_of(seed: int, idx: np.ndarray) -> np.ndarray:
    return pick(hash_uniform(seed, Attr.PERSONA, idx), np.cumsum(P.shares()))


def activation_ordinals(seed: int, idx: np.ndarray, persona: np.ndarray, start: dt.date, days: int) -> np.ndarray:
    """Activation date (proleptic ordinal) of each subscriber.

    New joiners activate within the window or up to 20 days before it; the others 1-5 years
    (steady_loyal 5-15 years) before the start.
    """
    u = hash_uniform(seed, Attr.TENURE, idx)
    years = P.column("tenure_years")[persona]
    back = np.floor((years[:, 0] + u * (years[:, 1] - years[:, 0])) * _DAYS_PER_YEAR).astype(np.int64)
    joiner_offset = np.floor(-20 + u * (days + 20)).astype(np.int64)
    offset = np.where(persona == P.NEW_JOINER, joiner_offset, -np.maximum(back, 1))
    return start.toordinal() + offset


@dataclass(frozen=True)
class Population:
    """Static attributes of a contiguous range of subscribers (one chunk)."""

    index: np.ndarray  # global subscriber index
    persona: np.ndarray
    postpaid: np.ndarray
    plan_tier: np.ndarray
    activation: np.ndarray  # proleptic ordinal of the activation date
    age_band: np.ndarray
    region: np.ndarray
    device: np.ndarray
    suspended: np.ndarray
    cells: np.ndarray  # (n, 3) cell numbers; only the first n_cells are used
    n_cells: np.ndarray
    bill_day: np.ndarray
    bill_base_cents: np.ndarray
    cadence: np.ndarray  # steady_loyal prepaid recharge every `cadence` days
    cadence_phase: np.ndarray
    hetero: np.ndarray  # persistent activity multiplier, mean 1

    @property
    def size(self) -> int:
        return len(self.index)

    @classmethod
    def build(cls, seed: int, lo: int, hi: int, subscribers: int, start: dt.date, days: int) -> Population:
        idx = np.arange(lo, hi, dtype=np.int64)
        persona = personas_of(seed, idx)

        def u(attr: Attr) -> np.ndarray:
            return hash_uniform(seed, attr, idx)

        region = pick(u(Attr.REGION), np.cumsum(REGION_SHARES))
        cells, n_cells = _home_cells(seed, idx, region, subscribers)
        low, high = P.column("bill_eur")[persona].T
        cadence = _CADENCE_DAYS[pick(u(Attr.CADENCE), _CADENCE_CDF)]
        return cls(
            index=idx,
            persona=persona,
            postpaid=u(Attr.POSTPAID) < P.column("postpaid")[persona],
            plan_tier=pick(u(Attr.PLAN), P.cdf("plan_tier"), persona),
            activation=activation_ordinals(seed, idx, persona, start, days),
            age_band=pick(u(Attr.AGE), P.cdf("age_bands"), persona),
            region=region,
            device=pick(u(Attr.DEVICE), P.cdf("device"), persona),
            suspended=u(Attr.SUSPENDED) < P.column("suspended")[persona],
            cells=cells,
            n_cells=n_cells,
            bill_day=(1 + np.floor(u(Attr.BILL_DAY) * 28)).astype(np.int64),
            bill_base_cents=np.round(100 * (low + u(Attr.BILL_BASE) * (high - low))).astype(np.int64),
            cadence=cadence,
            cadence_phase=np.floor(u(Attr.CADENCE_PHASE) * cadence).astype(np.int64),
            hetero=np.exp(0.35 * hash_normal(seed, Attr.HETERO_A, Attr.HETERO_B, idx) - 0.35**2 / 2),
        )


def _home_cells(seed: int, idx: np.ndarray, region: np.ndarray, subscribers: int) -> tuple[np.ndarray, np.ndarray]:
    """1-3 distinct neighbouring cells inside the subscriber's region block of the cell pool."""
    pool = cell_pool_size(subscribers)
    bounds = np.floor(np.concatenate([[0.0], np.cumsum(REGION_SHARES)]) * pool).astype(np.int64)
    lo, width = bounds[region], bounds[region + 1] - bounds[region]
    first = np.floor(hash_uniform(seed, Attr.HOME_CELL, idx) * width).astype(np.int64)
    cells = lo[:, None] + (first[:, None] + np.arange(3)) % width[:, None]
    n_cells = 1 + pick(hash_uniform(seed, Attr.CELL_COUNT, idx), _CELL_COUNT_CDF).astype(np.int64)
    return cells, np.minimum(n_cells, width)


def cell_quality(seed: int, cells: np.ndarray) -> np.ndarray:
    """Radio quality factor of each cell in [0.6, 1.4): scales throughput and latency."""
    return 0.6 + 0.8 * hash_uniform(seed, Attr.CELL_QUALITY, cells)


def cell_labels(subscribers: int) -> pa.Array:
    """Cell id strings: the home network pool, then the roaming (visited network) cells."""
    home = [f"CELL-{i:04d}" for i in range(cell_pool_size(subscribers))]
    return pa.array(home + [f"CELL-R{i:03d}" for i in range(ROAMING_CELLS)])


@dataclass(frozen=True)
class Numbers:
    """MSISDN formatting: subscriber i is +<cc>6<10000000 + i>; lead '7' marks numbers nobody owns."""

    country_code: str

    @staticmethod
    def digits8(values: np.ndarray) -> pa.Array:
        """8-digit subscriber numbers: 10000000 + index."""
        return pc.cast(pa.array(10_000_000 + np.asarray(values, dtype=np.int64)), pa.string())

    def e164(self, d8: pa.Array, lead: str = "6") -> pa.Array:
        """'33610000042'."""
        return pc.binary_join_element_wise(self.country_code + lead, d8, "")

    def plus(self, d8: pa.Array, lead: str = "6") -> pa.Array:
        """'+33610000042'."""
        return pc.binary_join_element_wise("+" + self.country_code + lead, d8, "")

    def national(self, d8: pa.Array, lead: str = "6") -> pa.Array:
        """'0610000042'."""
        return pc.binary_join_element_wise("0" + lead, d8, "")

    def international(self, d8: pa.Array, lead: str = "6") -> pa.Array:
        """'0033610000042'."""
        return pc.binary_join_element_wise("00" + self.country_code + lead, d8, "")

    def spaced(self, d8: pa.Array, lead: str = "6") -> pa.Array:
        """'+33 6 10 00 00 42'."""
        pairs = [pc.utf8_slice_codeunits(d8, i, i + 2) for i in range(0, 8, 2)]
        return pc.binary_join_element_wise(f"+{self.country_code} {lead}", *pairs, " ")
