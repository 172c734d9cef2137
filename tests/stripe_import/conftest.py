"""Stripe import fixtures: a flushed Stripe peer (localstripe), environments in
``import`` mode with a key connected through the real API, Stripe objects seeded
through the official SDK, and a helper that runs an import on the real worker."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
import stripe

from tests.conftest import Tenant
from tests.stripe_peer.fixtures import StripePeer, connect_environment

START = "/api/v1/client/stripe/import/start"
STATUS = "/api/v1/client/stripe/import/status/{}"
SUBSCRIPTIONS = "/api/v1/client/stripe/import/subscriptions"
JOBS = "/api/v1/client/stripe/import/jobs"


@pytest.fixture
def peer(stripe_peer: StripePeer, settings: Any) -> StripePeer:
    """The session's peer, emptied; its webhooks go nowhere (the import needs none)."""
    stripe_peer.flush()
    settings.STRIPE_WEBHOOK_BASE_URL = "http://127.0.0.1:9"
    return stripe_peer


@pytest.fixture
def ready(tenant: Tenant, peer: StripePeer) -> Tenant:
    """The tenant's test environment may import: connected (through the service) and in
    import mode (no worker: jobs stay pending)."""
    connect_environment(tenant.test, peer)
    set_mode(tenant, "IMPORT")
    return tenant


def api_key(tenant: Tenant, env: str = "test") -> str:
    return tenant.sk_test if env == "test" else tenant.sk_live


def set_mode(tenant: Tenant, mode: str, env: str = "test") -> None:
    response = tenant.api(api_key(tenant, env)).patch(
        "/api/v1/client/billing/settings", {"stripeMode": mode}, format="json"
    )
    assert response.status_code == 200, response.content


def connect(tenant: Tenant, peer: StripePeer, env: str = "test") -> str:
    """Connect a fresh Stripe key to the environment (through the API); returns it."""
    key = peer.new_key(env)
    response = tenant.api(api_key(tenant, env)).post(
        "/api/v1/client/stripe/connect", {"stripeSecretKey": key}, format="json"
    )
    assert response.status_code == 201, response.content
    return key


def importing(tenant: Tenant, peer: StripePeer, env: str = "test") -> stripe.StripeClient:
    """The environment in import mode with a key connected; the Stripe account's client
    (the tests' stand-in for the Stripe dashboard)."""
    key = connect(tenant, peer, env)
    set_mode(tenant, "IMPORT", env)
    return peer.client(key)


def ts(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, tzinfo=dt.UTC).timestamp())


def stripe_customer(client: stripe.StripeClient, **params: Any) -> Any:
    """A customer who can pay (so its subscriptions become active)."""
    return client.v1.customers.create(
        params={
            "payment_method": "pm_card_visa",
            "invoice_settings": {"default_payment_method": "pm_card_visa"},
            **params,
        }
    )


def monthly_plan(client: stripe.StripeClient, amount: int, currency: str = "usd") -> Any:
    product = client.v1.products.create(params={"name": f"Plan {amount} {currency}"})
    return client.v1.plans.create(
        params={"amount": amount, "currency": currency, "interval": "month", "product": product.id}
    )


def subscribe(
    client: stripe.StripeClient, customer: Any, plan: Any, *, quantity: int = 1, start: int
) -> Any:
    return client.v1.subscriptions.create(
        params={
            "customer": customer.id,
            "items": [{"plan": plan.id, "quantity": quantity}],
            "backdate_start_date": start,
        }
    )


def start_import(tenant: Tenant, env: str = "test") -> Any:
    return tenant.api(api_key(tenant, env)).post(START, format="json")


def wait_done(tenant: Tenant, job_id: str, env: str = "test", timeout: float = 60) -> dict:
    """Poll the job's status (the API) until it is completed or failed."""
    deadline = time.monotonic() + timeout
    while True:
        response = tenant.api(api_key(tenant, env)).get(STATUS.format(job_id))
        assert response.status_code == 200, response.content
        body = response.json()
        if body["status"] in {"COMPLETED", "FAILED"}:
            return body
        assert time.monotonic() < deadline, f"import still {body['status']}: {body}"
        time.sleep(0.1)


def run_import(tenant: Tenant, env: str = "test") -> dict:
    response = start_import(tenant, env)
    assert response.status_code == 202, response.content
    return wait_done(tenant, response.json()["jobId"], env)
