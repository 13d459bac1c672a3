"""Nightly deliveries to the operator's systems (conf/exports.yaml).

Each configured consumer receives, per run date, one consistent delivery of some datasets:

* `files`: one folder per run date with one gzip JSON-lines or CSV file set per dataset, a
  `manifest.json` (rows, files, sizes, SHA-256 checksums, identifier) and `_SUCCESS` written last.
  The folder is built under a temporary name and renamed into place, so a reader sees either the
  previous delivery or the complete new one; a rerun rebuilds it with identical bytes.
* `jdbc` (PostgreSQL, jobs/exports_jdbc.py): Spark writes each dataset to a staging table, then
  one JDBC transaction replaces the run date's rows (upsert by key; subscriber_state keeps the
  newest state per subscriber) and records the run in `<prefix>export_runs`. A failure rolls
  everything back: the previous night stays as it was.

The identifier that leaves is configured per consumer: the pseudonym, or the MSISDN from an
operator-held mapping extract joined by pseudonym (a hash is never reversed).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.config import ConfigError, load_yaml
from jobs.storage import filesystem
from jobs.tables import CAMPAIGN_AUDIENCES, CAMPAIGN_TRIGGERS, LOYALTY_LEDGER, SUBSCRIBER_STATE

log = logging.getLogger(__name__)

DATASETS = ("subscriber_state", "campaign_triggers", "audience_changes", "ledger_entries")
KEYS = {
    "subscriber_state": ("{id}",),
    "campaign_triggers": ("trigger_id",),
    "audience_changes": ("audience", "{id}", "change_ds"),
    "ledger_entries": ("entry_id",),
}
# the table a dataset's rows come from (the exports stage checks the gate validated it)
SOURCE_TABLE = {
    "subscriber_state": SUBSCRIBER_STATE,
    "campaign_triggers": CAMPAIGN_TRIGGERS,
    "audience_changes": CAMPAIGN_AUDIENCES,
    "ledger_entries": LOYALTY_LEDGER,
}
# the column holding the run date of a dataset's rows: a rerun replaces exactly these rows
RUN_DATE_COLUMN = {
    "subscriber_state": "state_ds",
    "campaign_triggers": "trigger_ds",
    "audience_changes": "change_ds",
    "ledger_entries": "entry_ds",
}
KINDS = ("files", "jdbc")
FILE_FORMATS = ("jsonl", "csv")
IDENTIFIERS = ("pseudonym", "msisdn")
SUCCESS, MANIFEST = "_SUCCESS", "manifest.json"
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ExportError(RuntimeError):
    """A delivery could not be made; the consumer keeps its previous delivery."""


@dataclass(frozen=True)
class Consumer:
    name: str
    kind: str
    identifier: str
    datasets: tuple[str, ...]
    active: bool = True
    format: str = "jsonl"
    url: str = ""
    user: str = ""
    password: str = field(default="", repr=False)
    table_prefix: str = "gamify_"

    @property
    def id_column(self) -> str:
        return "msisdn" if self.identifier == "msisdn" else "subscriber_id"

    def keys(self, dataset: str) -> list[str]:
        return [k.format(id=self.id_column) for k in KEYS[dataset]]


@dataclass(frozen=True)
class ExportSettings:
    consumers: tuple[Consumer, ...]
    mapping_path: str | None = None
    mapping_format: str = "csv"
    version: str = "1"
    file: str = "conf/exports.yaml"

    @classmethod
    def load(
        cls, path: str | Path, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> ExportSettings:
        """Read conf/exports.yaml; `overrides` (the environment overlay's `exports.consumers`)
        are merged per consumer; ${VAR} / ${VAR:-default} are taken from `environ`."""
        path = Path(path)
        environ = os.environ if environ is None else environ
        data = load_yaml(path) or {}
        specs = data.get("consumers") or {}
        consumers = []
        for name, spec in specs.items():
            spec = {**(spec or {}), **((overrides or {}).get(name) or {})}
            consumers.append(_consumer(path, str(name), spec, environ))
        mapping = data.get("msisdn_mapping") or {}
        if any(c.identifier == "msisdn" and c.active for c in consumers) and not mapping.get("path"):
            raise ConfigError(path, "msisdn_mapping.path", "is required when a consumer receives MSISDNs")
        return cls(
            tuple(consumers), mapping.get("path"), mapping.get("format", "csv"), str(data.get("version", 1)), str(path)
        )

    @property
    def active(self) -> list[Consumer]:
        return [c for c in self.consumers if c.active]


def _consumer(path: Path, name: str, spec: Mapping[str, Any], environ: Mapping[str, str]) -> Consumer:
    key = f"consumers.{name}"
    if spec.get("kind") not in KINDS:
        raise ConfigError(path, f"{key}.kind", f"must be one of {', '.join(KINDS)}")
    if spec.get("identifier") not in IDENTIFIERS:
        raise ConfigError(path, f"{key}.identifier", f"must be one of {', '.join(IDENTIFIERS)}")
    datasets = spec.get("datasets") or []
    unknown = [d for d in datasets if d not in DATASETS]
    if not datasets or unknown:
        raise ConfigError(path, f"{key}.datasets", f"must list datasets among {', '.join(DATASETS)}; got {unknown}")
    if spec["kind"] == "files" and spec.get("format", "jsonl") not in FILE_FORMATS:
        raise ConfigError(path, f"{key}.format", f"must be one of {', '.join(FILE_FORMATS)}")
    password = str(spec.get("password") or "")
    if password and not _REFERENCE.fullmatch(password):
        raise ConfigError(path, f"{key}.password", "must be an environment reference like ${APP_DB_PASSWORD}")
    active = spec.get("active", True)
    if not isinstance(active, bool):
        raise ConfigError(path, f"{key}.active", "must be true or false")
    consumer = Consumer(
        name=name,
        kind=spec["kind"],
        identifier=spec["identifier"],
        datasets=tuple(datasets),
        active=active,
        format=spec.get("format", "jsonl"),
        url=_resolve(spec.get("url"), environ),
        user=_resolve(spec.get("user"), environ),
        password=_resolve(password, environ),
        table_prefix=str(spec.get("table_prefix", "gamify_")),
    )
    if consumer.kind == "jdbc" and consumer.active and not consumer.url.startswith("jdbc:postgresql:"):
        raise ConfigError(path, f"{key}.url", "an active jdbc consumer needs a jdbc:postgresql:// url")
    if consumer.kind == "jdbc" and not re.fullmatch(r"[a-z_][a-z0-9_]*", consumer.table_prefix):
        raise ConfigError(path, f"{key}.table_prefix", "must be lowercase letters, digits and underscores")
    return consumer


def _resolve(value: Any, environ: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is None:
            raise ExportError(f"environment variable {name} is not set")
        return default

    return _REFERENCE.sub(substitute, str(value or ""))


# -- datasets (pure) --------------------------------------------------------------------------


def state_rows(state: DataFrame, delivered: DataFrame | None = None) -> DataFrame:
    """subscriber_state rows of the run date to deliver: those that changed (the rest are as last
    delivered) and, on a rerun, those of the subscribers (`delivered`: subscriber_id) an earlier
    delivery of this date carried. A corrected rerun can leave such a subscriber unchanged since
    the day before, while the consumer still holds the earlier run's row."""
    rows = state.filter(F.col("changed"))
    if delivered is not None:
        again = state.filter(~F.col("changed")).join(delivered.distinct(), "subscriber_id", "left_semi")
        rows = rows.unionByName(again)
    return rows.drop("changed")


def as_pseudonyms(
    keys: DataFrame, column: str, consumer: Consumer, ds: date, mapping: DataFrame | None
) -> DataFrame | None:
    """Delivered keys (`column`: subscriber_id or msisdn) -> subscriber_id; an MSISDN is mapped back
    through the same mapping extract. None when MSISDNs came back without a mapping to read them."""
    if column == "subscriber_id":
        return keys.select("subscriber_id")
    if mapping is None:
        log.warning("export %s for %s: earlier delivery keyed by MSISDN, no mapping to read it", consumer.name, ds)
        return None
    return keys.join(mapping.select("subscriber_id", "msisdn"), "msisdn").select("subscriber_id")


def audience_changes(today: DataFrame, before: DataFrame | None, ds: date) -> DataFrame:
    """Audience memberships of the run date vs the previous audience day -> one row per
    (audience, subscriber) that joined or left, with `change` = joined | left."""
    now = today.select("audience", "subscriber_id", "audience_version")
    if before is None:
        before = now.limit(0)
    then = before.select("audience", "subscriber_id", "audience_version")
    joined = now.join(then.select("audience", "subscriber_id"), ["audience", "subscriber_id"], "left_anti")
    left = then.join(now.select("audience", "subscriber_id"), ["audience", "subscriber_id"], "left_anti")
    return (
        joined.withColumn("change", F.lit("joined"))
        .unionByName(left.withColumn("change", F.lit("left")))
        .select("audience", "subscriber_id", "change", "audience_version", F.lit(ds).alias("change_ds"))
    )


def with_identifier(df: DataFrame, consumer: Consumer, mapping: DataFrame | None) -> tuple[DataFrame, DataFrame]:
    """(rows that leave, rows held back). For an MSISDN consumer the pseudonym is replaced by the
    mapped MSISDN (same position); rows without a mapping are held back."""
    if consumer.identifier == "pseudonym":
        return df, df.limit(0)
    if mapping is None:
        raise ExportError(f"consumer {consumer.name} receives MSISDNs but no mapping extract was given")
    columns = [F.col("msisdn") if c == "subscriber_id" else F.col(c) for c in df.columns]
    mapped = df.join(F.broadcast(mapping.select("subscriber_id", "msisdn")), "subscriber_id", "left")
    return mapped.filter(F.col("msisdn").isNotNull()).select(*columns), mapped.filter(F.col("msisdn").isNull()).select(
        *df.columns
    )


def read_mapping(spark: SparkSession, path: str, fmt: str) -> DataFrame:
    """The operator's MSISDN mapping extract -> (subscriber_id, msisdn), columns taken by name
    (a CSV by its header). A subscriber mapped to more than one MSISDN is left out, so their rows
    are held back rather than sent to a number that may not be theirs."""
    raw = spark.read.option("header", True).csv(path) if fmt == "csv" else spark.read.parquet(path)
    missing = [c for c in ("subscriber_id", "msisdn") if c not in raw.columns]
    if missing:
        raise ExportError(f"MSISDN mapping extract {path}: no column(s) {missing}; columns: {raw.columns}")
    pairs = raw.select(F.col("subscriber_id").cast("string"), F.col("msisdn").cast("string")).dropna()
    return (
        pairs.groupBy("subscriber_id")
        .agg(F.min("msisdn").alias("msisdn"), F.count_distinct("msisdn").alias("_numbers"))
        .filter(F.col("_numbers") == 1)
        .drop("_numbers")
    )


def flattened(df: DataFrame) -> DataFrame:
    """Arrays, maps and structs as JSON text (for CSV files and relational tables)."""
    return df.select(
        *[
            F.to_json(F.col(f.name)).alias(f.name)
            if isinstance(f.dataType, T.ArrayType | T.MapType | T.StructType)
            else F.col(f.name)
            for f in df.schema.fields
        ]
    )


# -- files ------------------------------------------------------------------------------------


def export_files(
    root: str, consumer: Consumer, datasets: Mapping[str, DataFrame], held_back: Mapping[str, int], ds: date
) -> dict[str, Any]:
    """Write one delivery folder for `consumer` and `ds`; returns its manifest."""
    fs, base = filesystem(root)
    final = f"{base}/{consumer.name}/{ds.isoformat()}"
    building = f"{base}/{consumer.name}/_building_{ds.isoformat()}"
    fs.delete_dir_contents(building, missing_dir_ok=True)
    fs.create_dir(building)
    extension = "jsonl.gz" if consumer.format == "jsonl" else "csv.gz"
    manifest: dict[str, Any] = {
        "consumer": consumer.name,
        "run_ds": ds.isoformat(),
        "format": consumer.format,
        "compression": "gzip",
        "identifier": consumer.identifier,
        "identifier_column": consumer.id_column,
        "datasets": {},
    }
    for name, df in datasets.items():
        keys = consumer.keys(name)
        out = df if consumer.format == "jsonl" else flattened(df)
        out = out.repartition(1).sortWithinPartitions(*keys)
        spark_dir = f"{building}/_{name}"
        writer = out.write.mode("overwrite").option("compression", "gzip")
        if consumer.format == "jsonl":
            writer.json(_spark_path(root, spark_dir, base))
        else:
            writer.option("header", True).csv(_spark_path(root, spark_dir, base))
        files = _publish_parts(fs, spark_dir, f"{building}/{name}", name, extension)
        rows = sum(f["rows"] for f in files)
        manifest["datasets"][name] = {
            "rows": rows,
            "keys": keys,
            "held_back_unmapped": held_back.get(name, 0),
            "files": [{k: v for k, v in f.items() if k != "rows"} for f in files],
        }
    _write_bytes(fs, f"{building}/{MANIFEST}", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    _write_bytes(fs, f"{building}/{SUCCESS}", b"")  # last: the delivery is complete
    _swap_in(fs, building, final)
    return manifest


def delivered_file_keys(spark: SparkSession, root: str, consumer: Consumer, ds: date) -> tuple[DataFrame | None, str]:
    """The keys of the subscriber_state rows the consumer's delivery folder for `ds` holds, and
    their column (the folder's identifier); None when there is no complete folder or no rows."""
    fs, base = filesystem(root)
    folder = f"{base}/{consumer.name}/{ds.isoformat()}"
    if fs.get_file_info(f"{folder}/{SUCCESS}").type == pafs.FileType.NotFound:
        return None, consumer.id_column
    with fs.open_input_stream(f"{folder}/{MANIFEST}", compression=None) as stream:
        manifest = json.loads(stream.read())
    column, dataset = manifest["identifier_column"], manifest["datasets"].get("subscriber_state")
    if not dataset or not dataset["files"]:
        return None, column
    paths = [_spark_path(root, f"{folder}/{f['path']}", base) for f in dataset["files"]]
    if manifest["format"] == "jsonl":
        keys = spark.read.schema(T.StructType([T.StructField(column, T.StringType())])).json(paths)
    else:
        keys = spark.read.option("header", True).csv(paths).select(column)
    return keys, column


def _publish_parts(fs: pafs.FileSystem, spark_dir: str, target: str, name: str, extension: str) -> list[dict]:
    """Spark's part files -> <dataset>-NNNNN.<ext> with row counts and checksums; Spark's
    bookkeeping files are dropped."""
    parts = sorted(
        i.path
        for i in fs.get_file_info(pafs.FileSelector(spark_dir))
        if i.type == pafs.FileType.File and i.base_name.startswith("part-")
    )
    fs.create_dir(target)
    files = []
    for i, part in enumerate(parts):
        path = f"{target}/{name}-{i:05d}.{extension}"
        fs.move(part, path)
        digest, size, lines = _digest(fs, path, header=extension.startswith("csv"))
        files.append({"path": f"{name}/{name}-{i:05d}.{extension}", "bytes": size, "sha256": digest, "rows": lines})
    fs.delete_dir(spark_dir)
    return files


def _digest(fs: pafs.FileSystem, path: str, header: bool) -> tuple[str, int, int]:
    """SHA-256 and size of the file as stored, and its record count (lines, less a CSV header)."""
    sha, size = hashlib.sha256(), 0
    with fs.open_input_stream(path, compression=None) as stream:
        while chunk := stream.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    lines = 0
    with fs.open_input_stream(path, compression=None) as stream, gzip.open(stream) as text:
        for _ in text:
            lines += 1
    return sha.hexdigest(), size, max(0, lines - 1) if header else lines


def _write_bytes(fs: pafs.FileSystem, path: str, payload: bytes) -> None:
    with fs.open_output_stream(path, compression=None) as out:
        out.write(payload)


def _swap_in(fs: pafs.FileSystem, building: str, final: str) -> None:
    """Replace the delivery folder by the complete new one (a rename on local and HDFS stores)."""
    if fs.get_file_info(final).type != pafs.FileType.NotFound:
        retired = final.rsplit("/", 1)[0] + "/_retired_" + final.rsplit("/", 1)[1]
        fs.delete_dir_contents(retired, missing_dir_ok=True)
        if fs.get_file_info(retired).type != pafs.FileType.NotFound:
            fs.delete_dir(retired)
        fs.move(final, retired)
        fs.move(building, final)
        fs.delete_dir(retired)
    else:
        fs.move(building, final)


def _spark_path(root: str, fs_path: str, base: str) -> str:
    """A path of the export filesystem as Spark addresses it."""
    if "://" in root:
        scheme = root.split("://", 1)[0]
        return f"{scheme}://{fs_path}" if not fs_path.startswith(scheme) else fs_path
    return f"file://{fs_path}"
