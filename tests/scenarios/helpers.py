"""Helpers for scenario tests: walk one customer's life through the real code and read
every invoice back through the API.

* Plans, subscriptions and plan changes go through the services with an explicit
  ``now`` (``tests/billing/helpers.py`` builds plans and subscriptions at a chosen
  instant); the API would stamp the wall clock.
* Usage goes through the real ingestion endpoint (``POST /api/events/ingest``),
  each event with its ``occurredAt``; the answers come back (caps, credits).
* Time moves by running the real billing task, ``run_billing_cycle``, as of an
  instant (its ``now`` argument): the period job, closing periods, proration and
  statuses, in the order the beat runs them.
* Invoices, payments, entitlement checks, pools and ledgers are read and written
  through the API, as an integrator would.

Every step runs the transaction's on-commit hooks (cache invalidation, counters),
as a committed request would.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

from apps.billing.tasks import run_billing_cycle
from apps.credits.models import CreditModel
from apps.credits.services import credit_model_create, plan_allocation_set
from apps.plans.models import Plan
from apps.plans.pricing import PricingModel, Rule
from apps.plans.services import RuleSpec
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import subscription_cancel, subscription_change_plan
from tests.billing.helpers import SYSTEM, _small_catalog, per_unit, plan, subscribe, tiers, utc

__all__ = [
    "ADVANCE",
    "ARREARS",
    "SYSTEM",
    "Life",
    "iso",
    "per_unit",
    "rule",
    "tiers",
    "utc",
]

D = Decimal
ADVANCE = Plan.BillingTiming.IN_ADVANCE
ARREARS = Plan.BillingTiming.IN_ARREARS
INVOICES = "/api/v1/client/billing/invoices"
_keys = itertools.count()

# (number, type, status, [(line kind, amount in minor units)], total in minor units)
Bill = tuple[str, str, str, list[tuple[str, int]], int]


def iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat()


def rule(
    model: str,
    *,
    price: str | None = None,
    tiers_: tuple = (),
    package: int | None = None,
    cap: str | None = None,
    overage: str | None = None,
    reset: str = "billing_period",
    credits: str = "",
    credits_per_unit: str | None = None,
) -> RuleSpec:
    return RuleSpec(
        rule=Rule(
            model=PricingModel(model),
            unit_price=D(price) if price is not None else None,
            package_size=package,
            tiers=tiers_,
            max_usage=D(cap) if cap is not None else None,
            overage_unit_price=D(overage) if overage is not None else None,
        ),
        reset_interval=reset,
        credit_denomination=credits,
        credits_per_unit=D(credits_per_unit) if credits_per_unit is not None else None,
    )


def summary(invoice: dict[str, Any]) -> Bill:
    """An invoice as the API shows it, reduced to what every scenario checks; its total is
    the sum of its lines (checked here, once for all)."""
    items = [(item["kind"], item["amountMinor"]) for item in invoice["items"]]
    assert invoice["amountMinor"] == sum(minor for _kind, minor in items), invoice
    return (invoice["number"], invoice["type"], invoice["status"], items, invoice["amountMinor"])


@dataclasses.dataclass
class Life:
    tenant: Any
    capture: Any  # django_capture_on_commit_callbacks

    @property
    def env(self) -> Any:
        return self.tenant.test

    def api(self) -> Any:
        return self.tenant.api()

    # -- set-up through the services, at chosen instants -----------------------------------

    def plan(
        self,
        key: str,
        *,
        price: str | int,
        timing: str,
        features: dict[str, RuleSpec],
        interval_months: int = 1,
    ) -> Plan:
        with self.capture(execute=True):
            return plan(
                self.env,
                key,
                price=price,
                timing=timing,
                features=features,
                interval_months=interval_months,
            )

    def subscribe(self, the_plan: Plan, *, at: dt.datetime, ref: str = "cus_1") -> Subscription:
        with self.capture(execute=True):
            return subscribe(self.env, the_plan, at=at, reference=ref)

    def change_plan(
        self, subscription: Subscription, the_plan: Plan, *, at: dt.datetime, **kwargs: Any
    ) -> Any:
        with self.capture(execute=True):
            return subscription_change_plan(
                subscription=Subscription.objects.get(pk=subscription.pk),
                plan=the_plan,
                now=at,
                actor=SYSTEM,
                **kwargs,
            )

    def cancel_now(self, subscription: Subscription, *, at: dt.datetime) -> Subscription:
        with self.capture(execute=True):
            return subscription_cancel(
                subscription=Subscription.objects.get(pk=subscription.pk),
                mode="immediate",
                now=at,
                actor=SYSTEM,
            )

    def credit_model(
        self,
        denomination: str,
        *,
        rollover: str = "none",
        cap: str | None = None,
        expires_months: int | None = None,
    ) -> CreditModel:
        with self.capture(execute=True):
            return credit_model_create(
                environment=self.env,
                name=denomination,
                denomination=denomination,
                rollover_policy=rollover,
                rollover_cap=D(cap) if cap is not None else None,
                grant_expiry_months=expires_months,
                actor=SYSTEM,
            )

    def allocate(self, the_plan: Plan, model: CreditModel, amount: str) -> None:
        with self.capture(execute=True):
            plan_allocation_set(
                environment=self.env,
                plan_key=the_plan.key,
                credit_model=model,
                credit_amount=D(amount),
                actor=SYSTEM,
            )

    # -- usage through the ingestion endpoint ---------------------------------------------

    def send(
        self,
        *events: tuple[dt.datetime, int | str],
        feature: str = "tokens",
        ref: str = "cus_1",
    ) -> list[dict[str, Any]]:
        """Record events ``(occurredAt, usageUnits)`` of one feature; their answers."""
        _small_catalog()
        body = {
            "events": [
                {
                    "eventIdempotencyKey": f"scenario-{next(_keys)}",
                    "eventName": "call",
                    "customerReferenceId": ref,
                    "featureKey": feature,
                    "usageUnits": str(units),
                    "costAmount": "0.001",
                    "occurredAt": iso(at),
                }
                for at, units in events
            ]
        }
        with self.capture(execute=True):
            response = self.api().post("/api/events/ingest", body, format="json")
        assert response.status_code == 200, response.content
        answers = response.json()["events"]
        assert len(answers) == len(events)
        return answers

    # -- the clock: the real billing task -------------------------------------------------

    def cycle(self, at: dt.datetime) -> dict[str, Any]:
        """Run the billing task as of ``at`` (as the beat would, at that instant)."""
        with self.capture(execute=True):
            return run_billing_cycle.apply(kwargs={"now": iso(at)}).get()

    # -- reading and paying through the API -----------------------------------------------

    def invoices(self, ref: str = "cus_1") -> list[dict[str, Any]]:
        """The customer's invoices, oldest first."""
        response = self.api().get(f"{INVOICES}/{ref}", {"limit": 100})
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["hasMore"] is False
        return list(reversed(body["items"]))

    def bills(self, ref: str = "cus_1") -> list[Bill]:
        return [summary(invoice) for invoice in self.invoices(ref)]

    def pay(self, invoice: dict[str, Any], *, at: dt.datetime | None = None) -> dict[str, Any]:
        body = {"paymentReference": f"wire-{invoice['number']}"}
        if at is not None:
            body["paidAt"] = iso(at)
        with self.capture(execute=True):
            response = self.api().post(f"{INVOICES}/{invoice['id']}/mark-paid", body, format="json")
        assert response.status_code == 200, response.content
        return response.json()

    def pay_open(self, ref: str = "cus_1", *, at: dt.datetime | None = None) -> int:
        """Pay every invoice of the customer that is due or past due; how many."""
        open_ = [i for i in self.invoices(ref) if i["status"] in {"PENDING", "DUE", "PAST_DUE"}]
        for invoice in open_:
            self.pay(invoice, at=at)
        return len(open_)

    def check(self, feature: str = "tokens", ref: str = "cus_1") -> dict[str, Any]:
        body = {"customerReferenceId": ref, "featureKey": feature}
        with self.capture(execute=True):
            response = self.api().post("/api/v1/client/entitlements/check", body, format="json")
        assert response.status_code == 200, response.content
        return response.json()

    def subscription(self, subscription: Subscription) -> dict[str, Any]:
        response = self.api().get(f"/api/v1/client/subscriptions/{subscription.pk}")
        assert response.status_code == 200, response.content
        return response.json()

    def pools(self, ref: str = "cus_1") -> dict[str, dict[str, Any]]:
        """The customer's credit pools by denomination."""
        response = self.api().get(f"/api/v1/client/credits/{ref}/pools")
        assert response.status_code == 200, response.content
        return {pool["denomination"]: pool for pool in response.json()["items"]}

    def ledger(self, pool: dict[str, Any], ref: str = "cus_1") -> list[tuple[str, str, str]]:
        """The pool's ledger, oldest entry first: (type, amount, balance after)."""
        path = f"/api/v1/client/credits/{ref}/pools/{pool['id']}/transactions"
        response = self.api().get(path, {"limit": 100})
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["hasMore"] is False
        return [
            (entry["transactionType"], entry["amount"], entry["balanceAfter"])
            for entry in reversed(body["items"])
        ]

    def grants(self, pool: dict[str, Any], ref: str = "cus_1") -> list[dict[str, Any]]:
        """The pool's grants, oldest first."""
        path = f"/api/v1/client/credits/{ref}/pools/{pool['id']}/grants"
        response = self.api().get(path, {"limit": 100})
        assert response.status_code == 200, response.content
        return list(reversed(response.json()["items"]))
