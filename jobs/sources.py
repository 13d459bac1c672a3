"""Data sources (one YAML file each under conf/sources/): when they are due, where their
extracts are, and how a raw extract is read and checked against its input contract."""

from __future__ import annotations

import codecs
import fnmatch
import gzip
import itertools
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.config import path_template_problem, render_template
from jobs.storage import filesystem

CORRUPT = "_corrupt_record"
SOURCE_FILE = "_source_file"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
TEXT_FORMATS = ("csv", "json")


class SourceError(RuntimeError):
    """A whole extract is unusable (missing, wrong columns): the source fails for the day."""


class NoUsableFile(SourceError):
    """Every file of an extract was set aside: `rejected` says which and why, to be quarantined."""

    def __init__(self, message: str, rejected: Sequence[FileReject]) -> None:
        super().__init__(message)
        self.rejected = tuple(rejected)

    @property
    def lines(self) -> int:
        return sum(r.lines for r in self.rejected)


@dataclass(frozen=True)
class ContractColumn:
    path: str  # as in the extract, dotted for nested JSON/parquet fields
    type: str
    nullable: bool = False
    pii: bool = False

    @property
    def name(self) -> str:
        """Canonical flat name used everywhere after the read."""
        return self.path.replace(".", "_")


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    format: str
    sync_frequency: str
    connection: Mapping[str, Any]
    contract: tuple[ContractColumn, ...]
    natural_key: tuple[str, ...]
    subscriber_column: str
    mappings: tuple[Mapping[str, Any], ...]
    active: bool = True
    mandatory: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    due: Mapping[str, Any] = field(default_factory=dict)
    event_time: Mapping[str, Any] | None = None
    checks: tuple[Mapping[str, Any], ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)
    check_known_subscriber: bool = True
    profile: Mapping[str, Any] | None = None
    config_file: str = "conf/sources"

    @classmethod
    def from_config(cls, spec: Mapping[str, Any], config_file: str = "conf/sources") -> Source:
        contract = tuple(_contract_column(path, value) for path, value in spec["contract"].items())
        return cls(
            name=spec["name"],
            kind=spec["kind"],
            format=spec["format"],
            sync_frequency=spec["sync_frequency"],
            connection=spec.get("connection") or {},
            contract=contract,
            natural_key=tuple(flat(c) for c in spec["natural_key"]),
            subscriber_column=flat(spec["subscriber"]["column"]),
            mappings=tuple(spec.get("mappings") or ()),
            active=spec.get("active", True),
            mandatory=spec.get("mandatory", False),
            options=spec.get("options") or {},
            due=spec.get("due") or {},
            event_time=spec.get("event_time"),
            checks=tuple(spec.get("checks") or ()),
            attributes=spec.get("attributes") or {},
            check_known_subscriber=spec.get("check_known_subscriber", True),
            profile=spec.get("profile"),
            config_file=config_file,
        )

    @property
    def columns(self) -> dict[str, ContractColumn]:
        return {c.name: c for c in self.contract}

    def is_due(self, ds: date) -> bool:
        if self.sync_frequency in ("hourly", "daily"):
            return True
        if self.sync_frequency == "weekly":
            return WEEKDAYS[ds.weekday()] == self.due["weekday"]
        return ds.day == self.due["day_of_month"]

    def path_for(self, ds: date, raw_root: str) -> str:
        problem = path_template_problem(str(self.connection["path"]))
        if problem is not None:
            raise SourceError(f"source {self.name}: connection.path: {problem}")
        try:
            return render_template(str(self.connection["path"]), template_values(ds, raw_root))
        except ValueError as exc:
            raise SourceError(f"source {self.name}: connection.path: {exc}") from exc


def flat(path: str) -> str:
    return path.replace(".", "_")


def template_values(ds: date, raw_root: str = "") -> dict[str, str]:
    prev_month = (ds.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    return {"ds": ds.isoformat(), "ds_nodash": ds.strftime("%Y%m%d"), "prev_month": prev_month, "raw_root": raw_root}


def _contract_column(path: str, value: Any) -> ContractColumn:
    if isinstance(value, str):
        return ContractColumn(path, value)
    return ContractColumn(path, value["type"], bool(value.get("nullable", False)), bool(value.get("pii", False)))


def spark_type(type_name: str) -> T.DataType:
    return T._parse_datatype_string(type_name)


# -- reading ----------------------------------------------------------------------------------


def list_extract_files(pattern: str) -> list[str]:
    """Files matching a `dir/*.ext` pattern (glob in the last segment only)."""
    fs, path = filesystem(pattern)
    directory, _, glob = path.rpartition("/")
    info = fs.get_file_info(directory)
    if info.type != pafs.FileType.Directory:
        return []
    entries = fs.get_file_info(pafs.FileSelector(directory))
    prefix = pattern[: len(pattern) - len(glob)]
    return sorted(
        prefix + e.base_name for e in entries if e.type == pafs.FileType.File and fnmatch.fnmatch(e.base_name, glob)
    )


@dataclass(frozen=True)
class FileReject:
    """A whole file quarantined before any row is read, with its reason and line count."""

    path: str
    reason: str
    message: str
    lines: int = 0


@dataclass(frozen=True)
class Extract:
    """The readable rows of one extract and the files that had to be set aside."""

    rows: DataFrame
    rejected_files: tuple[FileReject, ...] = ()
    files: tuple[str, ...] = ()


_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"PK\x03\x04": "zip", b"\x28\xb5\x2f\xfd": "zstd"}
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zip", ".zst", ".deflate", ".lz4", ".snappy")
_CHUNK = 1 << 20


def read_extract(spark: SparkSession, source: Source, ds: date, raw_root: str) -> Extract:
    """Raw rows of one due extract, plus `_source_file` (and `_corrupt_record` for text formats).

    Text formats are read all-string so that a bad value becomes a quarantined row, not a
    failed job. A file that cannot be read as the contract says (unreadable, wrong encoding,
    compressed under a plain name, empty, duplicate or missing columns) is set aside with its
    reason and the other files are read; a missing extract raises SourceError, one with no
    usable file NoUsableFile (which carries the files set aside).
    """
    if source.format == "jdbc":
        return Extract(_read_jdbc(spark, source, ds))
    pattern = source.path_for(ds, raw_root)
    files = list_extract_files(pattern)
    if not files:
        raise SourceError(f"source {source.name}: no extract for {ds} at {pattern}")
    rejected = [hidden_file(path, source) for path in files if is_hidden(path)]
    readable = [path for path in files if not is_hidden(path)]
    if source.format not in TEXT_FORMATS:
        if not readable:
            raise _no_usable_file(source, ds, pattern, rejected)
        df = spark.read.parquet(*readable)
        _check_parquet_columns(source, df, pattern)
        return Extract(df.withColumn(SOURCE_FILE, F.col("_metadata.file_path")), tuple(rejected), tuple(files))
    good: list[str] = []
    for path in readable:
        problem = screen_text_file(path, source)
        (good.append(path) if problem is None else rejected.append(problem))
    headers: dict[tuple[str, ...], list[str]] = {}
    if source.format == "csv":
        sep = str(source.options.get("sep", ","))
        for path in list(good):
            header, problem = _csv_header_problem(path, sep, source)
            if problem is not None:
                good.remove(path)
                rejected.append(problem)
            else:
                headers.setdefault(tuple(header), []).append(path)
    if not good:
        raise _no_usable_file(source, ds, pattern, rejected)
    if source.format == "csv":
        parts = [_read_csv(spark, source, list(header), paths) for header, paths in headers.items()]
        df = parts[0]
        for part in parts[1:]:
            df = df.unionByName(part)
    else:
        df = _read_json_lines(spark, source, good)
    return Extract(df, tuple(rejected), tuple(files))


def _base(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _no_usable_file(source: Source, ds: date, pattern: str, rejected: list[FileReject]) -> NoUsableFile:
    reasons = "; ".join(f"{_base(r.path)}: {r.reason} ({r.message})" for r in rejected)
    message = f"source {source.name}: no usable file in the extract for {ds} at {pattern}: {reasons}"
    return NoUsableFile(message, rejected)


# Spark's file reader skips these names (Hadoop's hidden and metadata files) even when a read
# names them: their rows would vanish unread and uncounted
HIDDEN_PREFIXES = ("_", ".")


def is_hidden(path: str) -> bool:
    return _base(path).startswith(HIDDEN_PREFIXES)


def hidden_file(path: str, source: Source) -> FileReject:
    """A file whose name Spark treats as hidden, quarantined whole with its lines (rows for Parquet)."""
    if source.format in TEXT_FORMATS:
        lines = text_lines(path, _encoding(source))
    else:
        fs, file_path = filesystem(path)
        lines = pq.read_metadata(file_path, filesystem=fs).num_rows
    message = "the file name starts with '_' or '.', which Spark skips as a hidden file: rename it to ingest it"
    return FileReject(path, "hidden_file", message, lines)


def screen_text_file(path: str, source: Source) -> FileReject | None:
    """Read a text file once, in chunks: None when it can be parsed, else why not. Catches
    what would otherwise fail the whole read: unreadable, compressed under a plain name (or a
    plain file under a compressed name), a gzip stream cut short, not in the declared encoding
    (a UTF-16/32 byte-order mark included), empty. A *.gz file is screened decompressed."""
    encoding = _encoding(source)
    gzipped = path.lower().endswith(".gz")
    if path.lower().endswith(_COMPRESSED_SUFFIXES) and not gzipped:
        return None  # Spark decompresses these itself
    try:
        fs, fs_path = filesystem(path)
        with fs.open_input_stream(fs_path, compression=None) as stream:
            chunks = iter(lambda: stream.read(_CHUNK), b"")
            first = next(chunks, b"")
            if not first:
                return FileReject(path, "empty_file", "the file is empty (0 bytes; a header line is expected)")
            kind = next((k for magic, k in _COMPRESSED.items() if first.startswith(magic)), None)
            if gzipped and kind != "gzip":
                lines = _TextScan(encoding).run(itertools.chain([first], chunks)).lines
                what = f"{kind}-compressed" if kind else "plain text"
                message = f"the file is named {_base(path)!r} but is {what}, not gzip-compressed"
                return FileReject(path, "compressed_mismatch", message, lines)
            if kind and not gzipped:
                message = f"the file is {kind}-compressed but named {_base(path)!r}; name it *.gz (or similar)"
                return FileReject(path, "compressed_mismatch", message)
            data = itertools.chain([first], chunks)
            scan = _TextScan(encoding)
            try:
                scan.run(_gunzip(data) if gzipped else data)
            except _CorruptStream as exc:
                return FileReject(path, "unreadable_file", f"{exc} after {scan.lines:,} line(s)", scan.lines)
    except (OSError, LookupError) as exc:
        return FileReject(path, "unreadable_file", f"cannot read the file: {type(exc).__name__}")
    if scan.size == 0:  # a compressed empty file
        return FileReject(path, "empty_file", "the file holds no data (0 bytes once decompressed)")
    if scan.problem is not None:
        return FileReject(path, "encoding_error", scan.problem, scan.lines)
    return None


_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


class _CorruptStream(OSError):
    """A compressed stream that is cut short or corrupt."""


class _TextScan:
    """Lines, size and the first encoding problem of a file's (decompressed) bytes."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.lines, self.size, self.problem = 0, 0, None
        self._strict = codecs.getincrementaldecoder(encoding)("strict")
        self._counter: Any = None  # decodes for counting when lines are not single '\n' bytes
        self._last = "\n"

    def run(self, chunks: Any) -> _TextScan:
        try:
            for chunk in chunks:
                self._feed(chunk)
        finally:
            self.lines += self._last not in ("\n", b"\n")  # a last line without newline counts
        if self.problem is None and self.size:
            try:
                self._strict.decode(b"", final=True)
            except UnicodeDecodeError:
                self.problem = f"the file ends inside a multi-byte {self.encoding} character"
        return self

    def _feed(self, chunk: bytes) -> None:
        if self.size == 0:
            self._start(chunk)
        if self.problem is None:
            try:
                self._strict.decode(chunk)
            except UnicodeDecodeError as exc:
                line = self.lines + chunk.count(b"\n", 0, exc.start) + 1
                at = self.size + exc.start
                self.problem = (
                    f"byte 0x{chunk[exc.start]:02x} at offset {at} (line {line}) is not valid {self.encoding}"
                )
        if self._counter is None:
            self.lines += chunk.count(b"\n")
            self._last = chunk[-1:]
        else:
            text = self._counter.decode(chunk)
            self.lines += text.count("\n")
            self._last = text[-1:] or self._last
        self.size += len(chunk)

    def _start(self, chunk: bytes) -> None:
        declared = codecs.lookup(self.encoding).name
        bom = next((name for mark, name in _BOMS if chunk.startswith(mark)), None)
        if bom is not None and not declared.startswith(bom[:6]):
            self.problem = f"the file starts with a {bom[:6].upper()} byte-order mark; the source reads {self.encoding}"
        wide = bom or (declared if declared.startswith(("utf-16", "utf-32")) else None)
        if wide is not None:
            self._counter = codecs.getincrementaldecoder(wide)("replace")


def _gunzip(chunks: Any) -> Any:
    """The decompressed bytes of a gzip file (members one after another), at most _CHUNK at a
    time; _CorruptStream when the stream is corrupt or ends before its end marker."""
    decompressor = zlib.decompressobj(wbits=31)
    try:
        for data in chunks:
            while True:
                if decompressor.eof and data:
                    decompressor = zlib.decompressobj(wbits=31)
                out = decompressor.decompress(data, _CHUNK)
                data = decompressor.unused_data if decompressor.eof else decompressor.unconsumed_tail
                if out:
                    yield out
                if not data and len(out) < _CHUNK:
                    break
    except zlib.error as exc:
        raise _CorruptStream(f"the gzip stream is corrupt ({exc})") from None
    if not decompressor.eof:
        raise _CorruptStream("the gzip stream ends before its end marker: the file is cut short")


def _encoding(source: Source) -> str:
    return str(source.options.get("encoding") or source.options.get("charset") or "utf-8")


def _open_text(path: str) -> Any:
    """The file's bytes as a stream, gunzipped when it is named *.gz."""
    fs, fs_path = filesystem(path)
    stream = fs.open_input_stream(fs_path, compression=None)
    return gzip.GzipFile(fileobj=stream, mode="rb") if path.lower().endswith(".gz") else stream


def text_lines(path: str, encoding: str = "utf-8") -> int:
    """Lines of a text file (a last line without newline counts), decompressed when *.gz."""
    with _open_text(path) as stream:
        return _TextScan(encoding).run(iter(lambda: stream.read(_CHUNK), b"")).lines


def _csv_header_problem(path: str, sep: str, source: Source) -> tuple[list[str], FileReject | None]:
    header = _csv_header(path, sep, _encoding(source))
    folded = [c.casefold() for c in header]  # Spark resolves column names case-insensitively
    duplicates = sorted({c for c in header if folded.count(c.casefold()) > 1})
    if duplicates:
        message = f"column(s) {duplicates} appear more than once in the header (names are case-insensitive)"
        return header, FileReject(path, "duplicate_header", message, text_lines(path, _encoding(source)))
    missing = [c.path for c in source.contract if c.path not in header]
    if missing:
        # the header is not quoted: a header-less file would show a data line (phone numbers)
        shown = ", ".join(repr(c[:30]) for c in header[:12]) if all(_looks_like_name(c) for c in header) else None
        message = f"lacks required column(s) {missing}" + (
            f"; header is [{shown}]" if shown is not None else "; the first line is not a header"
        )
        return header, FileReject(path, "missing_column", message, text_lines(path, _encoding(source)))
    return header, None


def _looks_like_name(text: str) -> bool:
    return bool(text) and not any(ch.isdigit() for ch in text[:1]) and sum(ch.isdigit() for ch in text) < 6


def _read_csv(spark: SparkSession, source: Source, header: list[str], files: list[str]) -> DataFrame:
    """Files that share one header, read positionally with the header's (cleaned) names and
    then selected by name, so reordered or extra columns in some files do no harm."""
    schema = T.StructType(
        [T.StructField(f"_c{i}", T.StringType()) for i in range(len(header))] + [T.StructField(CORRUPT, T.StringType())]
    )
    options = {"header": True, "mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT, "enforceSchema": True}
    options["escape"] = '"'  # RFC 4180: a quote inside a quoted field is doubled ("a ""b"" c"), unless configured
    options.update({k: v for k, v in source.options.items() if k not in ("header", "enforceSchema")})
    df = spark.read.options(**options).schema(schema).csv(files)
    named = [F.col(f"_c{header.index(c.path)}").alias(c.path) for c in source.contract]
    return df.select(*named, F.col(CORRUPT), F.col("_metadata.file_path").alias(SOURCE_FILE))


def _csv_header(path: str, sep: str, encoding: str = "utf-8") -> list[str]:
    with _open_text(path) as stream:
        first = stream.read(64 * 1024).split(b"\n", 1)[0]
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    return [c.strip().strip('"').strip() for c in first.decode(codec, errors="replace").rstrip("\r").split(sep)]


def _read_json_lines(spark: SparkSession, source: Source, files: list[str]) -> DataFrame:
    """One record per line: a line is parsed against the contract on its own, and a line that
    is not one JSON object (an array, a scalar, broken text, two objects) is a corrupt record,
    never several rows nor part of one. Blank lines (spaces, tabs, a CRLF file's lone carriage
    return) are not records."""
    schema = _string_schema(source)  # ends with the corrupt-record column
    lines = (
        spark.read.options(lineSep="\n")
        .text(files)
        .select(
            F.regexp_replace("value", "^\ufeff", "").alias("value"), F.col("_metadata.file_path").alias(SOURCE_FILE)
        )
    )
    lines = lines.filter(~F.col("value").rlike(r"^\s*$"))
    # one object and nothing after it: "{..}{..}" or "{..}, {..}" would parse as their first
    # object alone, so the line read as the only element of an array must give one element
    alone = F.json_array_length(F.concat(F.lit("["), F.col("value"), F.lit("]"))) == 1  # null when not JSON
    is_object = F.col("value").rlike(r"(?s)^\s*\{.*\}\s*$") & F.coalesce(alone, F.lit(False))
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
    df = lines.select("*", F.from_json(F.col("value"), schema, options).alias("_record"))
    corrupt = F.when(~is_object | F.col("_record").isNull(), F.col("value")).otherwise(F.col(f"_record.{CORRUPT}"))
    fields = [F.col(f"_record.{f.name}").alias(f.name) for f in schema.fields if f.name != CORRUPT]
    return df.select(*fields, corrupt.alias(CORRUPT), F.col(SOURCE_FILE))


def _string_schema(source: Source) -> T.StructType:
    """All-string read schema for JSON with nested fields rebuilt from dotted contract paths."""
    tree: dict[str, Any] = {}
    for column in source.contract:
        node = tree
        *parents, leaf = column.path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = None

    def build(node: dict[str, Any]) -> T.StructType:
        return T.StructType([T.StructField(k, T.StringType() if v is None else build(v)) for k, v in node.items()])

    schema = build(tree)
    return schema.add(T.StructField(CORRUPT, T.StringType()))


def _check_parquet_columns(source: Source, df: DataFrame, pattern: str) -> None:
    for column in source.contract:
        try:
            _ = df.select(F.col(column.path)).schema  # resolving the column is the check
        except Exception as exc:
            raise SourceError(
                f"source {source.name}: extract {pattern} lacks required column {column.path!r} ({column.type})"
            ) from exc


def _read_jdbc(spark: SparkSession, source: Source, ds: date) -> DataFrame:
    from jobs.jdbc import JdbcError, bind_query, read_query

    query = bind_query(str(source.connection["query"]), ds)
    try:
        df = read_query(spark, source.connection, query, name=source.name)
    except JdbcError as exc:
        raise SourceError(str(exc)) from None
    return df.withColumn(SOURCE_FILE, F.lit(f"jdbc:{source.name}"))


def conform(df: DataFrame, source: Source) -> DataFrame:
    """Flatten contract columns to canonical names, keep their raw text, and type them.

    Output: `<name>` (typed, null when the value does not cast), `_raw_<name>` (string as
    delivered), `_source_file`, `_corrupt_record` (null when the format has none).
    """
    corrupt = F.col(CORRUPT) if CORRUPT in df.columns else F.lit(None).cast("string")
    raw = [F.col(c.path).cast("string").alias(f"_raw_{c.name}") for c in source.contract]
    typed = [_try_cast(F.col(c.path), c.type).alias(c.name) for c in source.contract]
    return df.select(*typed, *raw, F.col(SOURCE_FILE), corrupt.alias(CORRUPT))


def _try_cast(col: Column, type_name: str) -> Column:
    if type_name == "string":
        return col.cast("string")
    return col.try_cast(spark_type(type_name))
