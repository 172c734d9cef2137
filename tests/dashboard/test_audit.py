"""The audit log records the changes made inside an environment, by a dashboard user or by
an API key, with who did it, the target and what changed (before -> after):

* model price overrides (create, update, delete) and the re-costing they start;
* plans (create, update, activate, archive, delete) and their rules (link, change, unlink);
* subscriptions (create, cancel, revert, plan change, drop a scheduled change);
* invoices (mark paid, void) and billing settings;
* credits given, taken or given back by hand (grant, deduct, reverse).

The services write the entries, so the API and the dashboard give the same ones. The log
page shows them to the organization's owners and admins only, never another
organization's.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.accounts.audit import Actor
from apps.accounts.models import AuditEntry, Role
from apps.apikeys.models import ApiKey
from apps.billing.models import Invoice
from apps.billing.services import billing_close_periods
from apps.credits.models import GrantType
from apps.credits.services import credit_grant
from apps.plans.models import Plan
from tests.billing.helpers import plan, subscribe, usage, utc
from tests.conftest import web_as
from tests.credits.conftest import make_pool
from tests.factories import make_customer
from tests.plans.helpers import make_feature

from .html import find_all

pytestmark = pytest.mark.django_db

ADVANCE = Plan.BillingTiming.IN_ADVANCE
AUDIT = "/dashboard/audit/"


def entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("id"))


def one(action: str) -> AuditEntry:
    found = entries(action)
    assert len(found) == 1, (action, found)
    return found[0]


def page_rows(client, **params) -> list[dict]:
    response = client.get(AUDIT, params)
    assert response.status_code == 200
    return find_all(response.content, "tr", data_action=None)


def key_of(environment) -> ApiKey:
    return ApiKey.objects.get(environment=environment, kind="sk")


@pytest.fixture
def billed(tenant):
    """cus_1 on an in-advance $49 plan since March 1st, closed in April (two invoices);
    a 'basic' plan to change to."""
    make_feature(tenant.test, "tokens", unit_label="token")
    pro = plan(tenant.test, "pro", price="49", timing=ADVANCE)
    basic = plan(tenant.test, "basic", price="9", timing=ADVANCE)
    sub = subscribe(tenant.test, pro, at=utc(2026, 3, 1, 9))
    usage(tenant.test, (utc(2026, 3, 20), 300))
    billing_close_periods(now=utc(2026, 4, 1, 0, 5))
    invoices = list(Invoice.objects.filter(subscription=sub).order_by("sequence"))
    AuditEntry.objects.filter(organization=tenant.org).exclude(
        action="organization.created"
    ).delete()
    return {"plan": pro, "basic": basic, "sub": sub, "invoices": invoices}


# --- by a dashboard user -----------------------------------------------------------------------


def test_dashboard_changes_are_audited_with_the_user(tenant, web, billed):
    owner = tenant.owner
    # Model price overrides and the re-costing they start.
    new = {"kind": "rates", "provider": "openai", "model": "gpt-4o"}
    rates = {"input_mtok": "2", "output_mtok": "8"}
    assert web.post("/dashboard/settings/model-prices/new/", {**new, **rates}).status_code == 302
    override_id = one("price_override.created").target_id
    edit = f"/dashboard/settings/model-prices/{override_id}/"
    changed = {**new, "input_mtok": "1.5", "output_mtok": "8"}
    assert web.post(edit, changed).status_code == 302
    assert web.post(f"{edit}delete/", {"confirm": "yes"}).status_code == 302
    assert web.post("/dashboard/settings/model-prices/recost/").status_code == 302

    # A plan: created, a rule linked then changed, another linked then unlinked, activated,
    # archived.
    make_feature(tenant.test, "seats")
    body = {"key": "team", "name": "Team", "price_amount": "19.5", "interval_months": "1"}
    assert web.post("/dashboard/plans/new/", body).status_code == 302
    team = Plan.objects.get(environment=tenant.test, key="team")
    rule = f"/dashboard/plans/{team.pk}/rule/"
    per_unit = {"feature": "tokens", "model": "per_unit", "price_per_unit": "0.002"}
    assert web.post(rule, {**per_unit, "action": "save"}).status_code == 302
    assert web.post(rule, {**per_unit, "price_per_unit": "0.003"}).status_code == 302
    assert web.post(rule, {"feature": "seats", "model": "included"}).status_code == 302
    assert web.post(f"/dashboard/plans/{team.pk}/rule/seats/remove/").status_code == 302
    assert web.post(f"/dashboard/plans/{team.pk}/activate/", {"confirm": "yes"}).status_code == 302
    assert web.post(f"/dashboard/plans/{team.pk}/archive/").status_code == 302

    # The subscription: cancel at period end, revert, change plan at period end, drop it.
    sub = f"/dashboard/subscriptions/{billed['sub'].pk}/"
    assert web.post(f"{sub}cancel/", {"mode": "END_OF_PERIOD"}).status_code == 302
    assert web.post(f"{sub}revert-cancel/").status_code == 302
    change = {"plan": str(billed["basic"].pk), "timing": "period_end", "confirm": "yes"}
    assert web.post(f"{sub}change-plan/", change).status_code == 302
    assert web.post(f"{sub}drop-change/").status_code == 302

    # An invoice marked paid.
    invoice = billed["invoices"][0]
    assert (
        web.post(
            f"/dashboard/invoices/{invoice.pk}/pay/", {"reference": "wire-7", "confirm": "yes"}
        ).status_code
        == 302
    )

    actions = [
        "price_override.created",
        "price_override.updated",
        "price_override.deleted",
        "events.recost_requested",
        "plan.created",
        "plan.feature_linked",
        "plan.rule_changed",
        "plan.feature_unlinked",
        "plan.activated",
        "plan.archived",
        "subscription.cancelled",
        "subscription.cancel_reverted",
        "subscription.plan_changed",
        "subscription.change_dropped",
        "invoice.marked_paid",
    ]
    for action in actions:
        entry = one(action) if action != "plan.feature_linked" else entries(action)[0]
        assert entry.actor_user_id == owner.pk and entry.actor_key_id is None, action
        assert (entry.organization_id, entry.environment_id) == (tenant.org.pk, tenant.test.pk)
        assert entry.ip == "127.0.0.1", action

    # What changed, before -> after.
    assert one("price_override.updated").detail["changes"] == {"inputCostPerMillion": ["2", "1.5"]}
    assert one("price_override.deleted").detail["inputCostPerMillion"] == "1.5"
    created = one("plan.created").detail
    assert (created["key"], created["priceAmount"], created["currency"]) == ("team", "19.5", "USD")
    assert one("plan.rule_changed").detail == {
        "key": "team",
        "feature": "tokens",
        "changes": {"unit_price": ["0.002", "0.003"]},
    }
    assert one("plan.activated").detail["status"] == ["draft", "active"]
    assert one("plan.archived").detail["status"] == ["active", "archived"]
    cancelled = one("subscription.cancelled").detail
    assert cancelled["customer"] == "cus_1" and cancelled["mode"] == "end_of_period"
    assert cancelled["changes"]["cancelAt"][0] is None and cancelled["changes"]["cancelAt"][1]
    assert one("subscription.plan_changed").detail["plan"] == ["pro", "basic"]
    paid = one("invoice.marked_paid").detail
    assert paid["status"][1] == "paid" and paid["reference"] == "wire-7"
    assert paid["number"] == invoice.number

    # The log page shows every one of them with the user, newest first.
    rows = page_rows(web_as(owner))
    shown = [row["data-action"] for row in rows]
    for action in actions:
        assert action in shown, action
    assert all(row["data-actor"] == owner.email for row in rows if row["data-action"] in actions)
    assert shown.index("invoice.marked_paid") < shown.index("price_override.created")
    page = web.get(AUDIT).content.decode()
    assert "0.002 \u2192 0.003" in page and "draft \u2192 active" in page


def test_viewers_and_members_change_nothing_and_leave_no_entry(tenant, billed):
    viewer = web_as(tenant.add_member(Role.VIEWER))
    assert viewer.post(f"/dashboard/plans/{billed['plan'].pk}/archive/").status_code == 403
    invoice = billed["invoices"][0]
    assert viewer.post(f"/dashboard/invoices/{invoice.pk}/pay/").status_code == 403
    assert not AuditEntry.objects.filter(action__in=["plan.archived", "invoice.marked_paid"])
    # The log itself is for owners and admins.
    assert viewer.get(AUDIT).status_code == 403
    assert web_as(tenant.add_member(Role.MEMBER)).get(AUDIT).status_code == 403
    assert web_as(tenant.add_member(Role.ADMIN)).get(AUDIT).status_code == 200


# --- by an API key -----------------------------------------------------------------------------


def test_api_changes_are_audited_with_the_key(tenant, billed):
    api = tenant.api()
    key = key_of(tenant.test)

    # Overrides.
    body = {"provider": "openai", "model": "gpt-4o", "discountPercent": "10"}
    override = api.post("/api/model-price-overrides", body, format="json").json()
    url = f"/api/model-price-overrides/{override['id']}"
    assert api.patch(url, {"discountPercent": "12.5"}, format="json").status_code == 200
    assert api.delete(url).status_code == 204

    # A plan and its rules.
    make_feature(tenant.test, "seats")
    plans = "/api/v1/client/plans"
    team = {"key": "team", "name": "Team", "priceAmount": "19", "currency": "USD"}
    assert api.post(plans, team, format="json").status_code == 201
    assert api.patch(f"{plans}/team", {"priceAmount": "29"}, format="json").status_code == 200
    rule = {"model": "per_unit", "pricePerUnit": "0.01"}
    assert api.put(f"{plans}/team/features/tokens", rule, format="json").status_code == 200
    rule["pricePerUnit"] = "0.02"
    assert api.put(f"{plans}/team/features/tokens", rule, format="json").status_code == 200
    assert api.put(f"{plans}/team/features/seats", {}, format="json").status_code == 200
    assert api.delete(f"{plans}/team/features/seats").status_code == 204
    assert api.post(f"{plans}/team/activate").status_code == 200
    assert api.post(f"{plans}/team/archive").status_code == 200
    assert api.post(plans, {**team, "key": "gone"}, format="json").status_code == 201
    assert api.delete(f"{plans}/gone").status_code == 204

    # A subscription of its own: created, changed, cancelled.
    make_customer(tenant.test, "cus_2")
    subs = "/api/v1/client/subscriptions"
    created = api.post(subs, {"customerReferenceId": "cus_2", "planKey": "basic"}, format="json")
    assert created.status_code == 201, created.content
    sub_id = created.json()["id"]
    upgrade = {"planKey": "pro", "timing": "period_end"}
    assert api.post(f"{subs}/{sub_id}/plan-change", upgrade, format="json").status_code in (
        200,
        201,
    )
    assert api.delete(f"{subs}/{sub_id}/plan-change/scheduled").status_code in (200, 204)
    cancel = f"{subs}/cancellation/{sub_id}"
    assert api.post(cancel, {"cancelMode": "END_OF_PERIOD"}, format="json").status_code == 200
    assert api.delete(f"{cancel}/scheduled").status_code in (200, 204)

    # Invoices and billing settings.
    first, second = billed["invoices"][:2]
    invoices = "/api/v1/client/billing/invoices"
    paid = api.post(f"{invoices}/{first.pk}/mark-paid", {"paymentReference": "r-1"}, format="json")
    assert paid.status_code == 200, paid.content
    voided = api.post(f"{invoices}/{second.pk}/void", {"reason": "duplicate"}, format="json")
    assert voided.status_code == 200, voided.content
    settings_url = "/api/v1/client/billing/settings"
    assert api.patch(settings_url, {"paymentTermsDays": 14}, format="json").status_code == 200

    # Credits by hand.
    credits = "/api/v1/client/credits"
    target = {"customerReferenceId": "cus_1", "denomination": "AI_CREDITS"}
    make_pool(tenant.test, "cus_1")
    grant = {**target, "amount": "100", "grantType": "promotional"}
    assert api.post(f"{credits}/grants", grant, format="json").status_code == 201
    taken = api.post(f"{credits}/deductions", {**target, "amount": "30"}, format="json")
    assert taken.status_code == 201, taken.content
    back = api.post(f"{credits}/transactions/{taken.json()['id']}/reverse", {}, format="json")
    assert back.status_code == 201, back.content

    actions = [
        "price_override.created",
        "price_override.updated",
        "price_override.deleted",
        "plan.created",
        "plan.updated",
        "plan.feature_linked",
        "plan.rule_changed",
        "plan.feature_unlinked",
        "plan.activated",
        "plan.archived",
        "plan.deleted",
        "subscription.created",
        "subscription.plan_changed",
        "subscription.change_dropped",
        "subscription.cancelled",
        "subscription.cancel_reverted",
        "invoice.marked_paid",
        "invoice.voided",
        "billing.settings_changed",
        "credits.granted",
        "credits.deducted",
        "credits.reversed",
    ]
    for action in actions:
        found = entries(action)
        assert found, action
        for entry in found:
            assert entry.actor_key_id == key.pk and entry.actor_user_id is None, action
            assert entry.environment_id == tenant.test.pk

    assert one("price_override.updated").detail["changes"] == {"discountPercent": ["10", "12.5"]}
    assert one("plan.updated").detail["changes"] == {"priceAmount": ["19", "29"]}
    assert one("invoice.voided").detail["status"][1] == "void"
    assert one("invoice.voided").detail["reason"] == "duplicate"
    assert one("billing.settings_changed").detail["changes"]["paymentTermsDays"][1] == 14
    granted = one("credits.granted").detail
    assert (granted["grantType"], granted["amount"], granted["balance"]) == (
        "promotional",
        "100",
        ["0", "100"],
    )
    assert one("credits.deducted").detail["balance"] == ["100", "70"]
    reversed_ = one("credits.reversed").detail
    assert reversed_["reversed"] == taken.json()["id"] and reversed_["balance"] == ["70", "100"]

    rows = page_rows(web_as(tenant.owner), action="credits.")
    assert {row["data-action"] for row in rows} == {
        "credits.granted",
        "credits.deducted",
        "credits.reversed",
    }
    assert {row["data-actor"] for row in rows} == {f"key:{key.pk}"}
    assert all(row["data-environment"] == "test" for row in rows)


def test_automatic_writes_are_not_audited_as_changes_by_hand(tenant):
    """Plan credits per period and rollovers are the billing cycle's (its cause is what is
    audited); a grant given by hand is audited even without a person (system)."""
    pool = make_pool(tenant.test, "cus_1")
    credit_grant(pool=pool, amount=Decimal(5), grant_type=GrantType.PLAN, actor=None)
    assert not entries("credits.granted")
    credit_grant(pool=pool, amount=Decimal(5), grant_type=GrantType.MANUAL, actor=Actor.system())
    entry = one("credits.granted")
    assert entry.actor_user_id is None and entry.actor_key_id is None
    assert page_rows(web_as(tenant.owner), action="credits.")[0]["data-actor"] == "system"
    # A replayed grant (same idempotency key) is one change, audited once.
    for _ in range(2):
        credit_grant(
            pool=pool, amount=Decimal(1), grant_type="manual", source_ref="k-1", actor=None
        )
    assert len(entries("credits.granted")) == 2


# --- isolation ---------------------------------------------------------------------------------


def test_each_organization_sees_only_its_own_entries(tenant, outsider, billed):
    api = tenant.api()
    live = tenant.api(tenant.sk_live)
    body = {"provider": "openai", "model": "gpt-4o", "discountPercent": "10"}
    assert api.post("/api/model-price-overrides", body, format="json").status_code == 201
    assert live.post("/api/model-price-overrides", body, format="json").status_code == 201
    theirs = outsider.api()
    assert theirs.post("/api/model-price-overrides", body, format="json").status_code == 201

    rows = page_rows(web_as(tenant.owner), action="price_override.")
    assert sorted(row["data-environment"] for row in rows) == ["live", "test"]
    ours = {row["data-target"] for row in rows}
    outsider_rows = page_rows(web_as(outsider.owner), action="price_override.")
    assert len(outsider_rows) == 1 and outsider_rows[0]["data-target"] not in ours
    # The outsider's page holds nothing of the tenant's (its plans, subscription, invoices).
    page = web_as(outsider.owner).get(AUDIT).content.decode()
    assert str(billed["sub"].pk) not in page and "cus_1" not in page
    assert entries("price_override.created")[1].actor_key_id == key_of(tenant.live).pk


def test_filters_and_bad_parameters(tenant, web, billed):
    assert web.post(f"/dashboard/plans/{billed['plan'].pk}/archive/").status_code == 302
    sub = f"/dashboard/subscriptions/{billed['sub'].pk}/"
    assert web.post(f"{sub}cancel/", {"mode": "IMMEDIATE", "confirm": "yes"}).status_code == 302
    assert [r["data-action"] for r in page_rows(web, action="plan.")] == ["plan.archived"]
    by_target = page_rows(web, target=str(billed["sub"].pk))
    assert [r["data-action"] for r in by_target] == ["subscription.cancelled"]
    assert page_rows(web, action="nothing.") == []
    for params in ({"action": "a\x00b"}, {"target": "\x00"}, {"page": "x"}, {"page": "999"}):
        assert web.get(AUDIT, params).status_code == 200
