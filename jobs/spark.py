"""The one place a SparkSession is built; jobs receive it as an argument.

Every session runs Delta Lake through delta-spark: its SQL extension and catalog, and the jars
of the Maven artifact matching the installed `delta-spark` package (plus the configured JDBC
drivers). Jars are resolved from Maven Central once into a local cache; later sessions use the
cached files directly, so they start offline. A local session's JVM also maps the classes a
night loads from this machine's class archive, when one was built (`python -m jobs.spark
--class-archive`, `make class-archive`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pyspark
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
    # night ran 5-12 % faster than with G1, Java's default (bench/MEASUREMENTS.md)
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
DRIVER_OPTIONS = "spark.driver.extraJavaOptions"
# The JVM's own warnings (an archive it cannot map, say) on stderr: stdout is the program's
JVM_WARNINGS_TO_STDERR = "-Xlog:disable -Xlog:all=warning:stderr"


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
    """The Spark conf of a session built from the `spark:` config block (jars included); a local
    session's JVM starts from the class archive when there is one."""
    conf: dict[str, str] = dict(BASE_CONF)
    master = settings.get("master")
    local = bool(master) and str(master).startswith("local")
    if local:
        conf.update(LOCAL_CONF)
    conf.update(jar_conf(required_packages(settings)))
    conf.update({k: conf_value(v) for k, v in (settings.get("conf") or {}).items()})
    archive = class_archive() if local else None
    # unless the options name an archive already: the JVM that dumps a new one
    if archive and archive.is_file() and "Archive" not in conf.get(DRIVER_OPTIONS, ""):
        conf[DRIVER_OPTIONS] = (
            f"{conf.get(DRIVER_OPTIONS, '')} {JVM_WARNINGS_TO_STDERR} -XX:SharedArchiveFile={archive}".strip()
        )
    return conf


def class_archive() -> Path | None:
    """This machine's archive of the classes a local driver JVM loads in a night (Java's class
    data sharing: mapped at start instead of read from the jars and verified one by one). Its
    name holds the JVM and the jars it was dumped from (their paths, sizes and times), so another
    JDK, pyspark, delta-spark or environment looks for another file. None when no JVM is found."""
    home = os.environ.get("JAVA_HOME")
    if not home:
        java = shutil.which("java")
        if not java:
            return None
        home = Path(java).resolve().parents[1]  # <home>/bin/java
    home = Path(home).resolve()
    jars = spark_jars()
    jvm = _file_keys(home.glob("lib/server/libjvm.so"))
    key = [str(home), *jvm, version("delta-spark"), *_file_keys(jars.glob("*.jar"))]
    place = hashlib.sha256(f"{home}\n{jars}".encode()).hexdigest()[:8]  # this JVM with this environment
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:16]
    return jar_cache_dir() / "class-archive" / f"driver-{place}-{digest}.jsa"


def superseded_class_archives(archive: Path) -> list[Path]:
    """Archives dumped earlier for the same JVM home and environment as `archive` (before a JDK
    update or a reinstall): no session looks for them any more."""
    place = archive.name.split("-")[1]
    return sorted(p for p in archive.parent.glob(f"driver-{place}-*.jsa") if p != archive)


def spark_jars() -> Path:
    """The directory of the jars on the driver JVM's class path (pyspark's own)."""
    return (Path(pyspark.__file__).parent / "jars").resolve()


def _file_keys(paths: Iterable[Path]) -> list[str]:
    """Path, size and modification time of each file: what Java checks before it maps an archive
    (an archive dumped in another checkout's environment fails to load)."""
    return [f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(paths)]


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


def build_class_archive(workdir: Path) -> Path:
    """Dump the class archive from a local driver JVM that ran two nights of every stage over a
    small generated operator in `workdir` (the second reads the state the first left). Needs a
    process without a JVM yet: Java writes the archive as the JVM exits, which is awaited here."""
    from datetime import date

    from jobs.config import load_config
    from jobs.pipeline import RunContext, build_lakehouse, run_stages
    from jobs.sample_data import generate

    archive = class_archive()
    if archive is None:
        raise RuntimeError("no JVM to archive the classes of: set JAVA_HOME or put java on the PATH")
    archive.parent.mkdir(parents=True, exist_ok=True)
    dumping = archive.with_suffix(".dumping")
    dumping.unlink(missing_ok=True)
    days = [date(2025, 3, 1), date(2025, 3, 2)]
    generate(workdir / "raw", subscribers=200, days=len(days), start=days[0], seed=1)
    paths = {"raw.root": "raw", "lakehouse.root": "lakehouse", "exports.root": "exports"}
    config = load_config(env="local", overrides={k: str(workdir / v) for k, v in paths.items()}, environ=os.environ)
    settings = dict(config.get("spark") or {})
    conf = dict(settings.get("conf") or {})
    dump = f"-XX:ArchiveClassesAtExit={dumping} -Xlog:cds=off -Xlog:cds+dynamic=off"  # not each class it skips
    conf[DRIVER_OPTIONS] = f"{conf.get(DRIVER_OPTIONS, LOCAL_CONF[DRIVER_OPTIONS])} {dump}"
    session = build_session({**settings, "master": "local[2]", "conf": conf})
    jvm = session.sparkContext._gateway.proc
    try:
        lakehouse = build_lakehouse(session, config)
        for ds in days:
            run_stages(RunContext(session, config, lakehouse, ds))
    finally:
        session.stop()
        jvm.stdin.close()  # the JVM exits when its parent's pipe closes, and dumps the archive then
        jvm.wait(timeout=900)
    if not dumping.is_file():
        raise RuntimeError(f"the JVM exited with status {jvm.returncode} without writing {dumping}")
    dumping.replace(archive)
    for stale in superseded_class_archives(archive):
        stale.unlink(missing_ok=True)
    return archive


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m jobs.spark`: resolve and cache the jars now (run by `make install`);
    `--class-archive`: build the local driver JVM's class archive instead (`make class-archive`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jobs.spark", description=main.__doc__)
    parser.add_argument("--packages", nargs="*", default=None, help="extra Maven coordinates to cache")
    parser.add_argument(
        "--class-archive", action="store_true", help="dump the classes a local night loads, for faster JVM starts"
    )
    args = parser.parse_args(argv)
    if args.class_archive:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="gamify-class-archive-") as workdir:
            archive = build_class_archive(Path(workdir))
        print(f"class archive ({archive.stat().st_size / 1e6:.0f} MB): {archive}")
        return 0
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
