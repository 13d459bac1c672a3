"""Run settings and the per (day, chunk) generation context shared by all sources."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from jobs.sample_data import personas as P
from jobs.sample_data.clock import DayClock
from jobs.sample_data.population import ROAMING_CELLS, Numbers, Population, cell_labels

CHURN_FLOOR = 0.25  # churn_risk activity on the last day, relative to the first
RAMP_DAYS = 21  # new joiners reach their normal activity after three weeks
SUSPENDED_ACTIVITY = 0.1


class Stream(IntEnum):
    """Random stream of each generator; defect streams are separate so clean data never moves."""

    ACTIVITY = 0
    CDR = 1
    NETWORK = 2
    BILLING = 3
    CRM = 4
    APP = 5
    XIVA = 6
    DWH = 7
    COUNTERPART = 8
    DEFECTS = 100


@dataclass(frozen=True)
class Settings:
    subscribers: int
    days: int
    start: dt.date
    seed: int
    defect_rate: float
    country_code: str
    timezone: str
    chunk_size: int

    @property
    def numbers(self) -> Numbers:
        return Numbers(self.country_code)

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def cell_labels(self) -> pa.Array:
        """Cell id strings indexed by cell number (home pool, then roaming cells)."""
        return cell_labels(self.subscribers)

    @property
    def roaming_cell_base(self) -> int:
        return len(self.cell_labels) - ROAMING_CELLS

    def chunks(self) -> list[tuple[int, int]]:
        return [(lo, min(lo + self.chunk_size, self.subscribers)) for lo in range(0, self.subscribers, self.chunk_size)]


def trend_level(pop: Population, day_ordinal: int, settings: Settings) -> np.ndarray:
    """Expected activity level of each subscriber on a day (0 before activation).

    churn_risk decays linearly across the window (1 before it), new joiners ramp up after
    activation and suspended lines are nearly silent.
    """
    progress = np.clip((day_ordinal - settings.start.toordinal()) / max(settings.days - 1, 1), 0.0, 1.0)
    age = day_ordinal - pop.activation
    level = np.ones(pop.size)
    level[pop.persona == P.CHURN_RISK] = 1.0 - (1.0 - CHURN_FLOOR) * progress
    joiner = pop.persona == P.NEW_JOINER
    level[joiner] = np.clip(0.3 + 0.7 * age[joiner] / RAMP_DAYS, 0.3, 1.0)
    level[pop.suspended] *= SUSPENDED_ACTIVITY
    return np.where(age >= 0, level, 0.0)


@dataclass(frozen=True)
class ChunkDay:
    """Everything a source generator needs for one chunk of subscribers on one day."""

    settings: Settings
    day_index: int
    chunk_index: int
    clock: DayClock
    pop: Population
    trend: np.ndarray  # expected activity level, see trend_level
    activity: np.ndarray  # trend x persistent heterogeneity x day-to-day noise
    msisdn8: pa.Array  # 8-digit subscriber numbers of the chunk

    @classmethod
    def build(cls, settings: Settings, day_index: int, chunk_index: int, clock: DayClock, pop: Population) -> ChunkDay:
        trend = trend_level(pop, clock.ordinal, settings)
        shape = P.column("dispersion")[pop.persona]
        noise = _rng(settings.seed, day_index, chunk_index, Stream.ACTIVITY).gamma(shape, 1.0 / shape)
        return cls(
            settings, day_index, chunk_index, clock, pop, trend, trend * pop.hetero * noise, Numbers.digits8(pop.index)
        )

    @property
    def numbers(self) -> Numbers:
        return self.settings.numbers

    @property
    def cell_labels(self) -> pa.Array:
        return self.settings.cell_labels

    @property
    def present(self) -> np.ndarray:
        """Subscribers activated on or before the day."""
        return self.pop.activation <= self.clock.ordinal

    def rng(self, stream: Stream) -> np.random.Generator:
        return _rng(self.settings.seed, self.day_index, self.chunk_index, stream)

    def defect_rng(self, stream: Stream) -> np.random.Generator:
        return _rng(self.settings.seed, self.day_index, self.chunk_index, Stream.DEFECTS + stream)

    def unknown_numbers(self, rng: np.random.Generator, n: int) -> pa.Array:
        """8-digit numbers for the '7' range that no subscriber owns."""
        return Numbers.digits8(rng.integers(0, 90_000_000, n))


def _rng(seed: int, day_index: int, chunk_index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, day_index, chunk_index, int(stream)]))
