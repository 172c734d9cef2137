"""Subscriptions: the list, subscribing a customer, one subscription and its actions.

Cancelling now asks first (it ends the subscription at once); changing plan shows what the
change bills (``apps.billing.preview.plan_change_preview``, the same lines the billing
cycle writes) and acts only once confirmed."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.audit import Actor
from apps.accounts.models import Role
from apps.billing import selectors as billing
from apps.billing.preview import plan_change_preview
from apps.billing.services import Charge, invoice_issue_charges
from apps.billing.upcoming import upcoming_invoices
from apps.core.errors import NotFound, TansoError
from apps.core.money_format import format_money
from apps.customers.selectors import customer_get, customers_for
from apps.dashboard.confirm import Confirmation, needs_confirmation
from apps.dashboard.decorators import tenant_view
from apps.plans import selectors as plans
from apps.plans.models import Plan
from apps.plans.rendering import describe_plan_price
from apps.subscriptions import selectors as subscriptions
from apps.subscriptions.models import Subscription, SubscriptionChange
from apps.subscriptions.services import (
    subscription_cancel,
    subscription_cancel_revert,
    subscription_change_cancel,
    subscription_change_plan,
    subscription_create,
)

from .common import can_manage, error_text, form_errors, get_or_404, page_of, parse_int, render_page
from .invoices import CUSTOMER_INVOICES, invoice_amount

SUBSCRIPTION_STATUSES = (("", "All"), ("live", "Live"), *Subscription.Status.choices)
# The services' field names -> the subscribe form's inputs (errors shown beside them).
SUBSCRIBE_FIELDS = {
    "customerReferenceId": "customer",
    "planId": "plan",
    "trialDays": "trial_days",
    "gracePeriod": "grace_period_days",
}
# Customers offered in the subscribe form's suggestion list.
CUSTOMER_SUGGESTIONS = 200


@tenant_view()
def subscription_list(request: HttpRequest) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    status = request.GET.get("status", "")
    if status not in dict(SUBSCRIPTION_STATUSES):
        status = ""
    q = request.GET.get("q", "").strip()[:200]
    rows = subscriptions.subscriptions_search(environment, status=status or None)
    if q:
        rows = rows.filter(customer__reference_id__icontains=q)
    page = page_of(request, rows.order_by("-created_at", "-id"))
    context = {
        "page": page,
        "status": status,
        "statuses": SUBSCRIPTION_STATUSES,
        "q": q,
        "filtered": bool(status or q),
        "can_manage": can_manage(request),
    }
    return render_page(request, "dashboard/platform/subscriptions.html", "table", context)


def _subscribe_page(
    request: HttpRequest, values: dict[str, str], errors: dict[str, list[str]], status: int = 200
) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    active = plans.plans_list(environment, Plan.Status.ACTIVE).order_by("key")
    context = {
        "values": values,
        "errors": errors,
        "plans": [(p, describe_plan_price(p)) for p in active],
        "customers": customers_for(environment)
        .order_by("reference_id")
        .values_list("reference_id", flat=True)[:CUSTOMER_SUGGESTIONS],
    }
    return render_page(request, "dashboard/platform/subscription_new.html", "form", context, status)


@require_http_methods(["GET", "POST"])
@tenant_view(Role.MEMBER)
def subscription_new(request: HttpRequest) -> HttpResponse:
    """Subscribe a customer to an active plan (``subscription_create``, as the API)."""
    environment = request.environment  # type: ignore[attr-defined]
    if request.method == "GET":
        values = {
            "customer": request.GET.get("customer", "")[:255],
            "plan": request.GET.get("plan", ""),
            "trial_days": "0",
            "grace_period_days": "3",
        }
        return _subscribe_page(request, values, {})
    data = request.POST
    values = {
        name: (data.get(name) or "").strip()
        for name in ("customer", "plan", "trial_days", "grace_period_days")
    }
    errors: dict[str, list[str]] = {}
    trial = parse_int(values["trial_days"], "trial_days", errors)
    grace = parse_int(values["grace_period_days"], "grace_period_days", errors)
    customer = plan = None
    if not values["customer"]:
        errors["customer"] = ["Enter the customer's reference."]
    else:
        try:
            customer = customer_get(environment, values["customer"])
        except NotFound:
            errors["customer"] = ["No customer has this reference: create the customer first."]
    try:
        plan = plans.plan_get(environment, values["plan"]) if values["plan"] else None
    except NotFound:
        plan = None
    if plan is None:
        errors["plan"] = ["Choose an active plan."]
    if errors or customer is None or plan is None:
        return _subscribe_page(request, values, errors, status=400)
    try:
        subscription = subscription_create(
            environment=environment,
            customer=customer,
            plan=plan,
            trial_days=trial or 0,
            grace_period_days=grace if grace is not None else 3,
            actor=Actor.from_request(request),
        )
    except TansoError as exc:
        return _subscribe_page(
            request, values, form_errors(exc, SUBSCRIBE_FIELDS), status=exc.status
        )
    messages.success(request, f"{customer.reference_id} is subscribed to {plan.key}.")
    return redirect("dashboard:subscription", subscription_id=subscription.pk)


@tenant_view()
def subscription_detail(request: HttpRequest, subscription_id: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    subscription = get_or_404(subscriptions.subscription_get, environment, str(subscription_id))
    pending = subscription.pending_changes[0] if subscription.pending_changes else None
    context = {
        "sub": subscription,
        "pending": pending,
        "changes": subscriptions.subscription_changes(subscription)[:20],
        "other_plans": plans.plans_list(environment, Plan.Status.ACTIVE)
        .exclude(pk=subscription.plan_id)
        .order_by("key"),
        "invoices": [
            (inv, invoice_amount(inv))
            for inv in billing.invoices_search(
                environment, subscription_id=subscription.pk
            ).order_by("-issued_at")[:CUSTOMER_INVOICES]
        ],
        "can_manage": can_manage(request),
        "is_live": subscription.status in Subscription.LIVE_STATUSES,
        "upcoming": (
            upcoming_invoices(subscription)
            if subscription.status in Subscription.LIVE_STATUSES
            else None
        ),
    }
    return render(request, "dashboard/platform/subscription.html", context)


def _cancel_now_confirmation(subscription: Subscription) -> Confirmation:
    return Confirmation(
        title=f"Cancel {subscription.customer.reference_id}'s subscription now?",
        consequence=(
            f"The subscription to {subscription.plan.key} ends immediately: its current period "
            "is cut short, its limits and included credits stop, and a scheduled plan change "
            "is dropped. This cannot be undone; the customer would need a new subscription."
        ),
        label="Cancel now",
        back_url=reverse("dashboard:subscription", args=[subscription.pk]),
    )


def _change_confirmation(
    subscription: Subscription, plan: Plan, timing: str | None
) -> Confirmation:
    preview = plan_change_preview(subscription, plan, timing=timing)
    when = (
        "now"
        if preview.immediate
        else f"at the end of the current period ({preview.effective_at:%Y-%m-%d})"
    )
    kind = dict(SubscriptionChange.Type.choices).get(preview.change_type, preview.change_type)
    return Confirmation(
        title=f"Move {subscription.customer.reference_id} from {subscription.plan.key} "
        f"to {plan.key}?",
        consequence=(
            f"{kind}, {when}. "
            + (
                "The subscription switches at once: the new plan's limits apply from now."
                if preview.immediate
                else "Until then the current plan stays in force; the change can be dropped."
            )
        ),
        label="Change plan",
        back_url=reverse("dashboard:subscription", args=[subscription.pk]),
        details=[
            ("From", f"{subscription.plan.name}: {describe_plan_price(subscription.plan)}"),
            ("To", f"{plan.name}: {describe_plan_price(plan)}"),
        ],
        extra_template="dashboard/platform/_proration.html",
        extra={"preview": preview},
    )


@require_POST
@tenant_view(Role.MEMBER)
def subscription_action(request: HttpRequest, subscription_id: str, action: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    subscription = get_or_404(subscriptions.subscription_get, environment, str(subscription_id))
    actor = Actor.from_request(request)
    back = redirect("dashboard:subscription", subscription_id=subscription.pk)
    try:
        if action == "cancel":
            mode = request.POST.get("mode", Subscription.CancelMode.END_OF_PERIOD).lower()
            if mode == Subscription.CancelMode.IMMEDIATE and (
                asked := needs_confirmation(request, _cancel_now_confirmation(subscription))
            ):
                return asked
            subscription_cancel(subscription=subscription, mode=mode, actor=actor)
            messages.success(request, "Subscription cancelled.")
        elif action == "revert-cancel":
            subscription_cancel_revert(subscription=subscription, actor=actor)
            messages.success(request, "Scheduled cancellation withdrawn.")
        elif action == "change-plan":
            plan = _plan_or_none(environment, request.POST.get("plan", ""))
            if plan is None:
                messages.error(request, "Choose the plan to move to.")
                return back
            timing = request.POST.get("timing") or None
            if timing not in (None, *SubscriptionChange.Timing.values):
                messages.error(request, "Choose when the change happens.")
                return back
            if plan.pk != subscription.plan_id and (
                asked := needs_confirmation(
                    request, _change_confirmation(subscription, plan, timing)
                )
            ):
                return asked
            change = subscription_change_plan(
                subscription=subscription, plan=plan, timing=timing, actor=actor
            )
            messages.success(
                request, f"Plan change to {plan.key}: {change.get_status_display().lower()}."
            )
        elif action == "charge":
            return _charge(request, subscription, actor) or back
        elif action == "drop-change":
            subscription_change_cancel(subscription=subscription, actor=actor)
            messages.success(request, "Scheduled plan change dropped.")
        else:
            raise Http404("No such action.")
    except TansoError as exc:
        messages.error(request, error_text(exc))
    return back


def _charge(request: HttpRequest, subscription: Subscription, actor: Actor) -> HttpResponse | None:
    """A one-off charge invoiced now, after a confirmation that names the amount."""
    description = request.POST.get("description", "").strip()
    try:
        amount = Decimal(request.POST.get("amount", "").strip())
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite():
        messages.error(request, "Give the amount as a number, for example 250.00.")
        return None
    currency = subscription.plan.currency
    asked = needs_confirmation(
        request,
        Confirmation(
            title=f"Invoice {subscription.customer.reference_id} "
            f"{format_money(amount, currency)} now?",
            consequence=(
                f"An invoice for \u201c{description}\u201d is issued now and is due on the "
                "environment's payment terms. An issued invoice keeps its number: it can be "
                "voided, not deleted."
            ),
            label="Issue the invoice",
            back_url=reverse("dashboard:subscription", args=[subscription.pk]),
        ),
    )
    if asked:
        return asked
    invoice = invoice_issue_charges(
        subscription=subscription, charges=[Charge(description, amount)], actor=actor
    )
    messages.success(request, f"Invoice {invoice.number} issued.")
    return redirect("dashboard:invoice", invoice_id=invoice.pk)


def _plan_or_none(environment: Any, reference: str) -> Plan | None:
    if not reference:
        return None
    try:
        return plans.plan_get(environment, reference)
    except NotFound:
        return None
