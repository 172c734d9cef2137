"""Benchmark plumbing: a dedicated database, a real gunicorn, load generators in
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


@contextlib.contextmanager
def gunicorn(workers: int = 3, threads: int = 1) -> Iterator[int]:
    """A real gunicorn serving the app against the bench database."""
    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "gunicorn"),
        os.environ.get("BENCH_WSGI", "tanso.wsgi"),  # a profiling wrapper can stand in
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
    proc = subprocess.Popen(cmd, cwd=ROOT, env=bench_env())
    deadline = time.monotonic() + 30
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
            raise SystemExit("gunicorn did not start")
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
