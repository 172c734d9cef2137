"""docs/api.md's scope table ("What each key may call") is the tested truth: every route
under /api/ (found by walking the URL resolver, so a new route without a row fails here)
is called by every kind of key, and answers 403 exactly where the table says."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from apps.apikeys import scopes as S
from apps.apikeys.idempotency import APIView
from tanso.chains import PAGES_UNDER_API
from tests.conftest import make_tenant
from tests.factories import make_customer, make_key

pytestmark = pytest.mark.django_db

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ROW = re.compile(r"^\| (GET|POST|PUT|PATCH|DELETE) \| `(/api/[^`]*)` \| ([^|]+) \| ([^|]+) \|$")
OWN_CUSTOMER = "cus_own"
# Routes whose path names the customer literally: GET .../entitlements/check lists the
# entitlements of a customer whose reference is "check".
LITERAL_CUSTOMER = {("GET", "/api/v1/client/entitlements/check"): "check"}


def documented() -> dict[tuple[str, str], tuple[str, str]]:
    """(method, route) -> (what obs_ keys need, what ck_ keys need), from docs/api.md."""
    rows: dict[tuple[str, str], tuple[str, str]] = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line.strip())
        if match:
            method, route, obs, ck = (part.strip().strip("`") for part in match.groups())
            assert (method, route) not in rows, f"two rows for {method} {route}"
            rows[(method, route)] = (obs, ck)
    return rows


def _walk(patterns: list[Any], prefix: str = "") -> list[tuple[str, URLPattern]]:
    found: list[tuple[str, URLPattern]] = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            found += _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            found.append((prefix + str(pattern.pattern), pattern))
    return found


def routes() -> list[tuple[str, str, type]]:
    """(method, "/api/..." with {params}, view class) for every API route of the resolver."""
    out = []
    for route, pattern in _walk(get_resolver().url_patterns):
        path = "/" + route
        if not path.startswith("/api/") or path.startswith(PAGES_UNDER_API):
            continue
        view = pattern.callback.cls  # type: ignore[attr-defined]
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", path)
        out += [(m, path, view) for m in METHODS if hasattr(view, m.lower())]
    return out


ROUTES = routes()
KINDS = ("sk", "obs_with_scope", "obs_without_scope", "ck_read", "ck_purchase", "other_env_sk")


def test_the_table_has_one_row_per_route_and_method():
    table = documented()
    actual = {(method, path) for method, path, _ in ROUTES}
    assert sorted(actual - table.keys()) == [], "routes missing from docs/api.md's table"
    assert sorted(table.keys() - actual) == [], "rows of docs/api.md naming no route"


def test_every_api_view_honours_idempotency_after_authorization():
    plain = sorted({view.__name__ for _, _, view in ROUTES if not issubclass(view, APIView)})
    assert plain == [], "API views must derive from apps.apikeys.idempotency.APIView"


def _url(path: str, own: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "reference_id":
            return own  # a ck_ key's own customer: only the scope rule can refuse
        if name in {"feature_key", "plan_ref"}:
            return "nothing-here"
        return str(uuid.uuid4())

    return re.sub(r"\{(\w+)\}", value, path)


def _key(kind: str, needed: str, own: str) -> str:
    tenant = make_tenant()
    customer = make_customer(tenant.test, own)
    scoped = needed in S.ALL_SCOPES
    if kind == "sk":
        return tenant.sk_test
    if kind == "other_env_sk":
        make_customer(tenant.live, own)
        return tenant.sk_live
    if kind == "obs_with_scope":
        return make_key(tenant.test, "obs", scopes=[needed if scoped else S.PROXY_CHAT]).plaintext
    if kind == "obs_without_scope":
        # Every scope but the one needed (admin included: it implies no other scope).
        others = [s for s in S.ALL_SCOPES if s != needed]
        return make_key(tenant.test, "obs", scopes=others).plaintext
    scope = S.CUSTOMER_READ if kind == "ck_read" else S.CUSTOMER_PURCHASE
    return make_key(tenant.test, "ck", customer=customer, scopes=[scope]).plaintext


def _expected(kind: str, obs: str, ck: str) -> tuple[int, str] | None:
    """(403, code) where the table refuses this kind of key, None where it allows it."""
    if obs == "public":
        return None
    if kind == "obs_without_scope" and obs in S.ALL_SCOPES:
        return (403, "scope_denied")
    if kind in {"ck_read", "ck_purchase"}:
        held = S.CUSTOMER_READ if kind == "ck_read" else S.CUSTOMER_PURCHASE
        if ck == "no":
            return (403, "forbidden")
        assert ck in S.CUSTOMER_SCOPES, f"unknown ck_ rule {ck!r}"
        return None if ck == held else (403, "scope_denied")
    assert obs == "any key" or obs in S.ALL_SCOPES, f"unknown obs_ rule {obs!r}"
    return None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("method", "path"), [(m, p) for m, p, _ in ROUTES])
def test_every_route_answers_each_kind_of_key_as_the_table_says(method, path, kind):
    row = documented().get((method, path))
    assert row is not None, f"{method} {path} has no row in docs/api.md's scope table"
    obs, ck = row
    own = LITERAL_CUSTOMER.get((method, path), OWN_CUSTOMER)
    client_key = _key(kind, obs, own)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {client_key}")
    url = _url(path, own)
    # Routes that take the customer from the query or the body get the ck_ key's own.
    if method == "GET":
        response = api.get(url, {"customerReferenceId": own})
    elif method == "DELETE":
        response = api.delete(url)
    else:
        response = api.generic(
            method,
            url,
            json.dumps({"customerReferenceId": own}),
            content_type="application/json",
        )
    expected = _expected(kind, obs, ck)
    assert response.status_code < 500, response.content
    if expected is None:
        assert response.status_code not in (401, 403), response.content
    else:
        status, code = expected
        assert response.status_code == status, response.content
        error = response.json()["error"]
        assert error["code"] == code, error
        if code == "scope_denied":
            wanted = ck if kind.startswith("ck_") else obs
            assert error["requiredScope"] == wanted
