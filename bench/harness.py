"""Benchmark plumbing: a dedicated database, a real web server (granian, as the
Procfile runs it; ``BENCH_SERVER=gunicorn`` for comparison), load generators in
separate processes, and the result table (our figure beside the raw ceiling).

Everything runs on this machine over loopback. Loops are bounded in count and
time and stop by themselves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = os.environ.get("BENCH_DATABASE_NAME", "tanso_bench")
# Keep the bench database (and what a previous run seeded in it) instead of recreating it.
REUSE = os.environ.get("BENCH_REUSE") == "1"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def bench_database_url() -> str:
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{BENCH_DB}"))


def admin_url() -> str:
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/postgres"))


def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = bench_database_url()
    env["TANSO_ENV"] = "development"
    env["DEBUG"] = "0"
    env["LOG_LEVEL"] = "WARNING"
    # The load generators are one client per key; lift the per-key limit.
    env["API_RATE_LIMIT_PER_SECOND"] = "1000000"
    return env


def recreate_database() -> None:
    import psycopg

    with psycopg.connect(admin_url(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone()
        if REUSE and exists:
            log(f"reusing {BENCH_DB} (BENCH_REUSE=1): migrating it only")
        else:
            conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
            log(f"migrating {BENCH_DB}")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=bench_env(), check=True
    )


def setup_django() -> None:
    os.environ.update(
        {
            k: v
            for k, v in bench_env().items()
            if k in {"DATABASE_URL", "TANSO_ENV", "DEBUG", "LOG_LEVEL", "API_RATE_LIMIT_PER_SECOND"}
        }
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tanso.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    # Load the price catalog into the fresh database now: the first server
    # process to need it would sync it mid-run and make every other process
    # reload theirs (seconds of CPU each) while we measure.
    from django.db import connections

    from apps.pricing.catalog import get_catalog

    get_catalog()
    connections.close_all()


def tenant() -> tuple[str, str]:
    """A fresh organization (Platform mode): its test environment id and a secret key."""
    from django.db import connections

    from apps.accounts.audit import Actor
    from apps.accounts.models import Environment, User
    from apps.accounts.services import organization_create
    from apps.apikeys.services import apikey_create

    owner = User.objects.create_user(email=f"bench{time.time_ns()}@tanso.local")
    org = organization_create(name="Bench", owner=owner, mode="platform", actor=Actor(user=owner))
    env = Environment.objects.select_related("organization").get(organization=org, kind="test")
    key = apikey_create(environment=env, kind="sk", actor=Actor.system()).plaintext
    connections.close_all()
    return str(env.pk), key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SERVER = os.environ.get("BENCH_SERVER", "granian")
if SERVER not in {"granian", "gunicorn"}:
    raise SystemExit(f"BENCH_SERVER={SERVER!r}: granian (the default) or gunicorn")


def server_label(workers: int, threads: int) -> str:
    """How a result row names the server it was measured through ("granian 3x2")."""
    return f"{SERVER} {workers}x{threads}"


def server_command(port: int, workers: int, threads: int) -> list[str]:
    """The web server's command line: granian's WSGI server with ``threads`` blocking
    threads per worker, as the Procfile runs it, or gunicorn (gthread) with
    ``BENCH_SERVER=gunicorn`` (the same app, for comparison)."""
    # A wrapper can stand in for the app (bench.servertiming:application).
    app = os.environ.get("BENCH_WSGI", "tanso.wsgi:application")
    app = app if ":" in app else f"{app}:application"
    bin_dir = Path(sys.executable).parent
    if SERVER == "granian":
        return [
            str(bin_dir / "granian"),
            "--interface",
            "wsgi",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--blocking-threads",
            str(threads),
            "--backlog",
            "2048",
            "--log-level",
            "warning",
        ]
    return [
        str(bin_dir / "gunicorn"),
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--log-level",
        "warning",
        "--backlog",
        "2048",
        "--keep-alive",
        "30",
    ]


@contextlib.contextmanager
def server(workers: int = 3, threads: int = 1) -> Iterator[int]:
    """A real web server (``SERVER``) serving the app against the bench database."""
    port = free_port()
    cmd = server_command(port, workers, threads)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=bench_env())
    running_server["pid"] = proc.pid
    # BENCH_START_TIMEOUT: seconds to wait for the workers (more on a loaded box).
    deadline = time.monotonic() + float(os.environ.get("BENCH_START_TIMEOUT", "30"))
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"{SERVER} did not start")
        time.sleep(0.2)
    try:
        yield port
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()


def warm_up(port: int, key: str, workers: int) -> None:
    """A few concurrent requests per worker: each loads its code and the price
    catalog before anything is measured (a cold worker spends a second on it)."""
    from .load import batch_ingest
    from .workload import make_batches

    per_client = [
        [
            json.dumps({"events": batch}).encode()
            for batch in make_batches(seed=900 + n, batches=2, size=50)
        ]
        for n in range(workers * 2)
    ]
    batch_ingest(port, key, per_client)


# --- Who used the CPU during a measurement ----------------------------------------------
#
# The box is shared (PostgreSQL, the server, the load generators and whatever
# else runs), so every throughput figure comes with where the CPU went: ours
# per event, and how many cores other processes took meanwhile.

running_server = {"pid": 0}  # the web server's main process (set by server())
_TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command line, CPU seconds so far)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(entry)] = (int(fields[1]), cmd, (int(fields[11]) + int(fields[12])) / _TICK)
    return out


class CpuMeter:
    """CPU seconds between ``start()`` and ``stop()``, by group: the server
    (its process tree), PostgreSQL (backends of the bench database and the server's
    shared background processes), the load generators (this process and its
    children) and everything else on the machine."""

    def start(self) -> None:
        self.before = _processes()
        self.own = os.times()
        self.t0 = time.perf_counter()

    def stop(self) -> dict[str, float]:
        after = _processes()
        own = os.times()
        wall = time.perf_counter() - self.t0
        groups = {"server": 0.0, "postgres": 0.0, "other": 0.0}
        me = os.getpid()
        server_tree = {running_server["pid"]}
        for pid, (ppid, _, _) in after.items():
            if ppid in server_tree:
                server_tree.add(pid)
        for pid, (ppid, cmd, cpu) in after.items():
            used = cpu - self.before.get(pid, (0, "", 0.0))[2]
            if me in (pid, ppid):
                continue  # counted below, children included once they exit
            if pid in server_tree:
                groups["server"] += used
            elif cmd.startswith("postgres:") and (
                BENCH_DB in cmd or not any(w in cmd for w in (" postgres ", "autovacuum worker"))
            ):
                groups["postgres"] += used
            else:
                groups["other"] += used
        groups["clients"] = (own.user + own.system + own.children_user + own.children_system) - (
            self.own.user + self.own.system + self.own.children_user + self.own.children_system
        )
        groups["wall"] = wall
        return groups


def cpu_note(groups: dict[str, float], units: float, unit: str) -> str:
    """``server 48 us + PostgreSQL 57 us CPU/event; others 0.3 cores``."""
    return (
        f"CPU/{unit}: server {groups['server'] / units * 1e6:,.0f} us"
        f" + PostgreSQL {groups['postgres'] / units * 1e6:,.0f} us;"
        f" other processes {groups['other'] / groups['wall']:.1f} of {os.cpu_count()} cores"
    )


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


@dataclasses.dataclass
class Row:
    name: str
    ours: str
    ceiling: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""


def print_table(rows: list[Row]) -> None:
    headers = ["benchmark", "ours", "raw ceiling (same run)", "ratio", "target", ""]
    table = [headers] + [[r.name, r.ours, r.ceiling, r.ratio, r.target, r.verdict] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    for n, line in enumerate(table):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def post_json(port: int, path: str, key: str, body: object) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(
        "POST",
        path,
        body=json.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"{}")
