"""The local session's JVM settings (its collector, the class archive), its Py4J lookups (class and static-method names resolved
once, values read each time), SQL settings scoped to a block and a small operator's night."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from datetime import date, timedelta

import pytest
from py4j import protocol
from py4j.java_gateway import JavaClass
from pyspark.sql import functions as F

from jobs.config import load_config
from jobs.pipeline import STAGES, RunContext, build_lakehouse, run_stages, small_data_conf
from jobs.spark import (
    JAR_CACHE_ENV,
    class_archive,
    memoize_jvm_lookups,
    scoped_sql_conf,
    session_conf,
    superseded_class_archives,
)
from jobs.tables import SUBSCRIBER_PROFILE, schema_of

pytestmark = pytest.mark.unit


@pytest.fixture
def round_trips(spark, monkeypatch):
    """The commands sent to the JVM from here on, without the releases of Python proxies that
    garbage collection sends whenever it frees one, whatever the code under test does."""
    client = spark.sparkContext._jvm._gateway_client
    sent: list[str] = []
    send = client.send_command
    release = protocol.MEMORY_COMMAND_NAME + protocol.MEMORY_DEL_SUBCOMMAND_NAME

    def counted(command, *args, **kwargs):
        if not command.startswith(release):
            sent.append(command)
        return send(command, *args, **kwargs)

    monkeypatch.setattr(client, "send_command", counted)
    return sent


def test_a_column_function_costs_one_round_trip_once_resolved(spark, round_trips):
    F.col("warm_up")
    round_trips.clear()
    column = F.col("subscriber_id")
    calls = list(round_trips)
    assert len(calls) == 1, calls
    assert spark.range(1).withColumnRenamed("id", "subscriber_id").select(column).columns == ["subscriber_id"]


def test_static_fields_are_read_on_every_use(spark, round_trips):
    integer = spark.sparkContext._jvm.java.lang.Integer
    round_trips.clear()
    assert integer.MAX_VALUE == 2_147_483_647
    assert integer.MAX_VALUE == 2_147_483_647
    assert len(round_trips) == 2


def test_memoizing_twice_wraps_once(spark):
    lookup = JavaClass.__getattr__
    memoize_jvm_lookups()
    assert JavaClass.__getattr__ is lookup
    assert lookup.memoized is True


def test_scoped_sql_conf_holds_inside_the_block_and_restores_after_a_failure(spark):
    unset, overridden, cleared = (
        "spark.sql.codegen.hugeMethodLimit",
        "spark.sql.shuffle.partitions",
        "spark.sql.codegen.wholeStage",  # conf/env/test.yaml sets it; None clears it for the block
    )
    assert spark.conf.get(unset, None) is None
    before, before_cleared = spark.conf.get(overridden), spark.conf.get(cleared)
    assert before_cleared == "false"
    settings = {unset: "8000", overridden: "3", cleared: None}
    with pytest.raises(RuntimeError, match="a failing write"), scoped_sql_conf(spark, settings):
        assert (spark.conf.get(unset), spark.conf.get(overridden)) == ("8000", "3")
        assert spark.conf.get(cleared) == "true"  # Spark's default
        raise RuntimeError("a failing write")
    assert spark.conf.get(unset, None) is None
    assert spark.conf.get(overridden) == before != "3"
    assert spark.conf.get(cleared) == before_cleared


def test_a_local_session_runs_the_throughput_collector(spark):
    beans = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getGarbageCollectorMXBeans()
    assert sorted(bean.getName() for bean in beans) == ["PS MarkSweep", "PS Scavenge"]


@pytest.fixture
def jvm_home(tmp_path, monkeypatch):
    """A JVM home of its own and an empty cache: no class archive unless a test writes one."""
    home = tmp_path / "jdk"
    (home / "lib" / "server").mkdir(parents=True)
    (home / "lib" / "server" / "libjvm.so").write_bytes(b"jvm build 1")
    monkeypatch.setenv("JAVA_HOME", str(home))
    monkeypatch.setenv(JAR_CACHE_ENV, str(tmp_path / "cache"))
    return home


def test_the_collector_is_set_for_local_masters_only_and_the_config_can_replace_it(jvm_home):
    options = "spark.driver.extraJavaOptions"
    assert session_conf({"master": "local[2]"})[options] == "-XX:+UseParallelGC"
    assert options not in session_conf({"master": "spark://master:7077"})
    configured = {"master": "local[2]", "conf": {options: "-XX:+UseG1GC"}}
    assert session_conf(configured)[options] == "-XX:+UseG1GC"


def test_a_local_jvm_starts_from_the_class_archive_once_one_was_built(jvm_home):
    options = "spark.driver.extraJavaOptions"
    archive = class_archive()
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"classes")
    mapped = f"-Xlog:disable -Xlog:all=warning:stderr -XX:SharedArchiveFile={archive}"
    assert session_conf({"master": "local[2]"})[options] == f"-XX:+UseParallelGC {mapped}"
    configured = {"master": "local[2]", "conf": {options: "-XX:+UseG1GC"}}
    assert session_conf(configured)[options] == f"-XX:+UseG1GC {mapped}"
    assert options not in session_conf({"master": "spark://master:7077"})  # executors and drivers elsewhere
    dumping = {"master": "local[2]", "conf": {options: "-XX:ArchiveClassesAtExit=/tmp/next.jsa"}}
    assert session_conf(dumping)[options] == "-XX:ArchiveClassesAtExit=/tmp/next.jsa"  # the dump of a new one


def test_another_jvm_build_looks_for_another_class_archive(jvm_home):
    before = class_archive()
    (jvm_home / "lib" / "server" / "libjvm.so").write_bytes(b"jvm build 22")
    after = class_archive()
    assert before.parent == after.parent and before.name != after.name
    after.parent.mkdir(parents=True)
    before.write_bytes(b"classes of the earlier build")
    assert "SharedArchiveFile" not in session_conf({"master": "local[2]"})["spark.driver.extraJavaOptions"]


@pytest.fixture
def environments(tmp_path):
    """pyspark's jar directory in two environments (checkouts), the same jar in each."""
    here, elsewhere = tmp_path / "here" / "jars", tmp_path / "elsewhere" / "jars"
    for jars in (here, elsewhere):
        jars.mkdir(parents=True)
        (jars / "spark-core.jar").write_bytes(b"classes")
    return here, elsewhere


def test_pyspark_installed_elsewhere_looks_for_another_class_archive(jvm_home, environments, monkeypatch):
    """Java maps an archive only for the class path it was dumped with: another checkout's
    environment, or a reinstalled jar, must not find this one."""
    here, elsewhere = environments
    monkeypatch.setattr("jobs.spark.spark_jars", lambda: here)
    dumped_here = class_archive()
    monkeypatch.setattr("jobs.spark.spark_jars", lambda: elsewhere)
    assert class_archive() != dumped_here
    monkeypatch.setattr("jobs.spark.spark_jars", lambda: here)
    assert class_archive() == dumped_here
    (here / "spark-core.jar").write_bytes(b"classes of another build")
    assert class_archive() != dumped_here


def test_a_new_archive_supersedes_the_earlier_ones_of_its_jvm_and_environment_only(jvm_home, environments, monkeypatch):
    here, elsewhere = environments
    monkeypatch.setattr("jobs.spark.spark_jars", lambda: elsewhere)
    other_environment = class_archive()
    monkeypatch.setattr("jobs.spark.spark_jars", lambda: here)
    before_reinstall = class_archive()
    (here / "spark-core.jar").write_bytes(b"classes, reinstalled")
    after_reinstall = class_archive()
    after_reinstall.parent.mkdir(parents=True)
    for archive in (other_environment, before_reinstall, after_reinstall):
        archive.write_bytes(b"classes")
    assert len({other_environment, before_reinstall, after_reinstall}) == 3
    assert superseded_class_archives(after_reinstall) == [before_reinstall]


@pytest.mark.skipif(not shutil.which("javac"), reason="needs a JDK's javac")
def test_an_archive_java_cannot_map_is_a_warning_on_stderr_and_stdout_stays_the_programs(jvm_home, tmp_path):
    work = tmp_path / "java"
    (work / "moved").mkdir(parents=True)
    (work / "Hello.java").write_text(
        'public class Hello { public static void main(String[] a) { System.out.println("hello"); } }'
    )
    subprocess.run(["javac", "Hello.java"], cwd=work, check=True)
    subprocess.run(["jar", "cf", "hello.jar", "Hello.class"], cwd=work, check=True)
    archive = class_archive()
    archive.parent.mkdir(parents=True)
    subprocess.run(
        ["java", f"-XX:ArchiveClassesAtExit={archive}", "-cp", "hello.jar", "Hello"],
        cwd=work,
        check=True,
        capture_output=True,
    )
    shutil.copy(work / "hello.jar", work / "moved" / "hello.jar")  # the class path differs from the dump's
    options = shlex.split(session_conf({"master": "local[2]"})["spark.driver.extraJavaOptions"])
    assert f"-XX:SharedArchiveFile={archive}" in options
    run = subprocess.run(
        ["java", *options, "-cp", "moved/hello.jar", "Hello"], cwd=work, capture_output=True, text=True
    )
    assert (run.returncode, run.stdout) == (0, "hello\n")
    assert "Unable to use shared archive" in run.stderr


def test_generated_classes_are_cached_beyond_sparks_default_of_100(spark):
    static = spark.sparkContext._jvm.org.apache.spark.sql.internal.StaticSQLConf
    assert spark.conf.get(static.CODEGEN_CACHE_MAX_ENTRIES().key()) == "2000"


def test_a_small_operators_nights_run_with_the_small_data_settings(spark, tmp_path, monkeypatch):
    small = {"max_subscribers": 2, "conf": {"spark.sql.shuffle.partitions": 3}}
    overrides = {"lakehouse.root": str(tmp_path / "lake"), "spark.small_data": small}
    config = load_config(env="test", overrides=overrides, environ={})
    lakehouse = build_lakehouse(spark, config)
    day = date(2025, 3, 10)
    for snapshot, subscribers in ((day - timedelta(days=1), 2), (day, 3)):
        rows = [(f"s{i}", "P", "PREPAID", snapshot, "ACTIVE", "25-34", "North", snapshot) for i in range(subscribers)]
        profile = spark.createDataFrame(rows, schema_of(SUBSCRIBER_PROFILE))
        lakehouse.write(
            profile, SUBSCRIBER_PROFILE, partition_by=["snapshot_date"], replace_where={"snapshot_date": snapshot}
        )
    session = spark.conf.get("spark.sql.shuffle.partitions")
    seen = {}

    def recording(stage):
        def run(ctx):
            seen[stage, ctx.ds] = spark.conf.get("spark.sql.shuffle.partitions")
            return {}

        return run

    for stage in ("ingest", "segments"):
        monkeypatch.setitem(STAGES, stage, recording(stage))
    for ds in (day - timedelta(days=1), day, day + timedelta(days=1)):
        run_stages(RunContext(spark, config, lakehouse, ds), ["ingest", "segments"])
        assert spark.conf.get("spark.sql.shuffle.partitions") == session  # restored after the night
    # ingest counts the snapshots before its date, the stages after it count the date's own too:
    # two subscribers on day-1, three on `day`
    assert seen == {
        ("ingest", day - timedelta(days=1)): session,  # no snapshot before the first day
        ("segments", day - timedelta(days=1)): "3",
        ("ingest", day): "3",
        ("segments", day): session,
        ("ingest", day + timedelta(days=1)): session,
        ("segments", day + timedelta(days=1)): session,
    }
    switched_off = load_config(env="test", overrides={**overrides, "spark.small_data": None}, environ={})
    assert small_data_conf(RunContext(spark, switched_off, lakehouse, day)) == {}
