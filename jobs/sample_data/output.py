"""Writers of the raw extracts: text lines assembled with Arrow kernels, deterministic Parquet."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

Part = pa.Array | str
_RENDER_BATCH = 1_000_000  # lines rendered at once: keeps string offsets far below 2 GiB


@dataclass(frozen=True)
class Lines:
    """Text records: `parts` (arrays and literal strings) are concatenated per line.

    Non-null `overrides` replace the whole line (corrupted lines of the defect injection).
    """

    parts: list[Part]
    size: int
    overrides: pa.Array | None = None

    def take(self, indices: np.ndarray) -> Lines:
        parts = [p if isinstance(p, str) else p.take(indices) for p in self.parts]
        overrides = None if self.overrides is None else self.overrides.take(indices)
        return Lines(parts, len(indices), overrides)

    def slice(self, start: int, stop: int) -> Lines:
        parts = [p if isinstance(p, str) else p.slice(start, stop - start) for p in self.parts]
        overrides = None if self.overrides is None else self.overrides.slice(start, stop - start)
        return Lines(parts, stop - start, overrides)

    def with_overrides(self, rows: np.ndarray, values: pa.Array) -> Lines:
        """Replace the lines at boolean mask `rows` by `values` (in row order)."""
        base = self.overrides if self.overrides is not None else pa.nulls(self.size, pa.string())
        return replace(self, overrides=pc.replace_with_mask(base, pa.array(rows), values))

    def render(self) -> pa.Array:
        if self.size == 0:
            return pa.array([], pa.string())
        joined = pc.binary_join_element_wise(*self.parts, "")
        return joined if self.overrides is None else pc.coalesce(self.overrides, joined)


@dataclass(frozen=True)
class Batch:
    """One chunk's output for one source; CDR data comes as (local hour, lines) pairs."""

    data: Lines | pa.Table | Iterator[tuple[int, Lines]]
    issued: int  # record ids consumed: the clean rows, so ids do not depend on injected defects
    defects: dict[str, int] = field(default_factory=dict)


def csv_parts(columns: list[Part], sep: str) -> list[Part]:
    """Interleave columns with a delimiter (values never need quoting)."""
    parts: list[Part] = []
    for i, col in enumerate(columns):
        parts += [sep, col] if i else [col]
    return parts


def _payload(lines: pa.Array) -> memoryview:
    """The bytes of a fresh string array (values are contiguous in its data buffer)."""
    if len(lines) == 0:
        return memoryview(b"")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    return memoryview(lines.buffers()[2])[offsets[0] : offsets[-1]]


class TextSink:
    """A text file written line by line, with an optional header."""

    def __init__(self, path: Path, header: str | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.rows = 0
        self._fh = path.open("wb")
        if header is not None:
            self._fh.write(header.encode() + b"\n")

    def write(self, lines: Lines) -> None:
        for start in range(0, lines.size, _RENDER_BATCH):
            rendered = lines.slice(start, min(start + _RENDER_BATCH, lines.size)).render()
            self._fh.write(_payload(pc.binary_join_element_wise(rendered, "\n", "")))
        self.rows += lines.size

    def close(self) -> None:
        self._fh.close()


class ParquetSink:
    """A Parquet file with fixed writer options (no timestamps: same data => same bytes)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.rows = 0
        self._writer = pq.ParquetWriter(
            path,
            schema,
            compression="zstd",
            compression_level=3,
            use_dictionary=True,
            write_statistics=True,
            version="2.6",
        )

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table)
            self.rows += table.num_rows

    def close(self) -> None:
        self._writer.close()


def decimal_cents(cents: np.ndarray) -> pa.Array:
    """decimal128(12, 2) from integer cents, built from the 128-bit little-endian words."""
    cents = np.asarray(cents, dtype=np.int64)
    words = np.empty(2 * len(cents), dtype=np.int64)
    words[0::2], words[1::2] = cents, cents >> 63
    return pa.Array.from_buffers(pa.decimal128(12, 2), len(cents), [None, pa.py_buffer(words)])


def text(values: np.ndarray) -> pa.Array:
    """Integers as decimal strings."""
    return pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())


def money_text(cents: np.ndarray) -> pa.Array:
    """'12.50' from non-negative integer cents."""
    cents = np.asarray(cents, dtype=np.int64)
    return pc.binary_join_element_wise(text(cents // 100), pc.utf8_lpad(text(cents % 100), 2, "0"), ".")


def padded(values: np.ndarray, width: int, prefix: str = "") -> pa.Array:
    """'<prefix>000042' with zero padding to `width` digits."""
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(text(values), width, "0"), "")
