"""Settings → model prices: overrides through the pricing services, and re-costing
the unpriced events with the real Celery task (a real worker on the real broker)."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from apps.accounts.models import Role
from apps.events.models import Event, RecostRun
from apps.pricing.models import ModelPriceOverride
from tests.conftest import web_as

from .conftest import at, event, ingest
from .html import find_all, find_one

BASE = "/dashboard/settings/model-prices"
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.mark.django_db
def test_member_creates_edits_and_deletes_overrides(tenant, catalog):
    member = web_as(tenant.add_member(Role.MEMBER))
    response = member.post(
        f"{BASE}/new/",
        {
            "kind": "rates",
            "provider": "OpenAI",
            "model": "GPT-4o",
            "input_mtok": "2",
            "output_mtok": "8",
            "discount_percent": "50",  # the other kind's field is ignored
            "note": "negotiated 2026",
        },
    )
    assert response.status_code == 302
    override = ModelPriceOverride.objects.get(environment=tenant.test)
    assert (override.provider, override.model) == ("openai", "gpt-4o")
    assert (override.input_mtok, override.output_mtok) == (Decimal(2), Decimal(8))
    assert override.discount_percent is None
    page = member.get(f"{BASE}/").content
    assert find_one(page, "tr", data_override=str(override.pk))["data-kind"] == "rates"

    # The new rate prices the next event (through the same costing as the API).
    (event_id,) = ingest(
        tenant.api(),
        event("cus_x", "chat", when=at(1), model="gpt-4o", inputTokens=1000, outputTokens=100),
    )
    priced = Event.objects.get(pk=event_id)
    assert priced.cost_source == "override_rate"
    assert priced.cost_usd == Decimal("0.0028")  # 1000 x 2 / 1e6 + 100 x 8 / 1e6

    edit = member.get(f"{BASE}/{override.pk}/")
    assert edit.status_code == 200 and b"Save changes" in edit.content
    response = member.post(
        f"{BASE}/{override.pk}/",
        {"kind": "discount", "provider": "openai", "model": "gpt-4o", "discount_percent": "15"},
    )
    assert response.status_code == 302
    override.refresh_from_db()
    assert override.discount_percent == Decimal(15) and override.input_mtok is None

    assert member.post(f"{BASE}/{override.pk}/delete/", {"confirm": "yes"}).status_code == 302
    assert not ModelPriceOverride.objects.filter(pk=override.pk).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "rates", "model": "gpt-4o", "input_mtok": "1"}, b"Required with custom rates"),
        (
            {"kind": "rates", "provider": "openai", "input_mtok": "1", "output_mtok": "2"},
            b"one model",
        ),
        ({"kind": "discount", "discount_percent": "10"}, b"Name a provider, a model"),
        (
            {"kind": "discount", "model": "gpt-4o", "discount_percent": "120"},
            b"less than or equal to 100",
        ),
        ({"kind": "discount", "model": "gpt-4o"}, b"custom rates"),
        (
            {"kind": "rates", "model": "gpt-4o", "input_mtok": "-1", "output_mtok": "1"},
            b"greater than or equal to 0",
        ),
        ({"kind": "nonsense"}, b"Select a valid choice"),
    ],
)
def test_invalid_overrides_are_400_with_the_reason(tenant, web, data, message):
    response = web.post(f"{BASE}/new/", data)
    assert response.status_code == 400
    assert message in response.content
    assert not ModelPriceOverride.objects.exists()


@pytest.mark.django_db
def test_a_second_override_for_the_same_model_is_refused(tenant, web):
    data = {"kind": "discount", "provider": "openai", "model": "gpt-4o", "discount_percent": "5"}
    assert web.post(f"{BASE}/new/", data).status_code == 302
    response = web.post(f"{BASE}/new/", data)
    assert response.status_code == 400
    assert b"already exists" in response.content
    assert ModelPriceOverride.objects.count() == 1


@pytest.mark.django_db
def test_models_page_links_an_unpriced_model_to_a_prefilled_form(tenant, web, dataset):
    models = web.get("/dashboard/models/").content
    link = [a["href"] for a in find_all(models, "a") if "model=mystery-1" in a.get("href", "")]
    assert link
    form = web.get(link[0]).content
    assert find_one(form, "input", name="model")["value"] == "mystery-1"


@pytest.mark.django_db(transaction=True)
def test_recost_button_prices_unpriced_events_in_the_background(tenant, catalog, celery_worker):
    (unpriced_id,) = ingest(
        tenant.api(),
        event("cus_u", "chat", when=at(1), model="mystery-1", inputTokens=1000, outputTokens=100),
    )
    web = web_as(tenant.owner)
    assert (
        find_one(web.get(f"{BASE}/").content, data_testid="recost-status")["data-unpriced"] == "1"
    )

    web.post(
        f"{BASE}/new/",
        {"kind": "rates", "model": "mystery-1", "input_mtok": "1", "output_mtok": "4"},
    )
    response = web.post(f"{BASE}/recost/")
    assert response.status_code == 302
    status_url = response["Location"].replace(f"{BASE}/?", f"{BASE}/recost/status/?").split("#")[0]
    assert "since=" in status_url

    deadline = time.monotonic() + 30
    while True:
        partial = web.get(status_url, **HTMX).content
        status = find_one(partial, data_testid="recost-status")
        if status["data-run-status"] == "succeeded":
            break
        assert time.monotonic() < deadline, partial
        # Still queued or running: the partial keeps polling.
        assert "hx-get" in status and status["hx-trigger"] == "every 2s"
        time.sleep(0.3)
    assert "hx-get" not in status  # finished: polling stops
    assert status["data-unpriced"] == "0"
    assert b"1 newly priced" in partial
    run = RecostRun.objects.get(environment=tenant.test)
    assert run.actor == f"dashboard:{tenant.owner.email}"
    priced = Event.objects.get(pk=unpriced_id)
    assert priced.cost_source == "override_rate"
    assert priced.cost_usd == Decimal("0.0014")  # 1000 x 1 / 1e6 + 100 x 4 / 1e6
    # The overview no longer shows the unpriced banner.
    assert b'data-testid="unpriced-banner"' not in web.get("/dashboard/").content
