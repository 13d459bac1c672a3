"""The one place a SparkSession is built; jobs receive it as an argument.

Every session runs Delta Lake through delta-spark: its SQL extension and catalog, and the jars
of the Maven artifact matching the installed `delta-spark` package (plus the configured JDBC
drivers). Jars are resolved from Maven Central once into a local cache; later sessions use the
cached files directly, so they start offline.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pyspark import SparkConf
from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# Settings every run needs regardless of environment: UTC session clock, Delta-compatible
# parquet timestamps, Delta's extension and catalog, and quiet local runs.
BASE_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.sources.partitionOverwriteMode": "static",
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # Writes bin their rows into few, large files per partition (one shuffle before the write).
    "spark.databricks.delta.optimizeWrite.enabled": "true",
    "spark.databricks.delta.schema.autoMerge.enabled": "false",  # evolution only where a write asks
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    # Call-site capture on every Column call costs several JVM round trips each; our plans
    # are built from hundreds of config-driven expressions.
    "spark.python.sql.dataFrameDebugging.enabled": "false",
    # Generated classes kept for reuse (Spark's default 100): a night compiles about 1,100
    # distinct ones, so with 100 the same code was compiled again and again
    "spark.sql.codegen.cache.maxEntries": "2000",
}

LOCAL_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.driver.memory": "4g",
    "spark.sql.shuffle.partitions": "8",
    "spark.default.parallelism": "4",
    "spark.hadoop.fs.file.impl.disable.cache": "true",
    # Delta's snapshot and log caches sized for one machine
    "spark.databricks.delta.snapshotPartitions": "2",
    # Listing a table's files in parallel (VACUUM, many-path reads) in as many tasks as
    # default.parallelism, not Spark's 10,000: VACUUM of a small table took 64 s, 6.5 s with this
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
    # One JVM does all the work on a few cores: with the parallel collector a 2,000-subscriber
    # night ran 5-12 % faster than with G1, Java's default (README, Benchmark)
    "spark.driver.extraJavaOptions": "-XX:+UseParallelGC",
}

# For queries whose fused generated loop is wider than HotSpot compiles (8,000 bytes of bytecode,
# -XX:HugeMethodLimit): Spark leaves whole-stage code only above 65,535 bytes, so such a loop
# runs interpreted. With this limit Spark generates code per operator instead, in methods the
# JIT compiles. Session-wide it was no faster over a night, so stages apply it where measured.
JIT_SIZED_CODE: dict[str, str] = {"spark.sql.codegen.hugeMethodLimit": "8000"}

# Loggers that warn about something the jobs do on purpose: CSV extracts are read positionally
# under their own header's names (jobs/sources.py), which the header check reports once per file.
QUIET_LOGGERS: dict[str, str] = {"org.apache.spark.sql.catalyst.csv.CSVHeaderChecker": "ERROR"}

SCALA_VERSION = "2.13"
JAR_CACHE_ENV = "GAMIFY_JAR_CACHE"


def delta_package() -> str:
    """The delta-spark Maven artifact built for this pyspark's minor version, at the version
    of the installed `delta-spark` Python package."""
    spark_minor = ".".join(version("pyspark").split(".")[:2])
    return f"io.delta:delta-spark_{spark_minor}_{SCALA_VERSION}:{version('delta-spark')}"


def jar_cache_dir() -> Path:
    """Where resolved jars live: $GAMIFY_JAR_CACHE, else ~/.cache/telco-gamification/jars."""
    configured = os.environ.get(JAR_CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "telco-gamification" / "jars"


def required_packages(settings: Mapping[str, Any]) -> list[str]:
    """Delta's artifact plus the `spark.packages` of the config (e.g. JDBC drivers)."""
    return [delta_package(), *(str(p) for p in settings.get("packages") or [])]


def _manifest(packages: Sequence[str]) -> Path:
    digest = hashlib.sha256("\n".join(sorted(packages)).encode()).hexdigest()[:16]
    return jar_cache_dir() / f"resolved-{digest}.json"


def cached_jars(packages: Sequence[str]) -> list[str] | None:
    """The jar files resolved earlier for exactly these packages, if all are still there."""
    manifest = _manifest(packages)
    if not manifest.exists():
        return None
    jars = json.loads(manifest.read_text(encoding="utf-8"))["jars"]
    return jars if jars and all(Path(j).is_file() for j in jars) else None


def jar_conf(packages: Sequence[str]) -> dict[str, str]:
    """spark.jars from the cache when resolved before, else spark.jars.packages resolved into it."""
    jars = cached_jars(packages)
    if jars:
        return {"spark.jars": ",".join(jars)}
    cache = jar_cache_dir()
    return {"spark.jars.packages": ",".join(packages), "spark.jars.ivy": str(cache / "ivy")}


def _remember_jars(session: SparkSession, packages: Sequence[str]) -> None:
    """After Ivy resolved `packages`, record the jar files so the next session needs no network."""
    if cached_jars(packages):
        return
    resolved = session.sparkContext.getConf().get("spark.jars", "")
    jars = sorted(p.removeprefix("file://").removeprefix("file:") for p in resolved.split(",") if p.endswith(".jar"))
    if not jars:
        return
    manifest = _manifest(packages)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"packages": list(packages), "jars": jars}, indent=2), encoding="utf-8")
    tmp.replace(manifest)
    log.info("cached %d jars for %s in %s", len(jars), ", ".join(packages), manifest.parent)


def session_conf(settings: Mapping[str, Any]) -> dict[str, str]:
    """The Spark conf of a session built from the `spark:` config block (jars included)."""
    conf: dict[str, str] = dict(BASE_CONF)
    master = settings.get("master")
    if master and str(master).startswith("local"):
        conf.update(LOCAL_CONF)
    conf.update(jar_conf(required_packages(settings)))
    conf.update({k: conf_value(v) for k, v in (settings.get("conf") or {}).items()})
    return conf


def conf_value(value: Any) -> str:
    """A YAML value as Spark reads it: booleans in lower case (`false`, not Python's `False`)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


@contextmanager
def scoped_sql_conf(spark: SparkSession, conf: Mapping[str, str | None]) -> Iterator[None]:
    """Runtime SQL settings for the queries run inside (None: unset, Spark's default), the
    session's own values restored after."""
    before = {key: spark.conf.get(key, None) for key in conf}
    _set_sql_conf(spark, conf)
    try:
        yield
    finally:
        _set_sql_conf(spark, before)


def _set_sql_conf(spark: SparkSession, conf: Mapping[str, str | None]) -> None:
    for key, value in conf.items():
        if value is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, value)


def build_session(settings: Mapping[str, Any]) -> SparkSession:
    """Build (or reuse) the session from the `spark:` config block: master, app_name, packages, conf.

    Under spark-submit the JVM already runs: jars then come from its --jars/--packages
    (see `submit_conf`), and settings fixed at JVM start are ignored here.
    """
    builder = SparkSession.builder
    if not SparkConf().contains("spark.app.name"):  # spark-submit's --name (e.g. gamify-stages-<ds>) wins
        builder = builder.appName(settings.get("app_name", "gamify"))
    master = settings.get("master")
    if master:
        builder = builder.master(master)
    for key, value in session_conf(settings).items():
        builder = builder.config(key, value)
    memoize_jvm_lookups()
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(settings.get("log_level", "WARN"))
    _quiet(session, QUIET_LOGGERS)
    _remember_jars(session, required_packages(settings))
    return session


def memoize_jvm_lookups() -> None:
    """Resolve each JVM class and static method name once per process instead of on every use.

    Py4J answers `jvm.functions` and `functions.col` with a reflection round trip to the JVM
    each time, so every `F.col(...)` costs three round trips where one would do (over 40 % of
    the calls of the missions and quality stages). A name's class, package or static method
    never changes while the JVM runs, and these proxies hold no JVM object, so each view,
    package and class keeps the ones it resolved; static fields are values and are read on
    every use. Idempotent.
    """
    from py4j.java_gateway import JavaClass, JavaMember, JavaPackage, JVMView

    for kind in (JVMView, JavaPackage, JavaClass):
        if not getattr(kind.__getattr__, "memoized", False):
            kind.__getattr__ = _memoized_getattr(kind.__getattr__, (JavaClass, JavaPackage, JavaMember))


def _memoized_getattr(resolve: Any, kept: tuple[type, ...]) -> Any:
    def lookup(self: Any, name: str) -> Any:
        known = self.__dict__.setdefault("_resolved", {})
        if name in known:
            return known[name]
        value = resolve(self, name)
        if type(value) in kept:
            known[name] = value
        return value

    lookup.memoized = True  # type: ignore[attr-defined]
    return lookup


def _quiet(session: SparkSession, loggers: Mapping[str, str]) -> None:
    jvm = session.sparkContext._jvm
    for name, level in loggers.items():
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
            name, jvm.org.apache.logging.log4j.Level.toLevel(level)
        )


def submit_conf(settings: Mapping[str, Any]) -> dict[str, str]:
    """The --conf of a spark-submit for the jobs: jars (cached files, or packages to resolve)
    and the Delta session settings; cluster specifics come from the DAG's own conf."""
    conf = {k: v for k, v in BASE_CONF.items() if k.startswith(("spark.sql.", "spark.databricks."))}
    conf.update(jar_conf(required_packages(settings)))
    return conf


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m jobs.spark`: resolve and cache the jars now (run by `make install`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jobs.spark", description=main.__doc__)
    parser.add_argument("--packages", nargs="*", default=None, help="extra Maven coordinates to cache")
    args = parser.parse_args(argv)
    from jobs.config import load_config

    settings = dict(load_config(environ=os.environ).get("spark", {}))
    if args.packages:
        settings["packages"] = [*settings.get("packages", []), *args.packages]
    session = build_session({**settings, "master": "local[1]"})
    session.range(1).count()
    jars = cached_jars(required_packages(settings)) or []
    size = sum(Path(j).stat().st_size for j in jars)
    print(f"{len(jars)} jars ({size / 1e6:.1f} MB) cached under {jar_cache_dir()}")
    session.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
