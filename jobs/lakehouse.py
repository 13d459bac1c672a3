"""Delta Lake tables under one root, written by Spark, committed by delta-spark or delta-rs.

Every job writes through `Lakehouse.write`: the rows of one run replace exactly the rows the
same run wrote before (`replace_where`), in one atomic Delta commit. Readers (Spark here,
analysts' `deltalake`/polars elsewhere) only ever see committed versions.

Two engines produce the same tables:

* `delta-spark`: used when the Delta jars are on the Spark classpath (a cluster).
* `delta-rs`: the embedded default. Spark executors write the parquet files into the table
  folder; the driver reads only their footers (row counts and min/max/null statistics) and
  commits add/remove actions with `deltalake`. Driver memory grows with the number of files
  touched, never with the number of rows.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable, Schema
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

log = logging.getLogger(__name__)

ENGINES = ("auto", "delta-spark", "delta-rs")
STAGING_DIR = "_staging"


class LakehouseError(RuntimeError):
    pass


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int
    files_added: int
    files_removed: int
    rows_added: int


@dataclass
class Lakehouse:
    """Tables live at `<root>/<name>`; root may be a path or an s3://, abfss://, gs:// URI."""

    spark: SparkSession
    root: str
    engine: str = "auto"
    storage_options: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise LakehouseError(f"lakehouse.engine must be one of {ENGINES}, got {self.engine!r}")
        if self.engine == "auto":
            self.engine = "delta-spark" if delta_jars_available(self.spark) else "delta-rs"
        self.root = self.root.rstrip("/")
        log.info("lakehouse root %s, engine %s", self.root, self.engine)

    def uri(self, table: str) -> str:
        return f"{self.root}/{table}"

    def tables(self) -> list[str]:
        """Names of the Delta tables under the root."""
        fs, root = pafs.FileSystem.from_uri(self.root)
        entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        return sorted(e.base_name for e in entries if e.type == pafs.FileType.Directory and self.exists(e.base_name))

    def exists(self, table: str) -> bool:
        return DeltaTable.is_deltatable(self.uri(table), storage_options=dict(self.storage_options))

    def version(self, table: str) -> int:
        return self._delta_table(table).version()

    def read(
        self,
        table: str,
        *,
        version: int | None = None,
        partitions: Sequence[tuple[str, str, Any]] | None = None,
    ) -> DataFrame:
        """Read a table (optionally as of `version`), pruned to `partitions` filters like
        ("event_date", ">=", "2025-03-01")."""
        if self.engine == "delta-spark":
            reader = self.spark.read.format("delta")
            if version is not None:
                reader = reader.option("versionAsOf", version)
            df = reader.load(self.uri(table))
            for column, op, value in partitions or []:
                df = df.filter(_spark_filter(column, op, value))
            return df
        dt = self._delta_table(table, version)
        schema = _spark_schema(dt)
        filters = [(c, op, _filter_value(v)) for c, op, v in partitions or []] or None
        files = dt.file_uris(partition_filters=filters)
        if not files:
            return self.spark.createDataFrame([], schema)
        df = self.spark.read.schema(schema).option("basePath", dt.table_uri).parquet(*files)
        return df.select(*schema.fieldNames())

    def partition_values(self, table: str, column: str) -> list[str]:
        """Distinct values of a partition column, from the Delta log only (no data read)."""
        if not self.exists(table):
            return []
        if self.engine == "delta-spark":
            rows = self.read(table).select(column).distinct().collect()  # partition column: metadata-sized
            return sorted(_partition_str(r[0]) for r in rows if r[0] is not None)
        partitions = self._delta_table(table).partitions()
        return sorted({p[column] for p in partitions if p.get(column) is not None})

    def read_or_empty(self, table: str, schema: T.StructType, **kwargs: Any) -> DataFrame:
        if self.exists(table):
            return self.read(table, **kwargs)
        return self.spark.createDataFrame([], schema)

    def write(
        self,
        df: DataFrame,
        table: str,
        *,
        partition_by: Sequence[str],
        replace_where: Mapping[str, Any],
        description: str | None = None,
    ) -> WriteResult:
        """Replace the rows matching `replace_where` (column == value, or column in [values],
        for each item) with `df`.

        Every row of `df` must itself match `replace_where`, so a rerun of the same job
        replaces exactly what it wrote before and nothing else.
        """
        if self.engine == "delta-spark":
            return self._write_delta_spark(df, table, partition_by, replace_where)
        return self._write_delta_rs(df, table, partition_by, replace_where, description)

    # -- delta-spark -------------------------------------------------------------------------

    def _write_delta_spark(
        self, df: DataFrame, table: str, partition_by: Sequence[str], replace_where: Mapping[str, Any]
    ) -> WriteResult:
        predicate = " and ".join(
            f"{c} in ({', '.join(repr(v) for v in sorted(_wanted(value)))})" for c, value in replace_where.items()
        )
        (
            df.write.format("delta")
            .mode("overwrite")
            .option("replaceWhere", predicate)
            .partitionBy(*partition_by)
            .save(self.uri(table))
        )
        version = self.spark.sql(f"describe history delta.`{self.uri(table)}` limit 1").first()
        return WriteResult(table, int(version["version"]), -1, -1, -1)

    # -- delta-rs ----------------------------------------------------------------------------

    def _delta_table(self, table: str, version: int | None = None) -> DeltaTable:
        if not self.exists(table):
            raise LakehouseError(f"table {table!r} does not exist under {self.root}")
        return DeltaTable(self.uri(table), version=version, storage_options=dict(self.storage_options))

    def _write_delta_rs(
        self,
        df: DataFrame,
        table: str,
        partition_by: Sequence[str],
        replace_where: Mapping[str, Any],
        description: str | None,
    ) -> WriteResult:
        table_uri = self.uri(table)
        write_id = uuid.uuid4().hex[:16]
        staging = f"{table_uri}/{STAGING_DIR}/{write_id}"
        fs, table_path = pafs.FileSystem.from_uri(table_uri)
        df.write.mode("overwrite").partitionBy(*partition_by).parquet(staging)
        try:
            adds = _place_files(fs, table_path, f"{table_path}/{STAGING_DIR}/{write_id}", write_id)
        finally:
            fs.delete_dir(f"{table_path}/{STAGING_DIR}/{write_id}")
        arrow_schema = to_arrow_schema(_nullable(df.schema), timezone="UTC")
        delta_schema = Schema.from_arrow(arrow_schema)
        rows = sum(json.loads(a.stats)["numRecords"] for a in adds)
        if not self.exists(table):
            create_table_with_add_actions(
                table_uri,
                delta_schema,
                adds,
                mode="error",
                partition_by=list(partition_by),
                name=table,
                description=description,
                storage_options=dict(self.storage_options),
            )
            return WriteResult(table, 0, len(adds), 0, rows)
        dt = self._delta_table(table)
        existing = list(dt.metadata().partition_columns)
        if existing != list(partition_by):
            raise LakehouseError(f"table {table!r} is partitioned by {existing}, write asked for {list(partition_by)}")
        removes = _files_matching(dt, replace_where, set(partition_by))
        dt.create_write_transaction(
            actions=[*adds, *removes], mode="append", schema=delta_schema, partition_by=list(partition_by)
        )
        version = DeltaTable(table_uri, storage_options=dict(self.storage_options)).version()
        log.info("%s v%d: +%d files (%d rows), -%d files", table, version, len(adds), rows, len(removes))
        return WriteResult(table, version, len(adds), len(removes), rows)


def delta_jars_available(spark: SparkSession) -> bool:
    try:
        spark._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")  # type: ignore[union-attr]
        return True
    except Exception:
        return False


def _place_files(fs: pafs.FileSystem, table_path: str, staging_path: str, write_id: str) -> list[AddAction]:
    """Move Spark's output from the staging folder into partition folders and describe each file."""
    infos = fs.get_file_info(pafs.FileSelector(staging_path, recursive=True))
    adds = []
    for info in sorted(infos, key=lambda i: i.path):
        if info.type != pafs.FileType.File or not info.base_name.endswith(".parquet"):
            continue
        relative_dir = info.path[len(staging_path) + 1 : -len(info.base_name)].strip("/")
        partition_values = _parse_partition_dir(relative_dir)
        relative = "/".join(p for p in (relative_dir, f"{write_id}-{info.base_name}") if p)
        target = f"{table_path}/{relative}"
        fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        fs.move(info.path, target)
        with fs.open_input_file(target) as handle:
            metadata = pq.ParquetFile(handle).metadata
        adds.append(
            AddAction(
                path=relative,
                size=info.size,
                partition_values=partition_values,
                modification_time=int(info.mtime_ns // 1_000_000) if info.mtime_ns else 0,
                data_change=True,
                stats=json.dumps(_file_stats(metadata)),
            )
        )
    return adds


def _parse_partition_dir(relative_dir: str) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for part in filter(None, relative_dir.split("/")):
        key, _, value = part.partition("=")
        value = unquote(value)
        values[unquote(key)] = None if value == "__HIVE_DEFAULT_PARTITION__" else value
    return values


def _file_stats(metadata: pq.FileMetaData) -> dict[str, Any]:
    """Delta per-file statistics from a parquet footer: numRecords and, per top-level
    primitive column, min/max/nullCount over all row groups."""
    stats: dict[str, Any] = {"numRecords": metadata.num_rows, "minValues": {}, "maxValues": {}, "nullCount": {}}
    schema = metadata.schema
    for index in range(metadata.num_columns):
        path = schema.column(index).path
        if "." in path:  # nested (map/array/struct): no stats
            continue
        lows, highs, nulls, complete = [], [], 0, True
        for rg in range(metadata.num_row_groups):
            col_stats = metadata.row_group(rg).column(index).statistics
            if col_stats is None:
                complete = False
                break
            nulls += col_stats.null_count or 0
            if col_stats.has_min_max:
                lows.append(col_stats.min)
                highs.append(col_stats.max)
        if not complete:
            continue
        stats["nullCount"][path] = nulls
        if lows:
            low, high = _stat_value(min(lows)), _stat_value(max(highs))
            if low is not None and high is not None:
                stats["minValues"][path] = low
                stats["maxValues"][path] = high
    return stats


def _stat_value(value: Any) -> Any:
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and len(value) <= 32:
        return value
    return None  # decimals, binaries and long strings: no min/max rather than a lossy one


def _files_matching(
    dt: DeltaTable, replace_where: Mapping[str, Any], partition_columns: set[str]
) -> list[RemoveAction]:
    """Files holding rows that match every `column == value` of replace_where.

    Partition columns are matched on the file's partition values; other columns on the file's
    min/max statistics, which must then be a single value: files written through `write`
    hold one run's rows, so they always are.
    """
    actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    now_ms = int(time.time() * 1000)
    removes = []
    for action in actions:
        matches = True
        for column, value in replace_where.items():
            wanted = _wanted(value)
            if column in partition_columns:
                found = action.get(f"partition.{column}")
                matches = found is not None and _partition_str(found) in wanted
            else:
                low, high = action.get(f"min.{column}"), action.get(f"max.{column}")
                if low is None or high is None:
                    raise LakehouseError(
                        f"file {action['path']} has no statistics for {column!r}: cannot replace by it"
                    )
                low, high = _partition_str(low), _partition_str(high)
                if low != high and any(low <= w <= high for w in wanted):
                    raise LakehouseError(f"file {action['path']} mixes values of {column!r}: cannot replace by it")
                matches = low in wanted
            if not matches:
                break
        if matches:
            partition_values = {
                k[len("partition.") :]: None if v is None else _partition_str(v)
                for k, v in action.items()
                if k.startswith("partition.")
            }
            removes.append(
                RemoveAction(
                    path=action["path"],
                    data_change=True,
                    deletion_timestamp=now_ms,
                    size=action["size_bytes"],
                    partition_values=partition_values,
                )
            )
    return removes


def _wanted(value: Any) -> set[str]:
    """replace_where values: one value, or a list/tuple/set of values (column IN values)."""
    if isinstance(value, list | tuple | set | frozenset):
        return {_partition_str(v) for v in value}
    return {_partition_str(value)}


def _partition_str(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _spark_schema(dt: DeltaTable) -> T.StructType:
    arrow_schema = pa.schema(dt.schema().to_arrow())
    return _nullable(from_arrow_schema(arrow_schema))


def _nullable(schema: T.StructType) -> T.StructType:
    return T.StructType([T.StructField(f.name, f.dataType, True) for f in schema.fields])


def _filter_value(value: Any) -> str | list[str]:
    if isinstance(value, list | tuple | set):
        return sorted(_partition_str(v) for v in value)
    return _partition_str(value)


_SPARK_OPS = {
    "=": lambda c, v: c == v,
    "==": lambda c, v: c == v,
    "!=": lambda c, v: c != v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
    "in": lambda c, v: c.isin(list(v)),
    "not in": lambda c, v: ~c.isin(list(v)),
}


def _spark_filter(column: str, op: str, value: Any) -> Column:
    return _SPARK_OPS[op](F.col(column), value)
