"""Irreversible actions ask first (apps/dashboard/confirm.py): revoking a key, activating a
plan, cancelling a subscription now, disconnecting Stripe, deleting a price override,
removing a member, marking an invoice paid.

For each: a POST without ``confirm=yes`` answers with a confirmation page that names the
consequence and changes nothing; with htmx the same confirmation comes as a dialog (no page
around it); the confirmation's own form (which carries the original fields) then acts.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from apps.accounts.models import Membership, Role
from apps.apikeys.models import ApiKey
from apps.billing.models import Invoice
from apps.billing.services import billing_close_periods
from apps.plans.models import Plan
from apps.pricing.models import ModelPriceOverride
from apps.pricing.services import override_create
from apps.stripe_sync.models import StripeConnection
from apps.subscriptions.models import Subscription
from tests.billing.helpers import plan, subscribe, usage, utc
from tests.factories import make_key
from tests.plans.helpers import make_plan
from tests.stripe_peer.fixtures import connect_environment

from .html import find_one, tags

pytestmark = pytest.mark.django_db


@dataclass
class Action:
    url: str
    body: dict[str, str]
    consequence: str  # words the confirmation must show
    changed: Callable[[], bool]


def _key(tenant: Any) -> Action:
    key = make_key(tenant.test, "obs", scopes=["usage.read"]).key
    return Action(
        f"/dashboard/keys/{key.pk}/revoke/",
        {},
        "Every request made with this key is refused",
        lambda: ApiKey.objects.get(pk=key.pk).revoked_at is not None,
    )


def _plan(tenant: Any) -> Action:
    draft = make_plan(tenant.test, "team", active=False)
    return Action(
        f"/dashboard/plans/{draft.pk}/activate/",
        {},
        "freezes the plan's terms",
        lambda: Plan.objects.get(pk=draft.pk).status == Plan.Status.ACTIVE,
    )


def _subscription(tenant: Any) -> Action:
    sub = subscribe(tenant.test, plan(tenant.test, "pro", price="49"), at=utc(2026, 3, 1, 9))
    return Action(
        f"/dashboard/subscriptions/{sub.pk}/cancel/",
        {"mode": "immediate"},
        "ends immediately",
        lambda: Subscription.objects.get(pk=sub.pk).status == Subscription.Status.CANCELLED,
    )


def _invoice(tenant: Any) -> Action:
    pro = plan(tenant.test, "pro", price="49", timing=Plan.BillingTiming.IN_ADVANCE)
    sub = subscribe(tenant.test, pro, at=utc(2026, 3, 1, 9))
    usage(tenant.test, (utc(2026, 3, 20), 300))
    billing_close_periods(now=utc(2026, 4, 1, 0, 5))
    invoice = Invoice.objects.filter(subscription=sub).order_by("sequence").first()
    assert invoice is not None and invoice.status != Invoice.Status.PAID
    return Action(
        f"/dashboard/invoices/{invoice.pk}/pay/",
        {"reference": "wire 9"},
        "A paid invoice cannot be reopened",
        lambda: Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.PAID,
    )


def _override(tenant: Any) -> Action:
    override = override_create(
        environment=tenant.test, provider="openai", model="gpt-4o", discount_percent=Decimal(10)
    )
    return Action(
        f"/dashboard/settings/model-prices/{override.pk}/delete/",
        {},
        "catalog's price for this model again",
        lambda: not ModelPriceOverride.objects.filter(pk=override.pk).exists(),
    )


def _member(tenant: Any) -> Action:
    user = tenant.add_member(Role.MEMBER)
    membership = Membership.objects.get(organization=tenant.org, user=user)
    return Action(
        f"/dashboard/members/{membership.pk}/remove/",
        {},
        f"{user.email} loses access",
        lambda: not Membership.objects.filter(pk=membership.pk).exists(),
    )


MAKERS = {
    "revoke a key": _key,
    "activate a plan": _plan,
    "cancel a subscription now": _subscription,
    "mark an invoice paid": _invoice,
    "delete a price override": _override,
    "remove a member": _member,
}


def _confirm_form(page: bytes) -> tuple[dict[str, str], dict[str, str]]:
    """The confirmation form's attributes and its hidden fields."""
    seen = tags(page)
    start = next(i for i, (t, a) in enumerate(seen) if a.get("data-testid") == "confirm-form")
    fields: dict[str, str] = {}
    for name, attrs in seen[start + 1 :]:
        if name == "form":
            break
        if name == "input" and attrs.get("type") == "hidden":
            fields[attrs["name"]] = attrs["value"]
    return seen[start][1], fields


def _assert_asks(web: Client, action: Action) -> None:
    # Without JavaScript: a page of its own, naming the consequence; nothing changed.
    response = web.post(action.url, action.body)
    assert response.status_code == 200
    page = response.content
    assert find_one(page, "section", data_testid="confirm-page")
    assert action.consequence in html.unescape(page.decode())
    assert not action.changed()
    # The confirmation's form posts back to the action with the original fields.
    form, carried = _confirm_form(page)
    assert form["action"] == action.url
    assert carried["confirm"] == "yes"
    for name, value in action.body.items():
        assert carried[name] == value
    # A GET of the action is no way around it either (POST only).
    assert web.get(action.url).status_code == 405
    assert not action.changed()
    # With htmx: the same confirmation as a dialog, without the page around it.
    dialog = web.post(action.url, action.body, headers={"HX-Request": "true"})
    assert dialog.status_code == 200
    assert b"<html" not in dialog.content
    assert find_one(dialog.content, "dialog", data_testid="confirm-dialog")
    assert not action.changed()
    # Any other value of confirm is not a confirmation.
    assert web.post(action.url, {**action.body, "confirm": "1"}).status_code == 200
    assert not action.changed()


@pytest.mark.parametrize("name", list(MAKERS))
def test_nothing_changes_until_confirmed(tenant, web, name):
    action = MAKERS[name](tenant)
    _assert_asks(web, action)
    response = web.post(action.url, {**action.body, "confirm": "yes"})
    assert response.status_code == 302
    assert action.changed()


def test_disconnecting_stripe_asks_first(tenant, web, stripe_peer, settings):
    settings.STRIPE_WEBHOOK_BASE_URL = "https://tanso.example"
    connect_environment(tenant.test, stripe_peer)
    action = Action(
        "/dashboard/settings/stripe/disconnect/",
        {},
        "Stripe key and the webhook endpoint are deleted",
        lambda: not StripeConnection.objects.filter(environment=tenant.test).exists(),
    )
    _assert_asks(web, action)
    assert web.post(action.url, {"confirm": "yes"}).status_code == 302
    assert action.changed()


def test_cancelling_at_the_period_end_does_not_ask(tenant, web):
    """It can be reverted, so it acts at once (only "now" is irreversible)."""
    sub = subscribe(tenant.test, plan(tenant.test, "pro", price="49"), at=utc(2026, 3, 1, 9))
    response = web.post(f"/dashboard/subscriptions/{sub.pk}/cancel/", {"mode": "end_of_period"})
    assert response.status_code == 302
    sub.refresh_from_db()
    assert sub.cancel_at is not None


@pytest.mark.parametrize("name", list(MAKERS))
def test_outsiders_get_404_even_with_the_confirmation(tenant, outsider, name):
    action = MAKERS[name](tenant)
    spy = Client()
    spy.force_login(outsider.owner)
    response = spy.post(action.url, {**action.body, "confirm": "yes"})
    # A member of another organization is not found; the plan, subscription, invoice,
    # key and override of the tenant's environment are not found either.
    assert response.status_code == 404
    assert not action.changed()
