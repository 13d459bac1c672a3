"""The operator's local day: drawing instants inside it and formatting them per source.

Instants are int64 epoch seconds (UTC). "Local seconds" are the same instants shifted by the
zone offset, i.e. the local wall clock read as if it were UTC, which makes formatting plain
integer arithmetic. Daylight-saving days (23 or 25 hours) are handled.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_EPOCH = dt.date(1970, 1, 1)
EPOCH_ORDINAL = _EPOCH.toordinal()
_TWO_DIGITS = pa.array([f"{i:02d}" for i in range(60)])

# Relative activity per local wall-clock hour.
VOICE_PROFILE = np.array(
    [
        0.2,
        0.1,
        0.05,
        0.05,
        0.05,
        0.1,
        0.4,
        1.0,
        1.6,
        1.8,
        1.9,
        2.0,
        2.0,
        1.8,
        1.8,
        1.9,
        2.0,
        2.1,
        2.2,
        2.0,
        1.6,
        1.2,
        0.8,
        0.4,
    ]
)
DATA_PROFILE = np.array(
    [
        0.6,
        0.4,
        0.2,
        0.1,
        0.1,
        0.2,
        0.5,
        1.0,
        1.3,
        1.3,
        1.3,
        1.4,
        1.6,
        1.4,
        1.3,
        1.3,
        1.4,
        1.6,
        1.9,
        2.2,
        2.4,
        2.4,
        2.0,
        1.2,
    ]
)
OFFICE_PROFILE = np.array([0.0] * 8 + [1.0, 1.4, 1.5, 1.4, 1.0, 1.2, 1.4, 1.4, 1.3, 1.2, 1.0, 0.6] + [0.0] * 4)
NIGHT_PROFILE = np.array([0.0, 1.0, 1.0, 1.0, 1.0] + [0.0] * 19)


def _offset(tz: ZoneInfo, instant: int) -> int:
    return int(dt.datetime.fromtimestamp(instant, tz).utcoffset().total_seconds())


@dataclass(frozen=True)
class DayClock:
    """One local calendar day `ds` in a time zone."""

    ds: dt.date
    start_utc: int
    end_utc: int  # exclusive
    switch_utc: int  # first instant of the day using offset_after (end_utc when no change)
    offset_before: int
    offset_after: int

    @classmethod
    def for_day(cls, ds: dt.date, tz: ZoneInfo) -> DayClock:
        start = int(dt.datetime.combine(ds, dt.time(), tz).timestamp())
        end = int(dt.datetime.combine(ds + dt.timedelta(days=1), dt.time(), tz).timestamp())
        before, after = _offset(tz, start), _offset(tz, end - 1)
        switch = end
        if before != after:
            lo, switch = start, end - 1
            while lo < switch:  # bisect the first instant using the new offset
                mid = (lo + switch) // 2
                lo, switch = (mid + 1, switch) if _offset(tz, mid) == before else (lo, mid)
        return cls(ds, start, end, switch, before, after)

    @property
    def yyyymmdd(self) -> str:
        return self.ds.strftime("%Y%m%d")

    @property
    def ordinal(self) -> int:
        return self.ds.toordinal()

    def offsets(self, utc: np.ndarray) -> np.ndarray:
        return np.where(utc < self.switch_utc, self.offset_before, self.offset_after)

    def local(self, utc: np.ndarray) -> np.ndarray:
        return utc + self.offsets(utc)

    def _hour_starts(self) -> np.ndarray:
        return np.arange(self.start_utc, self.end_utc, 3600, dtype=np.int64)

    def wall_hours(self) -> list[int]:
        """Local hours (0-23) that exist on this day."""
        return sorted({int(h) for h in self.local(self._hour_starts()) % 86400 // 3600})

    def sample(self, rng: np.random.Generator, n: int, profile: np.ndarray) -> np.ndarray:
        """n instants inside the day, hours weighted by `profile` of the local hour."""
        starts = self._hour_starts()
        weights = profile[self.local(starts) % 86400 // 3600]
        hour = np.searchsorted(np.cumsum(weights) / weights.sum(), rng.random(n), side="right")
        hour = np.minimum(hour, len(starts) - 1)
        return np.minimum(starts[hour] + rng.integers(0, 3600, n), self.end_utc - 1)


def _stamp(secs: np.ndarray, date_fmt: str, between: str, time_sep: str) -> list[pa.Array | str]:
    """Parts of '<date><between>HH<sep>MM<sep>SS' for join_parts."""
    days = secs // 86400
    first = int(days.min()) if len(days) else 0
    span = int(days.max()) - first + 1 if len(days) else 0
    labels = pa.array([(_EPOCH + dt.timedelta(days=first + i)).strftime(date_fmt) for i in range(span)], pa.string())
    tod = secs - days * 86400
    return [
        labels.take(days - first),
        between,
        _TWO_DIGITS.take(tod // 3600),
        time_sep,
        _TWO_DIGITS.take(tod // 60 % 60),
        time_sep,
        _TWO_DIGITS.take(tod % 60),
    ]


def _join(parts: list[pa.Array | str]) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def compact(local: np.ndarray) -> pa.Array:
    """'20250301134512' (yyyyMMddHHmmss)."""
    return _join(_stamp(local, "%Y%m%d", "", ""))


def iso_local(local: np.ndarray) -> pa.Array:
    """'2025-03-01 13:45:12'."""
    return _join(_stamp(local, "%Y-%m-%d", " ", ":"))


def iso_utc(utc: np.ndarray) -> pa.Array:
    """'2025-03-01T12:45:12Z'."""
    return _join([*_stamp(utc, "%Y-%m-%d", "T", ":"), "Z"])


def iso_offset(local: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """'2025-03-01T13:45:12+01:00'."""
    values, inverse = np.unique(offsets, return_inverse=True)
    labels = pa.array([_offset_label(int(v)) for v in values], pa.string())
    return _join([*_stamp(local, "%Y-%m-%d", "T", ":"), labels.take(inverse)])


def _offset_label(seconds: int) -> str:
    sign = "+" if seconds >= 0 else "-"
    minutes = abs(seconds) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def iso_dates(ordinals: np.ndarray) -> pa.Array:
    """'YYYY-MM-DD' of proleptic ordinals."""
    return _stamp((ordinals - EPOCH_ORDINAL) * 86400, "%Y-%m-%d", "", "")[0]


def date32(ordinals: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(ordinals - EPOCH_ORDINAL, dtype=np.int32), type=pa.date32())


def timestamps_utc(utc: np.ndarray) -> pa.Array:
    return pa.array(utc * 1_000_000, type=pa.timestamp("us", tz="UTC"))
