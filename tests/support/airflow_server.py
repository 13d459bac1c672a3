"""A real Airflow for tests: its metadata database migrated, then the API server, scheduler and
DAG processor started as separate processes (what `airflow standalone` runs, without the
triggerer: nothing here defers), on a free port, with the simple auth manager and a password of
its own. The REST API (`/api/v2`) is used with a JWT from `/auth/token`, as the UI does.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import ServerProcess, ServerSet, free_port, wait_until

HOST = "127.0.0.1"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
USER = "admin"


class AirflowServer(ServerSet):
    """`with AirflowServer(home, dags, cwd, env) as airflow:` then `airflow.api("GET", "/dags")`."""

    def __init__(self, home: Path, dags_folder: Path, cwd: Path, env: Mapping[str, str] | None = None) -> None:
        self.home = home
        self.dags_folder = dags_folder
        self.cwd = cwd
        self.extra_env = dict(env or {})
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self.servers: list[ServerProcess] = []
        self._token: str | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def env(self) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        passwords = self.home / "passwords.json"
        return {
            **inherited,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            **self.extra_env,
        }

    def start(self) -> AirflowServer:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({USER: self.password}))
        env = self.env()
        airflow = str(Path(sys.executable).parent / "airflow")
        migrate = subprocess.run(
            [airflow, "db", "migrate"], env=env, cwd=self.cwd, capture_output=True, text=True, check=False
        )
        if migrate.returncode:
            raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}")
        for name, args in (
            ("api-server", ["api-server", "--host", HOST, "--port", str(self.port), "--workers", "1"]),
            ("scheduler", ["scheduler"]),
            ("dag-processor", ["dag-processor"]),
        ):
            self.servers.append(ServerProcess(name, [airflow, *args], self.home / f"{name}.log", env, self.cwd))
        wait_until(self._healthy, 180, "Airflow API server, scheduler and DAG processor healthy", self.servers)
        return self

    def _healthy(self) -> bool:
        health = httpx.get(f"{self.url}/api/v2/monitor/health", timeout=5).raise_for_status().json()
        return all(health[c]["status"] == "healthy" for c in ("metadatabase", "scheduler", "dag_processor"))

    def token(self) -> str:
        """A JWT for the REST API, from the simple auth manager's login endpoint."""
        if self._token is None:
            response = httpx.post(
                f"{self.url}/auth/token", json={"username": USER, "password": self.password}, timeout=30
            )
            self._token = response.raise_for_status().json()["access_token"]
        return self._token

    def api(self, method: str, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        """`/api/v2<path>`; raises with the response body on an HTTP error."""
        response = httpx.request(
            method,
            f"{self.url}/api/v2{path}",
            json=json,
            params=params,
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=60,
        )
        if response.is_error:
            raise AssertionError(f"{method} {path}: HTTP {response.status_code}: {response.text}")
        return response.json() if response.content else None

    def wait_for(self, check, timeout: float, what: str, interval: float = 1):
        return wait_until(check, timeout, what, self.servers, interval)

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, lines: int = 60) -> str:
        """The last `lines` messages of a task attempt's log (JSON lines: their events and errors)."""
        messages = []
        for path in sorted(
            self.logs.glob(f"dag_id={dag_id}/run_id={run_id}/task_id={task_id}/**/attempt={try_number}.log")
        ):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    messages.append(line)
                    continue
                messages.append(str(record.get("event", ""))[:2000])
                if record.get("error_detail"):
                    messages.append(str(record["error_detail"])[:4000])
        return "\n".join(messages[-lines:])
