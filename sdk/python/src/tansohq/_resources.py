"""The API's resources, written once for both clients.

Each method builds one request and hands it to the client's ``_call``, which is
synchronous in :class:`tansohq.Tanso` (``R`` is the JSON answer) and a coroutine in
:class:`tansohq.AsyncTanso` (``R`` is an awaitable of it). Keyword arguments are
snake_case and become the API's camelCase fields; ``None`` leaves a field out.
Lists answer ``{"items": [...], "nextCursor": ..., "hasMore": ...}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, TypeVar
from urllib.parse import quote

R = TypeVar("R")
JSON = dict[str, Any]
Amount = Decimal | int | str
Caller = Callable[..., R]


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def fields(**kwargs: Any) -> JSON:
    """camelCase JSON fields from snake_case keyword arguments, without the ``None`` ones."""
    return {camel(name): _value(value) for name, value in kwargs.items() if value is not None}


def seg(value: str) -> str:
    """One path segment, escaped (a customer reference may hold spaces or ``@``)."""
    return quote(str(value), safe="")


class Resource(Generic[R]):
    def __init__(self, call: Caller[R]) -> None:
        self._call = call


class Events(Resource[R]):
    def create(self, event: Mapping[str, Any], *, idempotency_key: str | None = None) -> R:
        """Record one event now (``POST /api/v1/client/events``); 409 ``duplicate_event``
        when its ``idempotencyKey`` was recorded before. Prefer ``Tanso.track`` in request
        paths: it never blocks the caller."""
        return self._call(
            "POST", "/api/v1/client/events", body=dict(event), idempotency_key=idempotency_key
        )

    def ingest(
        self, events: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> R:
        """Record 1 to 1000 events; the answer says, item by item, accepted, duplicate or
        rejected (``POST /api/events/ingest``)."""
        return self._call(
            "POST",
            "/api/events/ingest",
            body={"events": [dict(event) for event in events]},
            idempotency_key=idempotency_key,
        )

    def list(self, **filters: Any) -> R:
        """Events, newest first (filters as in ``GET /api/events``: customer, feature, model,
        trace, from, to, limit, cursor)."""
        return self._call("GET", "/api/events", params=filters)


class Customers(Resource[R]):
    def create(
        self,
        *,
        customer_reference_id: str,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> R:
        body = fields(
            customer_reference_id=customer_reference_id,
            email=email,
            first_name=first_name,
            last_name=last_name,
            metadata=metadata,
            **extra,
        )
        return self._call("POST", "/api/v1/client/customers", body=body)

    def retrieve(self, reference_id: str) -> R:
        return self._call("GET", f"/api/v1/client/customers/{seg(reference_id)}")

    def update(self, reference_id: str, **changes: Any) -> R:
        return self._call(
            "PATCH", f"/api/v1/client/customers/{seg(reference_id)}", body=fields(**changes)
        )

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> R:
        return self._call(
            "GET", "/api/v1/client/customers", params={"limit": limit, "cursor": cursor}
        )


class Features(Resource[R]):
    def create(self, *, key: str, name: str, **extra: Any) -> R:
        return self._call(
            "POST", "/api/v1/client/features", body=fields(key=key, name=name, **extra)
        )

    def retrieve(self, feature_key: str) -> R:
        return self._call("GET", f"/api/v1/client/features/{seg(feature_key)}")

    def update(self, feature_key: str, **changes: Any) -> R:
        return self._call(
            "PATCH", f"/api/v1/client/features/{seg(feature_key)}", body=fields(**changes)
        )

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> R:
        return self._call(
            "GET", "/api/v1/client/features", params={"limit": limit, "cursor": cursor}
        )


class Plans(Resource[R]):
    def list(self, *, limit: int | None = None, cursor: str | None = None, **filters: Any) -> R:
        return self._call(
            "GET", "/api/v1/client/plans", params={"limit": limit, "cursor": cursor, **filters}
        )

    def retrieve(self, plan_ref: str) -> R:
        return self._call("GET", f"/api/v1/client/plans/{seg(plan_ref)}")


class Subscriptions(Resource[R]):
    def create(
        self,
        *,
        customer_reference_id: str,
        plan_key: str | None = None,
        plan_id: str | None = None,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> R:
        body = fields(
            customer_reference_id=customer_reference_id, plan_key=plan_key, plan_id=plan_id, **extra
        )
        return self._call(
            "POST", "/api/v1/client/subscriptions", body=body, idempotency_key=idempotency_key
        )

    def retrieve(self, subscription_id: str) -> R:
        return self._call("GET", f"/api/v1/client/subscriptions/{seg(subscription_id)}")

    def list(self, *, limit: int | None = None, cursor: str | None = None, **filters: Any) -> R:
        return self._call(
            "GET",
            "/api/v1/client/subscriptions",
            params={"limit": limit, "cursor": cursor, **filters},
        )

    def list_for_customer(self, reference_id: str) -> R:
        return self._call("GET", f"/api/v1/client/customers/{seg(reference_id)}/subscriptions")

    def change_plan(
        self,
        subscription_id: str,
        *,
        plan_key: str | None = None,
        plan_id: str | None = None,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> R:
        """Upgrades take effect now (prorated), downgrades at the period end."""
        return self._call(
            "POST",
            f"/api/v1/client/subscriptions/{seg(subscription_id)}/plan-change",
            body=fields(plan_key=plan_key, plan_id=plan_id, **extra),
            idempotency_key=idempotency_key,
        )

    def cancel_scheduled_change(self, subscription_id: str) -> R:
        return self._call(
            "DELETE", f"/api/v1/client/subscriptions/{seg(subscription_id)}/plan-change/scheduled"
        )

    def cancel(self, subscription_id: str, *, immediately: bool = False) -> R:
        """At the period end by default; ``immediately=True`` ends it now."""
        mode = "IMMEDIATE" if immediately else "END_OF_PERIOD"
        return self._call(
            "POST",
            f"/api/v1/client/subscriptions/cancellation/{seg(subscription_id)}",
            body={"cancelMode": mode},
        )

    def revert_cancellation(self, subscription_id: str) -> R:
        return self._call(
            "DELETE", f"/api/v1/client/subscriptions/cancellation/{seg(subscription_id)}/scheduled"
        )


class Entitlements(Resource[R]):
    def check(
        self,
        *,
        customer_reference_id: str,
        feature_key: str,
        units: Amount | None = None,
        model: str | None = None,
        reserve: bool | None = None,
        ttl_seconds: int | None = None,
    ) -> R:
        """May this customer use this feature now? ``allowed`` and the reason; with
        ``reserve=True`` the units are held until an event settles them."""
        body = fields(
            customer_reference_id=customer_reference_id,
            feature_key=feature_key,
            units=units,
            model=model,
            reserve=reserve,
            ttl_seconds=ttl_seconds,
        )
        return self._call("POST", "/api/v1/client/entitlements/check", body=body)

    def evaluate(
        self,
        *,
        customer_reference_id: str,
        feature_key: str,
        usage_units: Amount | None = None,
        model: str | None = None,
        **extra: Any,
    ) -> R:
        """The check plus the projected usage, cost and credits of a proposed use."""
        body = fields(customer_reference_id=customer_reference_id, feature_key=feature_key, **extra)
        body["usage"] = fields(usage_units=usage_units, model=model)
        return self._call("POST", "/api/v1/client/entitlements", body=body)

    def list(self, reference_id: str) -> R:
        return self._call("GET", f"/api/v1/client/entitlements/{seg(reference_id)}")

    def retrieve(self, reference_id: str, feature_key: str) -> R:
        return self._call(
            "GET", f"/api/v1/client/entitlements/{seg(reference_id)}/{seg(feature_key)}"
        )

    def release_reservation(self, reservation_id: str) -> R:
        return self._call(
            "POST", f"/api/v1/client/entitlements/reservations/{seg(reservation_id)}/release"
        )


class Credits(Resource[R]):
    def list_pools(self, reference_id: str) -> R:
        return self._call("GET", f"/api/v1/client/credits/{seg(reference_id)}/pools")

    def retrieve_pool(self, reference_id: str, pool_id: str) -> R:
        return self._call("GET", f"/api/v1/client/credits/{seg(reference_id)}/pools/{seg(pool_id)}")

    def list_grants(self, reference_id: str, pool_id: str, **params: Any) -> R:
        path = f"/api/v1/client/credits/{seg(reference_id)}/pools/{seg(pool_id)}/grants"
        return self._call("GET", path, params=params)

    def list_transactions(self, reference_id: str, pool_id: str, **params: Any) -> R:
        path = f"/api/v1/client/credits/{seg(reference_id)}/pools/{seg(pool_id)}/transactions"
        return self._call("GET", path, params=params)

    def grant(
        self,
        *,
        customer_reference_id: str,
        amount: Amount,
        denomination: str | None = None,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> R:
        """Grant credits; ``idempotency_key`` makes the grant happen once, however often sent."""
        return self._move(
            "grants", customer_reference_id, amount, denomination, idempotency_key, extra
        )

    def deduct(
        self,
        *,
        customer_reference_id: str,
        amount: Amount,
        denomination: str | None = None,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> R:
        """Deduct credits by hand (409 ``insufficient_credits`` when the pool cannot pay)."""
        return self._move(
            "deductions", customer_reference_id, amount, denomination, idempotency_key, extra
        )

    def _move(  # noqa: PLR0917 - the two public methods name every argument
        self,
        kind: str,
        customer_reference_id: str,
        amount: Amount,
        denomination: str | None,
        idempotency_key: str | None,
        extra: dict[str, Any],
    ) -> R:
        body = fields(
            customer_reference_id=customer_reference_id,
            amount=amount,
            denomination=denomination,
            idempotency_key=idempotency_key,
            **extra,
        )
        return self._call(
            "POST", f"/api/v1/client/credits/{kind}", body=body, idempotency_key=idempotency_key
        )


class Invoices(Resource[R]):
    def list(self, *, limit: int | None = None, cursor: str | None = None, **filters: Any) -> R:
        return self._call(
            "GET",
            "/api/v1/client/billing/invoices",
            params={"limit": limit, "cursor": cursor, **filters},
        )

    def list_for_customer(self, reference_id: str) -> R:
        return self._call("GET", f"/api/v1/client/billing/invoices/{seg(reference_id)}")

    def retrieve(self, reference_id: str, invoice_id: str) -> R:
        return self._call(
            "GET", f"/api/v1/client/billing/invoices/{seg(reference_id)}/{seg(invoice_id)}"
        )

    def mark_paid(self, invoice_id: str, **extra: Any) -> R:
        return self._call(
            "POST",
            f"/api/v1/client/billing/invoices/{seg(invoice_id)}/mark-paid",
            body=fields(**extra),
        )

    def void(self, invoice_id: str) -> R:
        return self._call(
            "POST", f"/api/v1/client/billing/invoices/{seg(invoice_id)}/void", body={}
        )


class Analytics(Resource[R]):
    """Observe reads over a window (``from``/``to`` ISO times or ``window=7d``...)."""

    def overview(self, **window: Any) -> R:
        return self._call("GET", "/api/analytics/overview", params=window)

    def customers(self, **params: Any) -> R:
        return self._call("GET", "/api/customers", params=params)

    def customer(self, reference_id: str, **window: Any) -> R:
        return self._call("GET", f"/api/customers/{seg(reference_id)}", params=window)

    def features(self, **params: Any) -> R:
        return self._call("GET", "/api/features", params=params)

    def models(self, **params: Any) -> R:
        return self._call("GET", "/api/models", params=params)

    def trace(self, trace_id: str) -> R:
        return self._call("GET", f"/api/traces/{seg(trace_id)}")
