"""A throwaway PostgreSQL server for tests: its own data folder, port and password.

Started from Debian's `postgresql` binaries (initdb, pg_ctl) in a temporary folder and stopped
(with the folder removed) at the end. As root, the server runs as the `postgres` system user,
since PostgreSQL refuses to run as root. SQL is sent with `psql`.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    pass


def _bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if not candidates:
        raise PostgresUnavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
    return Path(candidates[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    database: str = "warehouse"
    user: str = "gamify"
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    port: int = field(default_factory=_free_port)
    host: str = "127.0.0.1"
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pg-")))

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def _as_owner(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        command = ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args
        return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)

    def start(self) -> PostgresServer:
        bin_dir = _bin_dir()
        data = self.folder / "data"
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        password_file = self.folder / "pw"
        password_file.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(password_file, "postgres", "postgres")
        self._as_owner(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                self.user,
                "--pwfile",
                str(password_file),
                "--auth",
                "scram-sha-256",
                "-E",
                "UTF8",
            ]
        )
        password_file.unlink()
        options = f"-p {self.port} -k {self.folder} -c listen_addresses={self.host} -c fsync=off"
        self._as_owner(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(self.folder / "log"), "-w", "start"]
        )
        self.psql(f"create database {self.database}", database="postgres")
        return self

    def stop(self) -> None:
        data = self.folder / "data"
        if data.exists():
            self._as_owner([str(_bin_dir() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(self.folder, ignore_errors=True)

    def psql(self, sql: str, database: str | None = None) -> str:
        """Run SQL (several statements allowed); returns the unaligned, tuples-only output."""
        result = subprocess.run(
            [
                "psql",
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database or self.database,
            ],
            input=sql,
            env={**os.environ, "PGPASSWORD": self.password},
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()
