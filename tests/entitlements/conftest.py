"""Entitlements fixtures: a Platform tenant (plans, subscriptions, credit pools made through
the services), event and check helpers that run the commit hooks, and a dead Redis."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from apps.accounts.audit import Actor
from apps.core import memo
from apps.core.redis import get_redis
from apps.credits.models import CreditModel
from apps.credits.services import credit_grant, credit_model_create, credit_pool_ensure
from apps.customers.models import Customer
from apps.entitlements import counters
from apps.plans.models import Plan
from apps.plans.pricing import PricingModel, Rule, Tier
from apps.plans.services import RuleSpec
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_create
from tests.plans.helpers import make_plan

D = Decimal
SYSTEM = Actor.system()
DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat()


@pytest.fixture(autouse=True)
def _fresh_process_caches() -> Iterator[None]:
    """Rows roll back between tests; the per-process caches must forget them too."""
    memo.clear_all()
    yield
    memo.clear_all()


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
    enabled: bool = True,
) -> RuleSpec:
    """A rule spec; ``tiers`` as ``[(upTo or None, price, flat fee)]``."""
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
        is_enabled=enabled,
        credit_denomination=credits,
        credits_per_unit=D(per_unit) if credits else None,
    )


@dataclasses.dataclass
class Platform:
    tenant: Any
    capture: Any

    @property
    def env(self) -> Any:
        return self.tenant.test

    def api(self, key: str | None = None) -> Any:
        return self.tenant.api(key)

    def plan(
        self, key: str = "pro", features: dict[str, RuleSpec] | None = None, **kw: Any
    ) -> Plan:
        with self.capture(execute=True):
            return make_plan(self.env, key, features=features, **kw)

    def customer(self, reference_id: str = "cus_1") -> Customer:
        return Customer.objects.get_or_create(environment=self.env, reference_id=reference_id)[0]

    def subscribe(
        self, plan: Plan, reference_id: str = "cus_1", *, days_ago: float = 2, **kw: Any
    ) -> Subscription:
        """Subscribe (by default two days ago: past the moment counters may be built)."""
        with self.capture(execute=True):
            return subscription_create(
                environment=self.env,
                customer=self.customer(reference_id),
                plan=plan,
                now=timezone.now() - dt.timedelta(days=days_ago),
                actor=SYSTEM,
                **kw,
            )

    def pool(
        self, reference_id: str = "cus_1", denomination: str = "AI_CREDITS", *, hard: bool = True
    ) -> Any:
        model = CreditModel.objects.filter(environment=self.env, denomination=denomination).first()
        if model is None:
            model = credit_model_create(
                environment=self.env,
                name=denomination,
                denomination=denomination,
                hard_limit=hard,
                actor=SYSTEM,
            )
        return credit_pool_ensure(
            environment=self.env, customer=self.customer(reference_id), credit_model=model
        )

    def grant(self, pool: Any, amount: str) -> None:
        credit_grant(pool=pool, amount=D(amount), grant_type="manual", actor=SYSTEM)

    def event(
        self,
        feature: str = "tokens",
        units: Any = 1,
        ref: str = "cus_1",
        key: str | None = None,
        **kw: Any,
    ) -> Any:
        body = {"eventName": "call", "customerReferenceId": ref, "featureKey": feature}
        body["usageUnits"] = str(units)
        body["costAmount"] = kw.pop("cost", "0.001")
        body.update(kw)
        with self.capture(execute=True):
            return self.api(key).post("/api/v1/client/events", body, format="json")

    def batch(self, events: list[dict[str, Any]], key: str | None = None) -> Any:
        with self.capture(execute=True):
            return self.api(key).post("/api/events/ingest", {"events": events}, format="json")

    def check(
        self, feature: str = "tokens", ref: str = "cus_1", key: str | None = None, **kw: Any
    ) -> Any:
        body = {"customerReferenceId": ref, "featureKey": feature, **kw}
        with self.capture(execute=True):
            response = self.api(key).post("/api/v1/client/entitlements/check", body, format="json")
        assert response.status_code == 200, response.content
        return response.json()

    def counter(self, feature: str = "tokens", ref: str = "cus_1") -> dict[bytes, bytes]:
        from apps.features.models import Feature

        customer = self.customer(ref)
        feature_id = Feature.objects.get(environment=self.env, key=feature).pk
        return get_redis().hgetall(counters.counter_key(self.env.pk, customer.pk, feature_id))


def batch_event(
    feature: str = "tokens", units: Any = 1, ref: str = "cus_1", **kw: Any
) -> dict[str, Any]:
    body = {
        "eventName": "call",
        "customerReferenceId": ref,
        "featureKey": feature,
        "usageUnits": str(units),
        "costAmount": kw.pop("cost", "0.001"),
    }
    body.update(kw)
    return body


@pytest.fixture
def platform(tenant: Any, django_capture_on_commit_callbacks: Any) -> Platform:
    return Platform(tenant, django_capture_on_commit_callbacks)


@pytest.fixture
def dead_redis() -> Iterator[None]:
    """Point the app at a Redis nobody listens on (the shared server keeps running)."""
    with override_settings(REDIS_URL=DEAD_REDIS):
        get_redis.cache_clear()
        yield
    get_redis.cache_clear()
