"""Two middleware chains (tanso/chains.py): /api/ calls go through API_MIDDLEWARE (no
sessions, CSRF, messages, allauth, CSP, htmx, static files); pages keep the full one.

Checked through Django's test client, through the WSGI application the web server loads
(``tanso.wsgi.application``), and through the Procfile's real web process (granian)."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from tests.wsgi import wsgi_call

pytestmark = pytest.mark.django_db


ROOT = Path(__file__).resolve().parents[2]


class TestThroughDjango:
    def test_an_api_call_carries_no_session_csrf_or_csp(self, tenant):
        response = tenant.api().get("/api/sdk-keys/me")
        assert response.status_code == 200
        assert not response.cookies
        assert "Content-Security-Policy" not in response
        assert "Vary" not in response  # no session or CSRF cookie read
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["X-Request-ID"].startswith("req_")
        request = response.wsgi_request
        assert not hasattr(request, "session")
        assert getattr(request, "user", None) is None  # no Django auth user (DRF's key only)

    def test_an_api_post_needs_no_csrf_token(self, tenant):
        client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {tenant.sk_test}")
        body = {"eventName": "call", "customerReferenceId": "c1", "featureKey": "f"}
        response = client.post("/api/v1/client/events", body, content_type="application/json")
        assert response.status_code == 201, response.content

    def test_api_errors_keep_their_envelopes(self, tenant):
        missing = tenant.api().get("/api/no-such-thing")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        unauthorized = Client().get("/api/sdk-keys/me")
        assert unauthorized.status_code == 401
        assert unauthorized.json()["error"]["requestId"] == unauthorized["X-Request-ID"]

    def test_a_page_keeps_sessions_csrf_and_csp(self, tenant, web):
        login = Client().get("/accounts/login/")
        assert "csrftoken" in login.cookies
        assert "default-src 'self'" in login["Content-Security-Policy"]
        assert hasattr(login.wsgi_request, "session")
        page = web.get("/dashboard/")
        assert page.status_code == 200
        assert page.wsgi_request.user == tenant.owner
        assert page.wsgi_request.environment == tenant.test  # dashboard tenancy ran

    def test_a_page_post_without_csrf_token_is_refused(self, tenant):
        client = Client(enforce_csrf_checks=True)
        client.force_login(tenant.owner)
        response = client.post("/accounts/logout/")
        assert response.status_code == 403

    def test_the_api_docs_are_a_page(self, client):
        docs = client.get("/api/docs")
        assert docs.status_code == 200
        assert "default-src 'self'" in docs["Content-Security-Policy"]


class TestThroughTheWsgiApplication:
    def test_api_and_page(self, tenant):
        status, headers, _ = wsgi_call(
            "/api/sdk-keys/me", headers={"Authorization": f"Bearer {tenant.sk_test}"}
        )
        assert status == 200
        assert "set-cookie" not in headers and "content-security-policy" not in headers
        assert headers["x-request-id"][0].startswith("req_")
        status, headers, _ = wsgi_call("/accounts/login/")
        assert status == 200
        assert any(c.startswith("csrftoken=") for c in headers["set-cookie"])
        assert "default-src 'self'" in headers["content-security-policy"][0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def procfile_web() -> str:
    """The Procfile's ``web`` command line, as honcho runs it (through ``sh -c``)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise AssertionError("the Procfile has no web process")


@contextlib.contextmanager
def web_server() -> Any:
    """The Procfile's web process (granian serving tanso.wsgi:application), one worker
    with two blocking threads, on a free port against the test database."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "TANSO_ENV": "test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "BIND_HOST": "127.0.0.1",
        "PORT": str(port := _free_port()),
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "2",
    }
    command = procfile_web()
    assert command.split()[:3] == ["granian", "--interface", "wsgi"], command
    proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=ROOT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "granian did not start"
            time.sleep(0.2)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # as honcho stops it: the whole group
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _get(port: int, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers={"Host": "testserver", **headers})
    response = conn.getresponse()
    return response.status, response.headers, response.read()


@pytest.mark.django_db(transaction=True)
def test_in_granian():
    """The Procfile's web process (granian's WSGI server, as the bench runs it too): both
    chains and the check's lean path."""
    from tests.conftest import make_tenant

    tenant = make_tenant("Granian")
    auth = {"Authorization": f"Bearer {tenant.sk_test}"}
    with web_server() as port:
        status, headers, _ = _get(port, "GET", "/api/sdk-keys/me", auth)
        assert status == 200
        assert headers.get("Set-Cookie") is None
        assert headers.get("Content-Security-Policy") is None
        status, headers, _ = _get(port, "GET", "/accounts/login/", {})
        assert status == 200
        assert "csrftoken=" in (headers.get("Set-Cookie") or "")
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        check = b'{"customerReferenceId": "nobody", "featureKey": "f"}'
        json_auth = {**auth, "Content-Type": "application/json", "X-Request-ID": "trace-1"}
        status, headers, body = _get(
            port, "POST", "/api/v1/client/entitlements/check", json_auth, check
        )
        assert status == 200, body
        assert b'"allowed":false' in body and b'"no_subscription"' in body
        assert headers["X-Request-ID"] == "trace-1"
        assert headers["X-Content-Type-Options"] == "nosniff"
        bad = {**json_auth, "Authorization": "Bearer sk_test_nope"}
        status, _, body = _get(port, "POST", "/api/v1/client/entitlements/check", bad, check)
        assert status == 401, body  # Django's answer, after the lean path let it go
        assert b'"requestId":"trace-1"' in body
