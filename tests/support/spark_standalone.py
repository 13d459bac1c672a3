"""A Spark standalone cluster for tests: one master and one worker, started from the installed
pyspark's `bin/spark-class` on free ports, with logs and work folders under a given folder.

The master's web UI serves its state as JSON (`/json/`: workers, active and completed
applications), the worker's likewise (`/json/`: its running and finished executors).
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import pyspark

from tests.support.processes import ServerProcess, ServerSet, free_port, wait_until

HOST = "127.0.0.1"


def spark_home() -> Path:
    return Path(pyspark.__file__).resolve().parent


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


class SparkStandalone(ServerSet):
    """`with SparkStandalone(folder) as cluster:` a master and a worker with `cores` and `memory`."""

    def __init__(self, folder: Path, cores: int = 2, memory: str = "2g", worker_env: dict[str, str] | None = None):
        self.folder = folder
        self.cores = cores
        self.memory = memory
        self.worker_env = worker_env or {}
        self.port = free_port()
        self.webui_port = free_port()
        self.worker_webui_port = free_port()
        self.servers: list[ServerProcess] = []

    @property
    def master_url(self) -> str:
        return f"spark://{HOST}:{self.port}"

    @property
    def master_ui(self) -> str:
        return f"http://{HOST}:{self.webui_port}"

    @property
    def worker_ui(self) -> str:
        return f"http://{HOST}:{self.worker_webui_port}"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": HOST,
            "SPARK_DAEMON_MEMORY": "256m",  # the master and worker daemons; executors get `memory`
            "SPARK_LOG_DIR": str(self.folder / "logs"),
            "SPARK_NO_DAEMONIZE": "1",
        }

    def _spark_class(self, name: str, *args: str, env: dict[str, str]) -> ServerProcess:
        command = [str(spark_home() / "bin" / "spark-class"), *args]
        return ServerProcess(name, command, self.folder / "logs" / f"{name}.log", env, self.folder)

    def start(self) -> SparkStandalone:
        self.folder.mkdir(parents=True, exist_ok=True)
        env = self._env()
        master = self._spark_class(
            "spark-master",
            "org.apache.spark.deploy.master.Master",
            *("--host", HOST, "--port", str(self.port), "--webui-port", str(self.webui_port)),
            env=env,
        )
        self.servers.append(master)
        wait_until(lambda: self.master_status()["status"] == "ALIVE", 120, "Spark master", self.servers)
        worker = self._spark_class(
            "spark-worker",
            "org.apache.spark.deploy.worker.Worker",
            *("--host", HOST, "--webui-port", str(self.worker_webui_port)),
            *("--cores", str(self.cores), "--memory", self.memory),
            *("--work-dir", str(self.folder / "work")),
            self.master_url,
            env={**env, **self.worker_env},
        )
        self.servers.append(worker)
        wait_until(
            lambda: any(w["state"] == "ALIVE" for w in self.master_status()["workers"]),
            120,
            "Spark worker registered with the master",
            self.servers,
        )
        return self

    def master_status(self) -> dict[str, Any]:
        return get_json(f"{self.master_ui}/json/")

    def worker_status(self) -> dict[str, Any]:
        return get_json(f"{self.worker_ui}/json/")
