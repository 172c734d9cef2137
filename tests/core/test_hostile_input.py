"""Hostile input answers a clear 4xx in the error envelope, never a 500 (docs/api.md,
"Limits"): NUL characters anywhere, deep JSON, bodies over their path's limit, chunked
bodies; unknown /api/ routes are JSON in every mode; pages get the product's pages."""

from __future__ import annotations

import base64
import http.client
import json
import socket
from typing import Any

import pytest
from django.test import Client

from apps.core.api.parsers import UnsafeJSON, loads
from apps.events.models import Event
from tests.conftest import Tenant, make_tenant
from tests.core.test_api_chain import web_server
from tests.wsgi import wsgi_call

pytestmark = pytest.mark.django_db

EVENT = {"eventName": "call", "customerReferenceId": "c1", "featureKey": "chat"}
DEEP = "[" * 10_000 + "]" * 10_000


def assert_envelope(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["requestId"] == response["X-Request-ID"]
    return error


def post_json(tenant: Tenant, path: str, body: str | bytes, **extra: Any) -> Any:
    return tenant.api().generic("POST", path, body, content_type="application/json", **extra)


class TestNul:
    @pytest.mark.parametrize(
        ("path", "param"),
        [
            ("/api/models?search=%00", "search"),
            ("/api/customers?search=a%00b", "search"),
            ("/api/model-prices?provider=%00", "provider"),
            ("/api/v1/client/credits/allocations?planKey=%00", "planKey"),
            ("/api/events?customerReferenceId=%00", "customerReferenceId"),
        ],
    )
    def test_in_the_query_string_is_400_naming_the_parameter(self, tenant, path, param):
        error = assert_envelope(tenant.api().get(path), 400, "validation_failed")
        assert error["fields"] == {param: ["Must not contain a NUL character."]}

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/api/v1/client/customers/%00/keys"),
            ("POST", "/api/v1/client/customers/%00/keys"),
            ("DELETE", "/api/v1/client/customers/%00/keys/key_1"),
            ("POST", "/api/v1/client/customers/c%00/keys/key_1/rotate"),
            ("GET", "/api/v1/client/customers/%00"),
        ],
    )
    def test_in_the_path_is_400(self, tenant, method, path):
        response = tenant.api().generic(method, path, "{}", content_type="application/json")
        error = assert_envelope(response, 400, "validation_failed")
        assert "path" in error["message"]

    @pytest.mark.parametrize(
        ("header", "meta"),
        [("Idempotency-Key", "HTTP_IDEMPOTENCY_KEY"), ("X-Request-Id", "HTTP_X_REQUEST_ID")],
    )
    def test_in_a_header_is_400_naming_it(self, tenant, header, meta):
        response = post_json(tenant, "/api/v1/client/events", json.dumps(EVENT), **{meta: "a\x00b"})
        error = assert_envelope(response, 400, "validation_failed")
        assert error["fields"] == {header: ["Must not contain a NUL character."]}
        assert not Event.objects.exists()

    @pytest.mark.parametrize(
        ("path", "body", "field"),
        [
            (
                "/api/v1/client/customers",
                '{"customerReferenceId": "c\\u0000"}',
                "customerReferenceId",
            ),
            (
                "/api/v1/client/customers",
                '{"customerReferenceId": "c1", "metadata": {"k": ["x", "\\\\\\u0000"]}}',
                "metadata.k.1",
            ),
            (
                "/api/v1/client/customers",
                '{"customerReferenceId": "c1", "metadata": {"k\\u0000": 1}}',
                "metadata.k\\u0000",
            ),
            ("/api/sdk-keys", '{"name": "n\\u0000", "scopes": ["usage.read"]}', "name"),
            (
                "/api/v1/client/entitlements/check",
                '{"customerReferenceId": "\\u0000", "featureKey": "f"}',
                "customerReferenceId",
            ),
            (
                "/api/v1/client/customers",
                '{"customerReferenceId": "c\\ud800"}',
                "customerReferenceId",
            ),
        ],
    )
    def test_in_a_json_string_or_key_is_400_naming_it(self, tenant, path, body, field):
        error = assert_envelope(post_json(tenant, path, body), 400, "validation_failed")
        assert list(error["fields"]) == [field], error

    def test_an_event_names_the_field_and_a_batch_rejects_only_that_item(self, tenant):
        bad = '{"eventName": "call", "customerReferenceId": "c\\u0000", "featureKey": "chat"}'
        error = assert_envelope(
            post_json(tenant, "/api/v1/client/events", bad), 400, "validation_failed"
        )
        assert "customerReferenceId" in error["fields"]
        good = json.dumps({**EVENT, "idempotencyKey": "good-1", "meta": {"k": "v"}})
        response = post_json(
            tenant, "/api/events/ingest", '{"events": [' + bad + ", " + good + "]}"
        )
        assert response.status_code == 207, response.content
        assert response.json()["accepted"] == 1
        assert response.json()["errors"][0]["index"] == 0
        assert Event.objects.count() == 1

    def test_an_escaped_backslash_before_u0000_is_no_nul(self, tenant):
        body = '{"customerReferenceId": "c\\\\u0000"}'
        response = post_json(tenant, "/api/v1/client/customers", body)
        assert response.status_code == 201, response.content
        assert response.json()["customerReferenceId"] == "c\\u0000"
        pair = '{"customerReferenceId": "c\\ud83d\\ude00"}'
        assert post_json(tenant, "/api/v1/client/customers", pair).status_code == 201

    def test_in_a_forged_cursor_is_400(self, tenant):
        cursor = base64.urlsafe_b64encode(b'["2026-01-01T00:00:00Z", "\\u0000"]').decode()
        error = assert_envelope(
            tenant.api().get(f"/api/sdk-keys?cursor={cursor}"), 400, "validation_failed"
        )
        assert "cursor" in error["fields"]
        deep = base64.urlsafe_b64encode(DEEP.encode()).decode()
        assert_envelope(tenant.api().get(f"/api/customers?cursor={deep}"), 400, "validation_failed")

    def test_the_entitlement_checks_fast_path_defers_to_the_400(self, tenant):
        body = b'{"customerReferenceId": "nobody", "featureKey": "f"}'
        headers = {"Authorization": f"Bearer {tenant.sk_test}", "Content-Type": "application/json"}
        check = "/api/v1/client/entitlements/check"
        status, _, answer = wsgi_call(
            check, method="POST", headers=headers, body=body, query="x=%00"
        )
        assert status == 400, answer
        assert json.loads(answer)["error"]["code"] == "validation_failed"
        nul = b'{"customerReferenceId": "\\u0000", "featureKey": "f"}'
        status, _, answer = wsgi_call(check, method="POST", headers=headers, body=nul)
        assert status == 400, answer
        assert json.loads(answer)["error"]["fields"] == {
            "customerReferenceId": ["Must not contain a NUL character."]
        }
        status, _, answer = wsgi_call(check, method="POST", headers=headers, body=DEEP.encode())
        assert status == 400, answer
        assert json.loads(answer)["error"]["code"] == "malformed_body"


class TestDepth:
    @pytest.mark.parametrize(
        "path",
        [
            "/api/v1/client/events",
            "/api/events/ingest",
            "/api/v1/client/entitlements/check",
            "/api/v1/client/customers",
            "/api/sdk-keys",
        ],
    )
    def test_ten_thousand_levels_is_400_on_every_json_endpoint(self, tenant, path, caplog):
        error = assert_envelope(post_json(tenant, path, DEEP), 400, "malformed_body")
        assert "deeper than 64 levels" in error["message"]
        assert not [r for r in caplog.records if r.levelname == "ERROR"]  # no traceback logged

    def test_the_documented_depth_is_the_limit(self, settings):
        assert settings.JSON_MAX_DEPTH == 64
        assert loads("[" * 64 + "]" * 64) is not None
        with pytest.raises(UnsafeJSON):
            loads("[" * 65 + "]" * 65)
        with pytest.raises(UnsafeJSON):
            loads('{"a": ' * 65 + "1" + "}" * 65)
        wide = {"events": [{"meta": {"a": [1, 2, {"b": []}]}} for _ in range(100)]}
        assert loads(json.dumps(wide)) == wide  # many brackets, shallow

    def test_events_bound_depth_in_their_own_validation(self, tenant):
        """Event ingestion skips the parser's walk (validation.py bounds meta at 32
        levels): a deep item is that item's error, the others are recorded."""
        deep = "[" * 500 + "]" * 500
        bad = (
            json.dumps({**EVENT, "idempotencyKey": "deep"})[:-1] + ', "meta": {"a": ' + deep + "}}"
        )
        good = json.dumps({**EVENT, "idempotencyKey": "fine"})
        response = post_json(
            tenant, "/api/events/ingest", '{"events": [' + bad + ", " + good + "]}"
        )
        assert response.status_code == 207, response.content
        assert response.json()["errors"][0]["fields"]["meta"]
        odd = json.dumps(EVENT)[:-1] + ', "eventName": ' + deep + "}"
        error = assert_envelope(
            post_json(tenant, "/api/v1/client/events", odd), 400, "validation_failed"
        )
        assert "eventName" in error["fields"]
        assert Event.objects.count() == 1

    def test_a_deep_meta_inside_the_limit_is_the_events_own_400(self, tenant):
        # 40 levels of meta: past the event's own meta limit (32), within the body's (64).
        meta = '{"a": ' * 40 + "1" + "}" * 40
        body = json.dumps(EVENT)[:-1] + ', "meta": ' + meta + "}"
        error = assert_envelope(
            post_json(tenant, "/api/v1/client/events", body), 400, "validation_failed"
        )
        assert "meta" in error["fields"]


class TestBodySize:
    def test_a_single_event_over_one_mib_is_413_unread(self, tenant):
        body = json.dumps({**EVENT, "meta": {"pad": "x" * (30 * 1024 * 1024)}})
        error = assert_envelope(
            post_json(tenant, "/api/v1/client/events", body), 413, "payload_too_large"
        )
        assert "1048576 bytes" in error["message"]
        assert not Event.objects.exists()

    def test_the_limit_is_per_path(self, tenant):
        padded = {**EVENT, "meta": {"pad": "x" * 1000}}
        batch = json.dumps({"events": [{**padded, "customerReferenceId": "c"}] * 1})
        over_a_mib = batch[:-2] + " " * (1024 * 1024) + "]}"  # 1 MiB of whitespace: valid JSON
        response = post_json(tenant, "/api/events/ingest", over_a_mib)
        assert response.status_code == 200, response.content
        assert response.json()["accepted"] == 1
        over = '{"events": []' + " " * (20 * 1024 * 1024) + "}"
        assert_envelope(post_json(tenant, "/api/events/ingest", over), 413, "payload_too_large")
        assert_envelope(
            post_json(tenant, "/api/v1/client/customers", over_a_mib), 413, "payload_too_large"
        )

    def test_a_large_batch_with_an_idempotency_key_is_read(self, tenant):
        """The idempotency middleware hashes request.body, which Django caps at
        DATA_UPLOAD_MAX_MEMORY_SIZE: that cap admits the batch's own limit."""
        events = [
            {**EVENT, "idempotencyKey": f"e{i}", "meta": {"pad": "x" * 8000}} for i in range(400)
        ]
        body = json.dumps({"events": events})
        assert len(body) > 2_621_440  # Django's default cap
        response = post_json(tenant, "/api/events/ingest", body, HTTP_IDEMPOTENCY_KEY="big-1")
        assert response.status_code == 200, response.content[:300]
        assert response.json()["accepted"] == 400

    def test_a_bad_content_length_is_400(self, tenant):
        for length in ("ten", "-1"):
            response = tenant.api().generic(
                "POST", "/api/v1/client/events", b"{}", CONTENT_LENGTH=length
            )
            assert_envelope(response, 400, "malformed_body")


def _chunked_post(port: int, path: str, auth: str, body: bytes) -> tuple[int, bytes]:
    """A POST with a chunked body, sent in one write (a server that answers before
    reading the body must not break the sending)."""
    step = 64 * 1024
    chunks = b"".join(
        f"{len(body[i : i + step]):x}\r\n".encode() + body[i : i + step] + b"\r\n"
        for i in range(0, len(body), step)
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: testserver\r\nAuthorization: Bearer {auth}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode() + chunks + b"0\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


class TestChunked:
    def test_djangos_server_refuses_it_with_411(self, live_server, transactional_db):
        """Django's development/test server hands the raw chunked stream on: refused."""
        tenant = make_tenant("Chunky")
        port = int(live_server.url.rsplit(":", 1)[1])
        body = json.dumps({"events": [EVENT]}).encode()
        status, answer = _chunked_post(port, "/api/events/ingest", tenant.sk_test, body)
        assert status == 411, answer
        assert json.loads(answer)["error"]["code"] == "length_required"
        assert not Event.objects.exists()

    @pytest.mark.django_db(transaction=True)
    def test_granian_de_chunks_it_and_the_body_is_read(self):
        """The Procfile's web server (granian) marks its input terminated: the chunked body
        is read, up to the path's limit."""
        tenant = make_tenant("Granian chunks")
        events = [{**EVENT, "idempotencyKey": f"g{i}"} for i in range(3)]
        body = json.dumps({"events": events}).encode()
        with web_server() as port:
            status, answer = _chunked_post(port, "/api/events/ingest", tenant.sk_test, body)
            assert status == 200, answer
            assert json.loads(answer)["accepted"] == 3
            single = json.dumps({**EVENT, "meta": {"pad": "x" * (2 * 1024 * 1024)}}).encode()
            status, answer = _chunked_post(port, "/api/v1/client/events", tenant.sk_test, single)
            assert status == 413, answer
            assert json.loads(answer)["error"]["code"] == "payload_too_large"
            status, answer = _chunked_post(
                port, "/api/v1/client/events", tenant.sk_test, json.dumps(EVENT).encode()
            )
            assert status == 201, answer
        assert Event.objects.count() == 4


class TestUnknownRoutes:
    @pytest.mark.parametrize("debug", [True, False])
    def test_an_unknown_api_route_is_a_json_404(self, tenant, settings, debug):
        settings.DEBUG = debug
        assert_envelope(tenant.api().get("/api/no-such-thing"), 404, "not_found")
        assert_envelope(Client().post("/api/v2/nothing", {}), 404, "not_found")
        assert_envelope(Client().get("/api/docs/nothing"), 404, "not_found")

    @pytest.mark.parametrize("debug", [True, False])
    def test_a_wrong_method_is_a_json_405(self, tenant, settings, debug):
        settings.DEBUG = debug
        response = tenant.api().put("/api/sdk-keys/me", {}, format="json")
        assert_envelope(response, 405, "method_not_allowed")
        assert "GET" in response["Allow"]

    @pytest.mark.parametrize("debug", [True, False])
    def test_a_bad_host_is_a_json_400(self, settings, debug):
        settings.DEBUG = debug
        response = Client(HTTP_HOST="evil.example").get("/api/sdk-keys/me")
        assert_envelope(response, 400, "bad_request")

    def test_any_non_json_error_answer_becomes_the_envelope(self, rf):
        """Answers Django makes outside DRF (the technical 500 page under DEBUG, a
        function view's bare 405) keep their status and headers, in the envelope."""
        from django.http import HttpResponseNotAllowed, HttpResponseServerError

        from apps.core.api.errorpages import ApiErrorEnvelopeMiddleware

        page = ApiErrorEnvelopeMiddleware(lambda r: HttpResponseServerError("<html>Trace"))
        response = page(rf.get("/api/anything"))
        assert response.status_code == 500
        assert json.loads(response.content)["error"]["code"] == "internal_error"
        bare = ApiErrorEnvelopeMiddleware(lambda r: HttpResponseNotAllowed(["GET"]))
        response = bare(rf.post("/api/anything"))
        assert response.status_code == 405 and response["Allow"] == "GET"
        assert json.loads(response.content)["error"]["message"] == "POST is not allowed here."
        html = ApiErrorEnvelopeMiddleware(lambda r: HttpResponseServerError("<html>"))
        assert html(rf.get("/dashboard/")).content == b"<html>"  # pages keep their pages


class TestPages:
    def test_nul_in_a_dashboard_query_string_is_dropped(self, web, tenant):
        """Pages fall back on nonsense parameters rather than fail: the NULs are dropped
        before any view sees them (an unguarded filter would reach PostgreSQL)."""
        for path in (
            "/dashboard/customers/?q=%00",
            "/dashboard/events/?customerReferenceId=%00&model=%00&traceId=a%00",
            "/dashboard/models/?q=%00&sort=cost",
            "/dashboard/subscriptions/?status=%00",
            "/dashboard/invoices/?status=%00",
            "/dashboard/keys/?q=%00",
            "/dashboard/settings/model-prices/?provider=%00&model=%00",
            "/dashboard/subscriptions/?q=%00",
            "/accounts/login/?next=%00",
        ):
            response = web.get(path)
            assert response.status_code in (200, 302), path  # login: signed in already
            assert "\x00" not in response.wsgi_request.GET.urlencode()

    def test_nul_in_a_page_path_is_a_400_page(self, web):
        for path in ("/dashboard/customers/a%00b", "/dashboard/traces/%00"):
            response = web.get(path)
            assert response.status_code == 400, path
            assert b'data-testid="error-page"' in response.content
            assert response["Content-Type"].startswith("text/html")

    def test_an_unknown_customer_is_a_404_inside_the_dashboard(self, web, settings):
        settings.DEBUG = False
        response = web.get("/dashboard/customers/nobody-here")
        assert response.status_code == 404
        assert b'data-testid="error-page"' in response.content
        assert b'aria-label="Sections"' in response.content  # the dashboard's frame
        trace = web.get("/dashboard/traces/no-such-trace")
        assert trace.status_code == 404
        assert b'aria-label="Sections"' in trace.content

    def test_an_unknown_page_is_the_products_404(self, client, settings):
        settings.DEBUG = False
        response = client.get("/no-such-page")
        assert response.status_code == 404
        assert b'data-testid="error-page"' in response.content
        assert b"tanso.css" in response.content

    def test_the_500_page_renders_without_a_request(self):
        from django.template.loader import render_to_string

        html = render_to_string("500.html")
        assert "Something went wrong" in html and "tanso.css" in html

    def test_a_page_body_over_its_limit_is_413(self, web):
        response = web.generic(
            "POST", "/dashboard/keys/new/", b"x" * (2_621_440 + 1), content_type="text/plain"
        )
        assert response.status_code == 413
