"""Pytest fixtures for the Stripe peer (registered in tests/conftest.py).

* ``stripe_peer`` (session): localstripe + our routes (``tests/stripe_peer/server.py``)
  in a subprocess on a free 127.0.0.1 port, started on first use; points
  ``settings.STRIPE_API_BASE`` (and the stripe module's global ``api_base``, which
  dj-stripe uses) at it for the session. Helpers: :class:`StripePeer`.
* ``stripe_webhooks`` (function, needs ``live_server``): a flushed peer whose webhooks
  reach our real endpoint: ``settings.STRIPE_WEBHOOK_BASE_URL`` = the live server.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe

REPO = Path(__file__).resolve().parents[2]


def wait_until(
    check: Callable[[], Any],
    what: str = "condition",
    timeout: float = 20.0,
    *,
    between: Callable[[], Any] | None = None,
) -> Any:
    """Poll ``check()`` until it is truthy and return it (AssertionError after
    ``timeout`` s). ``between``: run after each miss (e.g. ``connection.close`` for a
    fresh snapshot of what a Celery worker committed)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
        if between is not None:
            between()


class StripePeer:
    """A running peer: its address, a client, and test controls."""

    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    # -- plumbing -------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - our own http:// peer
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Authorization": "Bearer sk_test_peer"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw.strip() else None

    def answers(self) -> bool:
        try:
            self._call("GET", "/v1/account")
        except (urllib.error.URLError, ConnectionError, OSError):
            return False
        return True

    # -- helpers for tests ----------------------------------------------------------------
    @staticmethod
    def new_key(mode: str = "test") -> str:
        """A fresh secret key (localstripe accepts any ``sk_`` key)."""
        return f"sk_{mode}_{secrets.token_hex(12)}"

    def client(self, api_key: str | None = None) -> stripe.StripeClient:
        """A client of the peer, as the tests' "Stripe dashboard" (not our code's client)."""
        return stripe.StripeClient(
            api_key or self.new_key(), base_addresses={"api": self.url}, max_network_retries=0
        )

    def flush(self) -> None:
        """Forget every object, webhook endpoint and recorded delivery; webhooks still
        scheduled are dropped."""
        self._call("DELETE", "/_config/all")

    def register_webhook(
        self, webhook_id: str, url: str, secret: str, events: list[str] | None = None
    ) -> None:
        """localstripe's own webhook registry (``/_config/webhooks/<id>``)."""
        body: dict[str, Any] = {"url": url, "secret": secret}
        if events is not None:
            body["events"] = events
        self._call("POST", f"/_config/webhooks/{webhook_id}", body)

    def point_webhooks_at(self, url: str) -> None:
        """Re-point every registered webhook at ``url`` (e.g. nowhere, to capture an event's
        signed delivery without it reaching us)."""
        self._call("POST", "/_config/webhooks_url", {"url": url})

    def set_webhook_delay(self, seconds: float) -> None:
        self._call("POST", "/_config/peer", {"webhook_delay": seconds})

    def deliveries(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """Webhook deliveries made so far: ``{webhook, url, event, type, payload,
        headers, status, body?, error?}`` (``payload`` and ``headers`` exactly as sent)."""
        rows = self._call("GET", "/_config/deliveries") or []
        return [row for row in rows if event_type is None or row["type"] == event_type]

    def wait_for(
        self,
        predicate: Callable[[list[dict[str, Any]]], Any],
        *,
        timeout: float = 15.0,
        what: str = "webhook deliveries",
    ) -> Any:
        """Poll the deliveries until ``predicate(deliveries)`` is truthy; return it."""
        return wait_until(lambda: predicate(self.deliveries()), what, timeout)

    def wait_delivered(self, event_type: str, count: int = 1, timeout: float = 15.0) -> list[dict]:
        """Wait until ``count`` deliveries of ``event_type`` got an answer; return them."""
        return self.wait_for(
            lambda rows: (
                done
                if len(
                    done := [r for r in rows if r["type"] == event_type and r["status"] is not None]
                )
                >= count
                else None
            ),
            timeout=timeout,
            what=f"{count} x {event_type}",
        )


def connect_environment(environment: Any, peer: StripePeer, api_key: str | None = None) -> Any:
    """Connect ``environment`` to the peer through the real service (key checked, stored
    encrypted, webhook endpoint created in the peer pointing at
    ``settings.STRIPE_WEBHOOK_BASE_URL``); returns the ``StripeConnection``. The key is
    ``connection.api_key_for_tests`` (a fresh one unless given)."""
    from apps.accounts.audit import Actor
    from apps.stripe_sync.services import stripe_connect

    key = api_key or peer.new_key("live" if environment.kind == "live" else "test")
    connection, _ = stripe_connect(environment=environment, api_key=key, actor=Actor.system())
    connection.api_key_for_tests = key
    return connection


def _start_peer() -> StripePeer:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.stripe_peer.server", "--port", "0"],
        cwd=str(REPO),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        process.kill()
        raise RuntimeError(f"the Stripe peer did not start: {line!r}")
    peer = StripePeer(process, int(line.split()[-1]))
    deadline = time.monotonic() + 20
    while not peer.answers():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the Stripe peer does not answer")
        time.sleep(0.05)
    return peer


@pytest.fixture(scope="session")
def stripe_peer() -> Iterator[StripePeer]:
    from django.conf import settings

    peer = _start_peer()
    saved = settings.STRIPE_API_BASE, stripe.api_base
    settings.STRIPE_API_BASE = peer.url
    stripe.api_base = peer.url  # dj-stripe's calls use the module-level client
    try:
        yield peer
    finally:
        settings.STRIPE_API_BASE, stripe.api_base = saved
        peer.process.terminate()
        try:
            peer.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            peer.process.kill()


@pytest.fixture
def stripe_webhooks(stripe_peer: StripePeer, live_server: Any, settings: Any) -> StripePeer:
    """A flushed peer whose webhooks reach our real endpoint on the live server."""
    stripe_peer.flush()
    stripe_peer.set_webhook_delay(0.2)
    settings.STRIPE_WEBHOOK_BASE_URL = live_server.url
    return stripe_peer
