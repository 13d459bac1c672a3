"""Data sources (one YAML file each under conf/sources/): when they are due, where their
extracts are, and how a raw extract is read and checked against its input contract."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pyarrow.fs as pafs
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

CORRUPT = "_corrupt_record"
SOURCE_FILE = "_source_file"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
TEXT_FORMATS = ("csv", "json")


class SourceError(RuntimeError):
    """A whole extract is unusable (missing, wrong columns): the source fails for the day."""


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
            mappings=tuple(spec["mappings"]),
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
        return str(self.connection["path"]).format(**template_values(ds, raw_root))


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
    fs, path = pafs.FileSystem.from_uri(_as_uri(pattern))
    directory, _, glob = path.rpartition("/")
    info = fs.get_file_info(directory)
    if info.type != pafs.FileType.Directory:
        return []
    entries = fs.get_file_info(pafs.FileSelector(directory))
    prefix = pattern[: len(pattern) - len(glob)]
    return sorted(
        prefix + e.base_name for e in entries if e.type == pafs.FileType.File and fnmatch.fnmatch(e.base_name, glob)
    )


def _as_uri(path: str) -> str:
    if "://" in path:
        return path
    from pathlib import Path

    return str(Path(path).resolve())


def read_extract(spark: SparkSession, source: Source, ds: date, raw_root: str) -> DataFrame:
    """Raw rows of one due extract, plus `_source_file` (and `_corrupt_record` for text formats).

    Text formats are read all-string so that a bad value becomes a quarantined row, not a
    failed job; whole-file problems (missing extract, missing columns) raise SourceError.
    """
    if source.format == "jdbc":
        return _read_jdbc(spark, source, ds)
    pattern = source.path_for(ds, raw_root)
    files = list_extract_files(pattern)
    if not files:
        raise SourceError(f"source {source.name}: no extract for {ds} at {pattern}")
    if source.format == "csv":
        df = _read_csv(spark, source, files)
    elif source.format == "json":
        df = (
            spark.read.options(mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT)
            .schema(_string_schema(source))
            .json(files)
        )
    else:
        df = spark.read.parquet(*files)
        _check_parquet_columns(source, df, pattern)
    return df.withColumn(SOURCE_FILE, F.col("_metadata.file_path"))


def _read_csv(spark: SparkSession, source: Source, files: list[str]) -> DataFrame:
    sep = source.options.get("sep", ",")
    header = _csv_header(files[0], sep)
    for path in files[1:]:
        if _csv_header(path, sep) != header:
            raise SourceError(f"source {source.name}: {path} has header {_csv_header(path, sep)}, expected {header}")
    missing = [c.path for c in source.contract if c.path not in header]
    if missing:
        raise SourceError(f"source {source.name}: {files[0]} lacks required column(s) {missing}; header is {header}")
    schema = T.StructType(
        [T.StructField(name, T.StringType()) for name in header] + [T.StructField(CORRUPT, T.StringType())]
    )
    options = {"header": True, "mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT, "enforceSchema": False}
    options.update({k: v for k, v in source.options.items() if k != "header"})
    return spark.read.options(**options).schema(schema).csv(files)


def _csv_header(path: str, sep: str) -> list[str]:
    fs, fs_path = pafs.FileSystem.from_uri(_as_uri(path))
    with fs.open_input_stream(fs_path) as stream:
        first = stream.read(64 * 1024).split(b"\n", 1)[0]
    return [c.strip().strip('"') for c in first.decode("utf-8-sig").rstrip("\r").split(sep)]


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
