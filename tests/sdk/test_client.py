"""The API client: typed resources against the live server, typed errors, retries that
can never act twice, and the other environment invisible."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from types import ModuleType
from typing import Any

import pytest

from apps.customers.models import Customer
from tests.conftest import Tenant, make_tenant
from tests.sdk.conftest import Gate


def test_resources_round_trip(tansohq: ModuleType, acme: Tenant, live_server: Any) -> None:
    with tansohq.Tanso(acme.sk_test, base_url=live_server.url) as tanso:
        created = tanso.customers.create(
            customer_reference_id="cus wayne@1", first_name="Bruce", metadata={"tier": "gold"}
        )
        assert created["customerReferenceId"] == "cus wayne@1"
        assert tanso.customers.retrieve("cus wayne@1")["firstName"] == "Bruce"
        changed = tanso.customers.update("cus wayne@1", last_name="Wayne")
        assert (changed["firstName"], changed["lastName"]) == ("Bruce", "Wayne")
        page = tanso.customers.list(limit=1)
        assert [c["customerReferenceId"] for c in page["items"]] == ["cus wayne@1"]
        tanso.features.create(key="chat", name="Chat")
        assert tanso.features.retrieve("chat")["name"] == "Chat"
        event = tanso.events.create(
            {
                "eventName": "chat",
                "customerReferenceId": "cus wayne@1",
                "featureKey": "chat",
                "costAmount": Decimal("0.0125"),
                "eventIdempotencyKey": "evt-1",
            }
        )
        assert event["costAmount"] == "0.0125"
        batch = tanso.events.ingest(
            [
                {
                    "eventName": "chat",
                    "customerReferenceId": "cus wayne@1",
                    "featureKey": "chat",
                    "idempotencyKey": "evt-1",
                }
            ]
        )
        assert batch["duplicates"] == 1
        overview = tanso.analytics.overview()
        assert overview["events"] == 1 and overview["cost"] == "0.0125"


def test_errors_are_typed(tansohq: ModuleType, acme: Tenant, live_server: Any) -> None:
    with tansohq.Tanso(acme.sk_test, base_url=live_server.url) as tanso:
        with pytest.raises(tansohq.NotFoundError) as missing:
            tanso.customers.retrieve("nobody")
        assert missing.value.status_code == 404 and missing.value.code == "not_found"
        event = {"eventName": "e", "customerReferenceId": "c", "featureKey": "f",
                 "eventIdempotencyKey": "dup-1"}  # fmt: skip
        tanso.events.create(event)
        with pytest.raises(tansohq.ConflictError) as duplicate:
            tanso.events.create(event)
        assert duplicate.value.is_duplicate
        with pytest.raises(tansohq.BadRequestError) as invalid:
            tanso.customers.create(customer_reference_id="")
        assert "customerReferenceId" in invalid.value.fields
    stranger = tansohq.Tanso("sk_test_" + "0" * 32, base_url=live_server.url)
    with pytest.raises(tansohq.AuthenticationError):
        stranger.customers.list()
    nowhere = tansohq.Tanso(acme.sk_test, base_url="http://127.0.0.1:9", max_retries=1)
    with pytest.raises(tansohq.APIConnectionError):
        nowhere.customers.list()


def test_a_retried_write_acts_once(tansohq: ModuleType, acme: Tenant, gate: Gate) -> None:
    """The server created the customer but its answer was lost: the retry carries the
    same Idempotency-Key and gets the first answer replayed, not a second customer."""
    with tansohq.Tanso(acme.sk_test, base_url=gate.url, max_retries=2) as tanso:
        gate.mode = "lose-answer-once"
        created = tanso.customers.create(customer_reference_id="cus_once")
    assert created["customerReferenceId"] == "cus_once"
    assert len(gate.request_keys) == 2 and len(set(gate.request_keys)) == 1
    assert (
        Customer.objects.filter(environment_id=acme.test.pk, reference_id="cus_once").count() == 1
    )


def test_the_async_client(tansohq: ModuleType, acme: Tenant, live_server: Any) -> None:
    async def main() -> dict[str, Any]:
        async with tansohq.AsyncTanso(acme.sk_test, base_url=live_server.url) as tanso:
            await tanso.customers.create(customer_reference_id="cus_async")
            with pytest.raises(tansohq.NotFoundError):
                await tanso.customers.retrieve("cus_other")
            result: dict[str, Any] = await tanso.customers.retrieve("cus_async")
            return result

    assert asyncio.run(main())["customerReferenceId"] == "cus_async"


def test_another_environment_and_organization_see_nothing(
    tansohq: ModuleType, acme: Tenant, live_server: Any
) -> None:
    outsider = make_tenant("Outsider")
    with tansohq.Tanso(acme.sk_test, base_url=live_server.url) as tanso:
        tanso.customers.create(customer_reference_id="cus_private")
    for key in (acme.sk_live, outsider.sk_test):
        with tansohq.Tanso(key, base_url=live_server.url) as other:
            with pytest.raises(tansohq.NotFoundError):
                other.customers.retrieve("cus_private")
            assert other.customers.list()["items"] == []
