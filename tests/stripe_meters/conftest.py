"""Stripe-driven fixtures: a tenant whose test environment is connected to the Stripe peer
(localstripe, ``tests/stripe_peer``) with a key of its own and set to Stripe-driven mode;
plans, subscriptions and events made through the real services and API; what the peer
received, read from its test route."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from django.utils import timezone

from apps.accounts.audit import Actor
from apps.accounts.models import Environment
from apps.billing.services import billing_settings_update
from apps.core import memo
from apps.credits.models import CreditModel
from apps.credits.services import credit_grant, credit_model_create, credit_pool_ensure
from apps.customers.models import Customer
from apps.plans.models import Plan
from apps.plans.pricing import PricingModel, Rule, Tier
from apps.plans.services import RuleSpec
from apps.stripe_meters.services import (
    meter_events_send,
    stripe_plan_provision,
    stripe_subscription_provision,
)
from apps.stripe_sync.services import stripe_connect
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_create
from tests.billing.helpers import _small_catalog
from tests.plans.helpers import make_plan
from tests.stripe_peer.fixtures import StripePeer

D = Decimal
SYSTEM = Actor.system()


def rule(
    model: str = "per_unit",
    *,
    price: str | None = None,
    tiers: list[tuple[str | None, str, str]] | None = None,
    package: int | None = None,
    cap: str | None = None,
    overage: str | None = None,
    reset: str = "billing_period",
    credits: str = "",
    per_unit: str | None = None,
) -> RuleSpec:
    """A rule spec; ``tiers`` as ``[(upTo or None, price per unit, flat fee)]``."""
    return RuleSpec(
        rule=Rule(
            model=PricingModel(model),
            unit_price=D(price) if price is not None else None,
            package_size=package,
            tiers=tuple(
                Tier(D(up) if up is not None else None, D(p), D(fee)) for up, p, fee in tiers or []
            ),
            max_usage=D(cap) if cap is not None else None,
            overage_unit_price=D(overage) if overage is not None else None,
        ),
        reset_interval=reset,
        credit_denomination=credits,
        credits_per_unit=D(per_unit) if credits and per_unit else None,
    )


def peer_get(peer: StripePeer, path: str, **query: str) -> Any:
    response = requests.get(
        peer.url + path,
        params=query,
        headers={"Authorization": "Bearer sk_test_peer"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def received(peer: StripePeer, **query: str) -> list[dict[str, Any]]:
    """Every meter event the peer accepted (oldest first), optionally filtered by
    ``event_name`` or ``customer``."""
    return peer_get(peer, "/_config/meter_events", **query)["data"]


def duplicates(peer: StripePeer) -> list[dict[str, Any]]:
    """Meter events the peer refused because it had their identifier."""
    return peer_get(peer, "/_config/meter_events")["duplicates"]


@dataclasses.dataclass
class Driven:
    """A tenant environment in Stripe-driven mode, connected to the peer."""

    tenant: Any
    peer: StripePeer
    key: str
    capture: Any
    env: Environment

    @property
    def stripe(self) -> Any:
        """The peer seen as the tenant's Stripe dashboard (same account key)."""
        return self.peer.client(self.key)

    def api(self) -> Any:
        key = self.tenant.sk_test if self.env == self.tenant.test else self.tenant.sk_live
        return self.tenant.api(key)

    def plan(
        self, key: str = "pro", features: dict[str, RuleSpec] | None = None, **kw: Any
    ) -> Plan:
        with self.capture(execute=False):
            return make_plan(self.env, key, features=features, **kw)

    def customer(self, reference_id: str = "cus_1", **fields: Any) -> Customer:
        return Customer.objects.get_or_create(
            environment=self.env, reference_id=reference_id, defaults=fields
        )[0]

    def subscribe(self, plan: Plan, reference_id: str = "cus_1", **kw: Any) -> Subscription:
        with self.capture(execute=False):
            return subscription_create(
                environment=self.env,
                customer=self.customer(reference_id),
                plan=plan,
                now=timezone.now(),
                actor=SYSTEM,
                **kw,
            )

    def provision(self, subscription: Subscription) -> Any:
        subscription = Subscription.objects.select_related("customer", "plan").get(
            pk=subscription.pk
        )
        return stripe_subscription_provision(subscription=subscription)

    def provision_plan(self, plan: Plan) -> Any:
        return stripe_plan_provision(plan=plan)

    def pool(self, reference_id: str = "cus_1", *, hard: bool = True, grant: str = "0") -> Any:
        model = CreditModel.objects.filter(environment=self.env, denomination="AI").first()
        if model is None:
            model = credit_model_create(
                environment=self.env, name="AI", denomination="AI", hard_limit=hard, actor=SYSTEM
            )
        pool = credit_pool_ensure(
            environment=self.env, customer=self.customer(reference_id), credit_model=model
        )
        if D(grant) > 0:
            credit_grant(pool=pool, amount=D(grant), grant_type="manual", actor=SYSTEM)
        return pool

    def event(self, feature: str = "tokens", units: Any = 1, ref: str = "cus_1", **kw: Any) -> Any:
        body = {
            "eventName": "call",
            "customerReferenceId": ref,
            "featureKey": feature,
            "usageUnits": str(units),
            "costAmount": kw.pop("cost", "0.001"),
            **kw,
        }
        with self.capture(execute=False):
            response = self.api().post("/api/v1/client/events", body, format="json")
        assert response.status_code in (200, 201), response.content
        return response.json()

    def batch(self, events: list[dict[str, Any]]) -> Any:
        with self.capture(execute=False):
            response = self.api().post("/api/events/ingest", {"events": events}, format="json")
        assert response.status_code in (200, 201, 207), response.content
        return response.json()

    def send(self, **kw: Any) -> Any:
        return meter_events_send(environment_id=self.env.pk, **kw)


def batch_event(feature: str = "tokens", units: Any = 1, ref: str = "cus_1", **kw: Any) -> dict:
    return {
        "eventName": "call",
        "customerReferenceId": ref,
        "featureKey": feature,
        "usageUnits": str(units),
        "costAmount": kw.pop("cost", "0.001"),
        **kw,
    }


def _clear_caches() -> None:
    memo.clear_all()


@pytest.fixture(autouse=True)
def _fresh_process_caches() -> Iterator[None]:
    """Rows roll back between tests; the per-process caches must forget them too."""
    _clear_caches()
    yield
    _clear_caches()


def make_driven(
    tenant: Any,
    peer: StripePeer,
    capture: Any,
    *,
    kind: str = "test",
    mode: str = "stripe_driven",
) -> Driven:
    env = tenant.test if kind == "test" else tenant.live
    key = peer.new_key(kind)
    with capture(execute=False):
        stripe_connect(environment=env, api_key=key, actor=SYSTEM)
        billing_settings_update(environment=env, stripe_mode=mode)
    _small_catalog()
    return Driven(tenant, peer, key, capture, env)


@pytest.fixture
def driven(tenant: Any, stripe_peer: StripePeer, django_capture_on_commit_callbacks: Any) -> Driven:
    stripe_peer.flush()
    return make_driven(tenant, stripe_peer, django_capture_on_commit_callbacks)
