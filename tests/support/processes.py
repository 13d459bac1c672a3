"""Long-running test servers: started in their own process group with their output in a log
file, stopped (the whole group: a Spark worker's executors, Airflow's task processes) at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One server command, its log file and its process group."""

    def __init__(self, name: str, command: Sequence[str], log: Path, env: Mapping[str, str], cwd: Path) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                list(command),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,  # its own process group: stop() reaches its children too
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to the group, SIGKILL to what is left after `timeout`."""
        pgid = self.process.pid
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(pgid):
                self.process.poll()
                time.sleep(0.2)
            if not _group_alive(pgid):
                break
        self.process.poll()


class ServerSet:
    """Servers started one after the other and stopped in reverse order (the last started, which
    depends on the earlier ones, first), also when starting fails half-way. Subclasses append to
    `self.servers` in `start()`."""

    servers: list[ServerProcess]

    def start(self) -> ServerSet:
        raise NotImplementedError

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_until(
    check: Callable[[], object],
    timeout: float,
    what: str,
    servers: Sequence[ServerProcess] = (),
    interval: float = 1,
):
    """Poll `check` until it returns something truthy; fail naming `what` (and the servers' logs)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for server in servers:
            if not server.alive():
                raise RuntimeError(f"{server.name} exited ({server.process.returncode}):\n{server.tail()}")
        try:
            result = check()
        except Exception as exc:  # not up yet
            last_error = exc
        else:
            if result:
                return result
        time.sleep(interval)
    logs = "\n".join(f"--- {s.name} ({s.log}):\n{s.tail()}" for s in servers)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s (last error: {last_error!r})\n{logs}")
