"""Delta Lake tables under one root, written and maintained by delta-spark.

Every job writes through `Lakehouse.write`: the rows of one run replace exactly the rows the
same run wrote before (Delta's `replaceWhere`), in one atomic commit per table write. Readers
(Spark here, analysts' `deltalake`/polars/DuckDB elsewhere) only ever see committed versions;
files of a write that died before its commit are never referenced and `maintain` vacuums them.

Schemas evolve with intent: a new column merges into the table (older rows read null), while a
dropped or retyped column fails the write with the table, column, both types and what to do.
Each commit carries `userMetadata` (run date, stage, run id), so `describe history` tells which
night wrote a version; tables carry their description, column comments and properties.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import DeltaTable as RsDeltaTable
from deltalake.exceptions import TableNotFoundError
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.frames import local_frame
from jobs.spark import scoped_sql_conf
from jobs.storage import filesystem

log = logging.getLogger(__name__)

# Properties every table gets: how long the log keeps time travel, how long removed files stay
# for readers of older versions before VACUUM may delete them, and checkpoint cadence.
DEFAULT_PROPERTIES: dict[str, str] = {
    "delta.logRetentionDuration": "interval 30 days",
    "delta.deletedFileRetentionDuration": "interval 7 days",
    "delta.checkpointInterval": "10",
}
CONCURRENT_WRITE_ATTEMPTS = 5  # parallel ingest tasks commit to the same tables
STATS_COLUMNS = "delta.dataSkippingStatsColumns"  # the columns a file's min/max/null statistics cover
PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")  # what delta-rs decodes in a local path


class LakehouseError(RuntimeError):
    pass


class SchemaChangeError(LakehouseError):
    """A write that would drop or retype a column of an existing table."""


class TableDoc(Protocol):
    """What the lakehouse needs to document a table (jobs.tables.TableSpec satisfies it)."""

    description: str

    def comments(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int
    files_added: int
    files_removed: int
    rows_added: int


@dataclass(frozen=True)
class MaintenanceResult:
    table: str
    files_compacted: int
    files_written: int
    files_vacuumed: int
    checkpoint_version: int


@dataclass
class Lakehouse:
    """Tables live at `<root>/<name>`; root may be a path (or a file: URI naming one) or an
    s3a://, abfss://, gs:// URI."""

    spark: SparkSession
    root: str
    storage_options: Mapping[str, str] = field(default_factory=dict)
    target_file_size_mb: int = 256
    single_file_tables: Sequence[str] = ()
    unshuffled_tables: Sequence[str] = ()
    stats_columns: Mapping[str, Sequence[str]] = field(default_factory=dict)
    properties: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PROPERTIES))
    docs: Callable[[str], TableDoc | None] = field(default=lambda table: None)
    commit_info: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = local_path(self.root).rstrip("/")
        self.commit_info.setdefault(
            "run_id", os.environ.get("AIRFLOW_CTX_DAG_RUN_ID") or f"cli-{uuid.uuid4().hex[:12]}"
        )
        bin_mb = str(self.target_file_size_mb)
        self.spark.conf.set("spark.databricks.delta.optimizeWrite.binSize", bin_mb)
        self.spark.conf.set("spark.databricks.delta.optimize.maxFileSize", str(self.target_file_size_mb * 1024 * 1024))
        log.info("lakehouse root %s (delta-spark, target files %s MB)", self.root, bin_mb)

    def uri(self, table: str) -> str:
        return f"{self.root}/{table}"

    @contextmanager
    def committing(self, **info: Any) -> Iterator[None]:
        """Commits inside carry `info` (e.g. ds, stage) in their userMetadata."""
        before = dict(self.commit_info)
        self.commit_info.update({k: str(v) for k, v in info.items() if v is not None})
        try:
            yield
        finally:
            self.commit_info.clear()
            self.commit_info.update(before)

    def _sql_commits_carry_info(self) -> Any:
        """Commits made by SQL or DeltaTable calls inside carry `commit_info` as userMetadata
        (writes pass it as an option instead)."""
        metadata = {"spark.databricks.delta.commitInfo.userMetadata": json.dumps(self.commit_info, sort_keys=True)}
        return scoped_sql_conf(self.spark, metadata)

    # -- reading -----------------------------------------------------------------------------

    def tables(self) -> list[str]:
        """Names of the Delta tables under the root."""
        fs, root = filesystem(self.root, self.storage_options)
        entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        return sorted(e.base_name for e in entries if e.type == pafs.FileType.Directory and self.exists(e.base_name))

    def exists(self, table: str) -> bool:
        return self._log(table) is not None

    def version(self, table: str) -> int:
        log_ = self._log(table)
        if log_ is None:
            raise LakehouseError(f"table {table!r} does not exist under {self.root}")
        return int(log_.version())

    def history(self, table: str, limit: int = 20) -> list[dict[str, Any]]:
        """The newest commits: version, timestamp, operation, metrics and our userMetadata."""
        log_ = self._log(table)
        if log_ is None:
            raise LakehouseError(f"table {table!r} does not exist under {self.root}")
        return [
            {
                "version": int(c["version"]),
                "timestamp": datetime.fromtimestamp(c["timestamp"] / 1000, tz=UTC).replace(tzinfo=None),
                "operation": c.get("operation"),
                "metrics": {k: str(v) for k, v in (c.get("operationMetrics") or {}).items()},
                "user_metadata": json.loads(c["userMetadata"]) if c.get("userMetadata") else {},
            }
            for c in log_.history(limit)
        ]

    def schema(self, table: str) -> T.StructType:
        """The table's schema as recorded in its log (no Spark job)."""
        log_ = self._log(table)
        if log_ is None:
            raise LakehouseError(f"table {table!r} does not exist under {self.root}")
        return T.StructType.fromJson(json.loads(log_.schema().to_json()))

    def read(
        self,
        table: str,
        *,
        version: int | None = None,
        partitions: Sequence[tuple[str, str, Any]] | None = None,
    ) -> DataFrame:
        """Read a table (optionally as of `version`), pruned to `partitions` filters like
        ("event_date", ">=", "2025-03-01")."""
        if not self.exists(table):
            raise LakehouseError(f"table {table!r} does not exist under {self.root}")
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        df = reader.load(self.uri(table))
        for column, op, value in partitions or []:
            df = df.filter(_spark_filter(column, op, value))
        return df

    def partition_values(self, table: str, column: str) -> list[str]:
        """Distinct values of a partition column, from the Delta log only (no data read)."""
        log_ = self._log(table)
        partitions = log_.partitions() if log_ is not None else []
        return sorted({p[column] for p in partitions if p.get(column) is not None})

    def partition_rows(self, table: str, column: str) -> dict[str, int | None]:
        """Rows per value of a partition column, from the row counts the Delta log keeps per
        file (no data read); None for a value with a file written without statistics."""
        log_ = self._log(table)
        if log_ is None:
            return {}
        files = pa.table(log_.get_add_actions(flatten=True))
        values = [str(v) for v in files.column(f"partition.{column}").to_pylist()]
        counts = (
            files.column("num_records").to_pylist() if "num_records" in files.column_names else [None] * len(values)
        )
        rows: dict[str, int | None] = {}
        for value, count in zip(values, counts, strict=True):
            total = rows.get(value, 0)
            rows[value] = None if count is None or total is None else total + count
        return rows

    def read_or_empty(self, table: str, schema: T.StructType, **kwargs: Any) -> DataFrame:
        if self.exists(table):
            return self.read(table, **kwargs)
        return local_frame(self.spark, [], schema)

    # -- writing -----------------------------------------------------------------------------

    def write(
        self,
        df: DataFrame,
        table: str,
        *,
        partition_by: Sequence[str],
        replace_where: Mapping[str, Any],
    ) -> WriteResult:
        """Replace the rows matching `replace_where` (column == value, or column in [values],
        for each item) with `df`, in one commit.

        Every row of `df` must itself match `replace_where` (Delta checks it), so a rerun of the
        same job replaces exactly what it wrote before and nothing else.
        """
        if not replace_where:
            raise LakehouseError(f"{table}: a write must say which rows it replaces (replace_where)")
        uri = self.uri(table)
        log_ = self._log(table)
        if log_ is None:
            self._create(table, df.schema, partition_by)
            log_ = self._log(table)
            assert log_ is not None
        elif self._stats_property(table) not in (None, log_.metadata().configuration.get(STATS_COLUMNS)):
            self._set_stats_columns(table)
        current = T.StructType.fromJson(json.loads(log_.schema().to_json()))
        existing = list(log_.metadata().partition_columns)
        if existing != list(partition_by):
            raise LakehouseError(f"table {table!r} is partitioned by {existing}, write asked for {list(partition_by)}")
        added = check_schema_change(table, current, df.schema)
        names = [f.name for f in [*current.fields, *added]]
        ordered = df if df.columns == names else df.select(*names)  # selecting by name: JVM round trips per column
        predicate = _predicate(replace_where)
        whole = {c: replace_where[c] for c in existing if c in replace_where}
        single_file = table in self.single_file_tables
        write_id = uuid.uuid4().hex  # finds this write's commit among concurrent ones
        if added:
            log.warning("%s: new column(s) %s merged into the table", table, ", ".join(f.name for f in added))

        def attempt() -> None:
            rows, replaced = ordered, predicate
            if single_file and existing and len(whole) == len(existing):
                # a small table keeps one file per partition: the partition's other rows are
                # rewritten with the new ones (read again on a retry: another writer's rows stay)
                kept = self.read(table).filter(F.expr(_predicate(whole)) & ~F.coalesce(F.expr(predicate), F.lit(False)))
                # Delta now checks the rows against the partition only: a new row outside
                # `predicate` would sit beside the kept row it should have replaced
                mismatch = F.raise_error(F.lit(f"{table}: a written row does not match replaceWhere {predicate}"))
                matching = ordered.filter(F.when(F.expr(predicate), F.lit(True)).otherwise(mismatch))
                rows, replaced = matching.unionByName(kept, allowMissingColumns=True), _predicate(whole)
            writer = (
                (rows.coalesce(1) if single_file else rows)
                .write.format("delta")
                .mode("overwrite")
                .option("replaceWhere", replaced)
                .option("userMetadata", json.dumps({**self.commit_info, "write_id": write_id}, sort_keys=True))
            )
            if added:
                writer = writer.option("mergeSchema", "true")
            if table in self.unshuffled_tables:  # the other tables follow the session's optimizeWrite
                writer = writer.option("optimizeWrite", "false")
            writer.save(uri)

        self._with_retries(table, attempt)
        if added:
            self._comment_columns(table, [f.name for f in added])
        result = self._write_result(table, write_id, int(log_.version()))
        log.info(
            "%s v%d: +%d files (%d rows), -%d files",
            table,
            result.version,
            result.files_added,
            result.rows_added,
            result.files_removed,
        )
        return result

    def _create(self, table: str, schema: T.StructType, partition_by: Sequence[str]) -> None:
        from delta.tables import DeltaTable

        doc = self.docs(table)
        comments = dict(doc.comments()) if doc else {}
        builder = DeltaTable.createIfNotExists(self.spark).location(self.uri(table))
        for f in schema.fields:
            builder = builder.addColumn(f.name, nullable_type(f.dataType), nullable=True, comment=comments.get(f.name))
        builder = builder.partitionedBy(*partition_by)
        if doc and doc.description:
            builder = builder.comment(doc.description)
        for key, value in self.properties.items():
            builder = builder.property(key, str(value))
        if (stats := self._stats_property(table)) is not None:
            builder = builder.property(STATS_COLUMNS, stats)
        self._with_retries(table, builder.execute)

    def _stats_property(self, table: str) -> str | None:
        columns = self.stats_columns.get(table)
        return ",".join(columns) if columns else None

    def _set_stats_columns(self, table: str) -> None:
        """A table created before its `stats_columns` were configured (or changed) gets them: files
        written from now on carry statistics on those columns only."""
        value = self._stats_property(table)
        log.info("%s: file statistics on %s from now on", table, value)
        sql = f"alter table delta.`{self.uri(table)}` set tblproperties ('{STATS_COLUMNS}' = '{value}')"
        with self._sql_commits_carry_info():
            self._with_retries(table, lambda: self.spark.sql(sql))

    def _comment_columns(self, table: str, columns: Sequence[str]) -> None:
        doc = self.docs(table)
        comments = dict(doc.comments()) if doc else {}
        for column in columns:
            if comments.get(column):
                text = comments[column].replace("'", "\\'")
                sql = f"alter table delta.`{self.uri(table)}` alter column `{column}` comment '{text}'"
                with self._sql_commits_carry_info():  # a commit of its own, retried as a write is
                    self._with_retries(table, lambda sql=sql: self.spark.sql(sql))

    def _with_retries(self, table: str, action: Callable[[], Any]) -> Any:
        """Run a commit, retrying when another writer committed first (optimistic concurrency)."""
        for attempt in range(1, CONCURRENT_WRITE_ATTEMPTS + 1):
            try:
                return action()
            except Exception as exc:
                if not _is_concurrent_modification(exc) or attempt == CONCURRENT_WRITE_ATTEMPTS:
                    raise
                wait = min(30.0, 0.5 * 2**attempt) * (0.5 + random.random())
                log.warning("%s: concurrent commit (%s), retry %d in %.1fs", table, type(exc).__name__, attempt, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")

    def _write_result(self, table: str, write_id: str, version_before: int) -> WriteResult:
        """Version and metrics of the commit carrying `write_id`, read from the log. Delta
        commits nothing for a write that neither adds nor removes a file."""
        commits = self.history(table, CONCURRENT_WRITE_ATTEMPTS * 4)
        mine = next((c for c in commits if c["user_metadata"].get("write_id") == write_id), None)
        if mine is None and any(c["version"] <= version_before for c in commits):  # none since is ours
            return WriteResult(table, commits[0]["version"], 0, 0, 0)
        if mine is None:
            raise LakehouseError(f"{table}: the write's commit is not among the last {len(commits)} versions")
        metrics = mine["metrics"]
        return WriteResult(
            table,
            mine["version"],
            int(metrics.get("numFiles", metrics.get("numAddedFiles", 0))),
            int(metrics.get("numRemovedFiles", 0)),
            int(metrics.get("numOutputRows", 0)),
        )

    # -- maintenance -------------------------------------------------------------------------

    def maintain(
        self,
        table: str,
        *,
        retention_hours: float,
        zorder_by: Sequence[str] = (),
        optimize: bool = True,
    ) -> MaintenanceResult:
        """OPTIMIZE (bin-packing, or Z-order on `zorder_by`), VACUUM files unreferenced for
        longer than `retention_hours`, then write a checkpoint of the log."""
        from delta.tables import DeltaTable

        delta_table = DeltaTable.forPath(self.spark, self.uri(table))
        compacted = written = 0
        with self.committing(stage="maintain"), self._sql_commits_carry_info():
            if optimize:
                builder = delta_table.optimize()
                metrics = builder.executeZOrderBy(*zorder_by) if zorder_by else builder.executeCompaction()
                row = metrics.select("metrics.numFilesRemoved", "metrics.numFilesAdded").first()
                compacted, written = int(row[0] or 0), int(row[1] or 0)
            vacuumed = self._vacuum(delta_table, table, retention_hours)
        checkpoint = self._checkpoint(table)
        log.info(
            "%s: optimize -%d/+%d files, vacuum %d files, checkpoint at v%d",
            table,
            compacted,
            written,
            vacuumed,
            checkpoint,
        )
        return MaintenanceResult(table, compacted, written, vacuumed, checkpoint)

    def _vacuum(self, delta_table: Any, table: str, retention_hours: float) -> int:
        # a retention under Delta's 7-day default is a configured choice: allowed for this call only
        unchecked = {"spark.databricks.delta.retentionDurationCheck.enabled": "false"} if retention_hours < 168 else {}
        with scoped_sql_conf(self.spark, unchecked):
            delta_table.vacuum(retention_hours)
        last = next((h for h in self.history(table, 5) if h["operation"] == "VACUUM END"), None)
        return int(last["metrics"].get("numDeletedFiles", 0)) if last else 0

    def _checkpoint(self, table: str) -> int:
        """A log checkpoint now (readers then replay from it); returns its version."""
        jvm = self.spark._jvm  # type: ignore[union-attr]
        delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(self.spark._jsparkSession, self.uri(table))
        delta_log.checkpoint()
        return int(delta_log.readLastCheckpointFile().get().version())

    # -- internals ---------------------------------------------------------------------------

    def _log(self, table: str) -> RsDeltaTable | None:
        """The table's Delta log as of now (read by delta-rs: no Spark job), None if no table."""
        try:
            return RsDeltaTable(self.uri(table), storage_options=dict(self.storage_options) or None)
        except TableNotFoundError:
            return None


def local_path(root: str) -> str:
    """A `file:` URI as the local path it names (Delta refuses to create a table at a `file:///`
    location it also reads as a path); any other root as it is. A local path holding a percent
    escape (`%20`) is refused: delta-rs, which reads the tables' logs outside Spark, takes the
    escape for the character it encodes and would read another folder."""
    path = root
    if root.startswith("file:"):
        parsed = urlsplit(root)
        if parsed.netloc not in ("", "localhost") or parsed.query or parsed.fragment:
            raise LakehouseError(f"lakehouse root {root!r}: a file: URI names a path on this machine (file:///path)")
        path = unquote(parsed.path)
    escape = PERCENT_ESCAPE.search(path)
    if escape and "://" not in path:
        raise LakehouseError(
            f"lakehouse root {root!r}: the folder {path!r} holds {escape.group()!r}, which delta-rs (the run "
            "log, the report, the exports' checks) reads as the character it encodes, so it would read another "
            "folder: choose a folder name without a percent sign followed by two hex digits"
        )
    return path


def check_schema_change(table: str, current: T.StructType, incoming: T.StructType) -> list[T.StructField]:
    """The columns `incoming` adds to `current`; a dropped or retyped column raises SchemaChangeError."""
    incoming_by_name = {f.name: f for f in incoming.fields}
    problems = []
    for column in current.fields:
        new = incoming_by_name.get(column.name)
        if new is None:
            problems.append(
                f"column {column.name!r} ({column.dataType.simpleString()}) is missing from the write. Dropping a "
                "column is not an additive change: keep writing it (null if it no longer applies), or migrate "
                "the table (create a new one and backfill)"
            )
        elif nullable_type(new.dataType) != nullable_type(column.dataType):
            problems.append(
                f"column {column.name!r} would change type from {column.dataType.simpleString()} to "
                f"{new.dataType.simpleString()}. Keep the old type (cast before writing), add the values under "
                "a new column name, or migrate the table (create a new one and backfill)"
            )
    if problems:
        raise SchemaChangeError(f"table {table!r}: " + "; ".join(problems))
    known = {f.name for f in current.fields}
    return [f for f in incoming.fields if f.name not in known]


def nullable_type(data_type: T.DataType) -> T.DataType:
    """The type with every nested field, element and value nullable: Delta enforces NOT NULL on
    top-level columns only, and refuses nested NOT NULL constraints."""
    if isinstance(data_type, T.StructType):
        return T.StructType([T.StructField(f.name, nullable_type(f.dataType), True, f.metadata) for f in data_type])
    if isinstance(data_type, T.ArrayType):
        return T.ArrayType(nullable_type(data_type.elementType), True)
    if isinstance(data_type, T.MapType):
        return T.MapType(nullable_type(data_type.keyType), nullable_type(data_type.valueType), True)
    return data_type


def _is_concurrent_modification(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return any(
        name in text
        for name in (
            "ConcurrentAppendException",
            "ConcurrentDeleteReadException",
            "ConcurrentDeleteDeleteException",
            "ConcurrentTransactionException",
            "MetadataChangedException",
            "ProtocolChangedException",
            "DELTA_CONCURRENT",
            "DELTA_METADATA_CHANGED",
        )
    )


def _predicate(replace_where: Mapping[str, Any]) -> str:
    """`col in ('a', 'b') and ...`: values are run dates and configured names, rendered as SQL literals."""
    parts = []
    for column, value in replace_where.items():
        literals = ", ".join(_sql_literal(v) for v in sorted(_wanted(value), key=str))
        parts.append(f"`{column}` in ({literals})")
    return " and ".join(parts)


def _sql_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return f"timestamp'{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"date'{value.isoformat()}'"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _wanted(value: Any) -> set[Any]:
    """replace_where values: one value, or a list/tuple/set of values (column IN values)."""
    if isinstance(value, list | tuple | set | frozenset):
        return set(value)
    return {value}


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
