"""The one place a SparkSession is built; jobs receive it as an argument."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyspark.sql import SparkSession

# Settings every run needs regardless of environment: UTC session clock, Delta-compatible
# parquet timestamps, and quiet local runs.
BASE_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.sources.partitionOverwriteMode": "static",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    # Call-site capture on every Column call costs several JVM round trips each; our plans
    # are built from hundreds of config-driven expressions.
    "spark.python.sql.dataFrameDebugging.enabled": "false",
}

LOCAL_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.driver.memory": "4g",
    "spark.sql.shuffle.partitions": "8",
    "spark.default.parallelism": "4",
    "spark.hadoop.fs.file.impl.disable.cache": "true",
}


def build_session(settings: Mapping[str, Any]) -> SparkSession:
    """Build (or reuse) the session from the `spark:` config block: master, app_name, conf."""
    builder = SparkSession.builder.appName(settings.get("app_name", "gamify"))
    master = settings.get("master")
    conf: dict[str, str] = dict(BASE_CONF)
    if master:
        builder = builder.master(master)
        if str(master).startswith("local"):
            conf.update(LOCAL_CONF)
    conf.update({k: str(v) for k, v in (settings.get("conf") or {}).items()})
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(settings.get("log_level", "WARN"))
    return session
