"""Platform pages: the plan catalog (plans and their pricing rules), subscriptions,
invoices and credit pools, and the platform part of a customer's page.

Every read goes through the apps' selectors for ``request.environment``; every
write through their services (the same operations as the API). Everyone reads;
changing anything needs the member role (403 otherwise). One view, two
renderings: the page, or (htmx) only its ``table`` partial.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.accounts.audit import Actor
from apps.accounts.models import Role
from apps.billing import selectors as billing
from apps.billing.models import Invoice
from apps.billing.services import invoice_mark_paid
from apps.core.errors import NotFound, TansoError
from apps.core.money import decimal_str, from_minor_units
from apps.core.tenancy import scoped
from apps.credits import selectors as credits
from apps.credits.models import CreditPool
from apps.customers.models import Customer
from apps.dashboard.decorators import tenant_view
from apps.entitlements.selectors import feature_usage
from apps.features.selectors import feature_get, features_for
from apps.plans import pricing
from apps.plans import selectors as plans
from apps.plans.models import Plan, PlanFeatureRule
from apps.plans.rendering import describe_plan_price, describe_rule
from apps.plans.services import (
    RuleSpec,
    plan_activate,
    plan_archive,
    plan_create,
    plan_feature_remove,
    plan_feature_set,
    spec_errors,
)
from apps.subscriptions import selectors as subscriptions
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import (
    subscription_cancel,
    subscription_cancel_revert,
    subscription_change_cancel,
    subscription_change_plan,
)

PAGE_SIZE = 50
MAX_TIER_ROWS = pricing.MAX_TIERS
DEFAULT_TIER_ROWS = 3
CUSTOMER_INVOICES = 10


def _render(
    request: HttpRequest, template: str, partial: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    htmx = getattr(request, "htmx", None)
    name = f"{template}#{partial}" if htmx and not htmx.boosted else template
    return render(request, name, context, status=status)


def _can_manage(request: HttpRequest) -> bool:
    return request.membership.at_least(Role.MEMBER)  # type: ignore[attr-defined]


def _error_text(exc: TansoError) -> str:
    details = "; ".join(
        f"{field}: {' '.join(str(m) for m in msgs)}" for field, msgs in (exc.fields or {}).items()
    )
    return f"{exc.message} ({details})" if details else exc.message


def _get_or_404(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except NotFound as exc:
        raise Http404(exc.message) from None


def _page_of(request: HttpRequest, queryset: Any) -> Any:
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


# --- Plans ---------------------------------------------------------------------------------

PLAN_STATUSES = (("all", "All"), *Plan.Status.choices)


@tenant_view()
def plan_list(request: HttpRequest) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    status = request.GET.get("status", "all")
    if status not in dict(PLAN_STATUSES):
        status = "all"
    rows = plans.plans_list(environment, status).order_by("-created_at", "id")
    return _plans_page(request, rows, status, {})


def _plans_page(
    request: HttpRequest, rows: Any, status: str, errors: dict[str, Any], status_code: int = 200
) -> HttpResponse:
    page = _page_of(request, rows)
    context = {
        "page": page,
        "plans": [(plan, describe_plan_price(plan)) for plan in page],
        "status": status,
        "statuses": PLAN_STATUSES,
        "can_manage": _can_manage(request),
        "errors": errors,
        "values": request.POST if request.method == "POST" else {},
        "intervals": Plan.Interval.choices,
        "timings": Plan.BillingTiming.choices,
    }
    return _render(request, "dashboard/platform/plans.html", "table", context, status_code)


def _decimal(raw: str, field: str, errors: dict[str, list[str]]) -> Decimal | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        errors.setdefault(field, []).append("Enter a number.")
        return None
    if not value.is_finite():
        errors.setdefault(field, []).append("Enter a finite number.")
        return None
    return value


@require_POST
@tenant_view(Role.MEMBER)
def plan_new(request: HttpRequest) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    data = request.POST
    errors: dict[str, list[str]] = {}
    price = _decimal(data.get("price_amount", ""), "priceAmount", errors)
    try:
        interval = int(data.get("interval_months") or Plan.Interval.MONTHLY)
    except ValueError:
        interval = 0
    if not errors:
        try:
            plan = plan_create(
                environment=environment,
                key=data.get("key", "").strip(),
                name=data.get("name", "").strip(),
                description=data.get("description", ""),
                price_amount=price if price is not None else Decimal(0),
                currency=data.get("currency", "USD").strip() or "USD",
                interval_months=interval,
                billing_timing=data.get("billing_timing") or Plan.BillingTiming.IN_ADVANCE,
                actor=Actor.from_request(request),
            )
        except TansoError as exc:
            errors = {k: list(v) for k, v in (exc.fields or {"_": [exc.message]}).items()}
        else:
            messages.success(request, f"Plan {plan.key} created as a draft.")
            return redirect("dashboard:plan", plan_id=plan.pk)
    rows = plans.plans_list(environment, "all").order_by("-created_at", "id")
    return _plans_page(request, rows, "all", errors, status_code=400)


# The rule editor's form field -> the API field the services name in errors.
RULE_FIELDS = {
    "feature": "featureKey",
    "model": "model",
    "price_per_unit": "pricePerUnit",
    "package_size": "packageSize",
    "max_usage": "maxUsage",
    "reset_interval": "resetInterval",
    "overage_price": "overagePricePerUnit",
}


@dataclass
class RuleForm:
    """The rule editor's values (strings as typed), its errors, and the rule when valid."""

    values: dict[str, str]
    tiers: list[dict[str, str]]
    errors: dict[str, list[str]]
    spec: RuleSpec | None = None

    def error(self, api_field: str) -> list[str]:
        return self.errors.get(api_field, [])


def _tier_count(raw: str | None, default: int) -> int:
    try:
        return min(max(int(raw or default), 1), MAX_TIER_ROWS)
    except ValueError:
        return default


def _blank_rule_form(count: int) -> RuleForm:
    values = {
        "feature": "",
        "model": PlanFeatureRule.Model.GRADUATED.value,
        "reset_interval": PlanFeatureRule.ResetInterval.BILLING_PERIOD.value,
    }
    return RuleForm(values, [{} for _ in range(count)], {})


def _rule_form_from(rule: PlanFeatureRule) -> RuleForm:
    def s(value: Any) -> str:
        if value is None:
            return ""
        return decimal_str(value) if isinstance(value, Decimal) else str(value)

    values = {
        "feature": rule.feature.key,
        "model": rule.model,
        "price_per_unit": s(rule.unit_price),
        "package_size": s(rule.package_size),
        "max_usage": s(rule.max_usage),
        "reset_interval": rule.reset_interval,
        "overage_price": s(rule.overage_unit_price),
    }
    tiers = [
        {
            "up_to": s(t.get("upTo")) if t.get("upTo") is not None else "",
            "unit_price": s(t.get("pricePerUnit")),
            "flat_fee": s(t.get("flatFee")) if t.get("flatFee") not in (None, "0") else "",
        }
        for t in rule.tiers
    ] or [{}]
    return RuleForm(values, tiers, {})


def _parse_rule_form(data: Any) -> RuleForm:
    """Parse the editor's POST; ``spec`` is set when the rule passes the services' checks."""
    values = {name: (data.get(name) or "").strip() for name in RULE_FIELDS}
    count = _tier_count(data.get("tier_count"), 1)
    raw_tiers = [
        {
            key: (data.get(f"tier-{i}-{key}") or "").strip()
            for key in ("up_to", "unit_price", "flat_fee")
        }
        for i in range(count)
    ]
    errors: dict[str, list[str]] = {}
    model = values["model"]
    if model not in PlanFeatureRule.Model.values:
        errors["model"] = ["Choose a pricing model."]
        return RuleForm(values, raw_tiers, errors)
    unit_price = _decimal(values["price_per_unit"], "pricePerUnit", errors)
    package_size: int | None = None
    if values["package_size"]:
        try:
            package_size = int(values["package_size"])
        except ValueError:
            errors["packageSize"] = ["Enter a whole number."]
    tiers: list[pricing.Tier] = []
    if model in pricing.TIERED:
        # Rows left wholly blank are ignored (the form may offer more than needed).
        filled = [(i, t) for i, t in enumerate(raw_tiers) if any(t.values())]
        for position, (i, tier) in enumerate(filled):
            last = position == len(filled) - 1
            up_to = None
            if tier["up_to"] and tier["up_to"].lower() not in ("inf", "∞"):
                up_to = _decimal(tier["up_to"], f"tiers.{i}.upTo", errors)
            elif not last:
                errors[f"tiers.{i}.upTo"] = ["Only the last tier is unbounded."]
            price = _decimal(tier["unit_price"], f"tiers.{i}.pricePerUnit", errors)
            fee = _decimal(tier["flat_fee"], f"tiers.{i}.flatFee", errors)
            tiers.append(
                pricing.Tier(
                    up_to=up_to,
                    unit_price=price if price is not None else Decimal(0),
                    flat_fee=fee if fee is not None else Decimal(0),
                )
            )
    max_usage = _decimal(values["max_usage"], "maxUsage", errors)
    overage = _decimal(values["overage_price"], "overagePricePerUnit", errors)
    form = RuleForm(values, raw_tiers, errors)
    if errors:
        return form
    rule = pricing.Rule(
        model=pricing.PricingModel(model),
        unit_price=unit_price if model in ("per_unit", "package") else None,
        package_size=package_size if model == "package" else None,
        tiers=tuple(tiers),
        max_usage=max_usage,
        overage_unit_price=overage,
    )
    spec = RuleSpec(
        rule=rule, reset_interval=values["reset_interval"] or "billing_period", is_enabled=True
    )
    problems = spec_errors(spec)
    if problems:
        form.errors = {k: list(v) for k, v in problems.items()}
        return form
    form.spec = spec
    return form


def _plan_page(
    request: HttpRequest, plan: Plan, form: RuleForm, *, preview: str = "", status: int = 200
) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    rules = plans.plan_rules(plan)
    context = {
        "plan": plan,
        "price_text": describe_plan_price(plan),
        "rules": [
            (
                rule,
                describe_rule(
                    rule.pricing_rule(),
                    unit_label=rule.feature.unit_label,
                    currency=plan.currency,
                    reset_interval=rule.reset_interval,
                ),
            )
            for rule in rules
        ],
        "features": features_for(environment).order_by("key"),
        "form": form,
        "tier_rows": list(enumerate(form.tiers)),
        "tier_count": len(form.tiers),
        "preview": preview,
        "models": PlanFeatureRule.Model.choices,
        "resets": PlanFeatureRule.ResetInterval.choices,
        "can_manage": _can_manage(request),
        "editable": _can_manage(request) and not plan.terms_frozen,
    }
    if getattr(request, "htmx", None):
        status = 200  # htmx swaps only 2xx answers: the errors are in the form it swaps in
    return _render(request, "dashboard/platform/plan.html", "editor", context, status)


@tenant_view()
def plan_detail(request: HttpRequest, plan_id: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    plan = _get_or_404(plans.plan_get, environment, str(plan_id))
    count = _tier_count(request.GET.get("tiers"), DEFAULT_TIER_ROWS)
    form = _blank_rule_form(count)
    edit = request.GET.get("feature")
    if edit:
        rule = next((r for r in plans.plan_rules(plan) if r.feature.key == edit), None)
        if rule is not None:
            form = _rule_form_from(rule)
            if "tiers" in request.GET:
                form.tiers = (form.tiers + [{}] * count)[: max(count, 1)]
    return _plan_page(request, plan, form)


def _unit_label(environment: Any, feature_key: str) -> str:
    try:
        feature = feature_get(environment, feature_key)
    except NotFound:
        return ""
    return feature.unit_label


@require_POST
@tenant_view(Role.MEMBER)
def plan_rule(request: HttpRequest, plan_id: str) -> HttpResponse:
    """Save (or preview, or add a tier row to) the rule editor's rule for one feature."""
    environment = request.environment  # type: ignore[attr-defined]
    plan = _get_or_404(plans.plan_get, environment, str(plan_id))
    form = _parse_rule_form(request.POST)
    action = request.POST.get("action", "save")
    if action == "add_tier":
        form.tiers.append({})
        form.tiers = form.tiers[:MAX_TIER_ROWS]
        form.errors = {}
        return _plan_page(request, plan, form)
    if form.spec is None:
        return _plan_page(request, plan, form, status=400)
    preview = describe_rule(
        form.spec.rule,
        unit_label=_unit_label(environment, form.values["feature"]),
        currency=plan.currency,
        reset_interval=form.spec.reset_interval,
    )
    if action == "preview":
        return _plan_page(request, plan, form, preview=preview)
    try:
        feature = feature_get(environment, form.values["feature"])
    except NotFound:
        form.errors = {"featureKey": ["Choose a feature of this environment."]}
        return _plan_page(request, plan, form, status=400)
    try:
        plan_feature_set(
            plan=plan, feature=feature, spec=form.spec, actor=Actor.from_request(request)
        )
    except TansoError as exc:
        form.errors = {k: list(v) for k, v in (exc.fields or {"_": [exc.message]}).items()}
        if plan.terms_frozen:
            messages.error(request, exc.message)  # the editor is not shown on a frozen plan
        return _plan_page(request, plan, form, status=409 if exc.status == 409 else 400)
    messages.success(request, f"{feature.key}: {preview}")
    return redirect("dashboard:plan", plan_id=plan.pk)


@require_POST
@tenant_view(Role.MEMBER)
def plan_rule_remove(request: HttpRequest, plan_id: str, feature_key: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    plan = _get_or_404(plans.plan_get, environment, str(plan_id))
    feature = _get_or_404(feature_get, environment, feature_key)
    try:
        plan_feature_remove(plan=plan, feature=feature, actor=Actor.from_request(request))
        messages.success(request, f"{feature.key} removed from the plan.")
    except TansoError as exc:
        messages.error(request, _error_text(exc))
    return redirect("dashboard:plan", plan_id=plan.pk)


@require_POST
@tenant_view(Role.MEMBER)
def plan_status(request: HttpRequest, plan_id: str, action: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    plan = _get_or_404(plans.plan_get, environment, str(plan_id))
    service = {"activate": plan_activate, "archive": plan_archive}.get(action)
    if service is None:
        raise Http404("No such action.")
    try:
        plan = service(plan=plan, actor=Actor.from_request(request))
        messages.success(request, f"Plan {plan.key} is {plan.status}.")
    except TansoError as exc:
        messages.error(request, _error_text(exc))
    return redirect("dashboard:plan", plan_id=plan.pk)


# --- Subscriptions ---------------------------------------------------------------------------

SUBSCRIPTION_STATUSES = (("", "All"), ("live", "Live"), *Subscription.Status.choices)


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
    page = _page_of(request, rows.order_by("-created_at", "-id"))
    context = {
        "page": page,
        "status": status,
        "statuses": SUBSCRIPTION_STATUSES,
        "q": q,
    }
    return _render(request, "dashboard/platform/subscriptions.html", "table", context)


@tenant_view()
def subscription_detail(request: HttpRequest, subscription_id: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    subscription = _get_or_404(subscriptions.subscription_get, environment, str(subscription_id))
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
        "can_manage": _can_manage(request),
        "is_live": subscription.status in Subscription.LIVE_STATUSES,
    }
    return render(request, "dashboard/platform/subscription.html", context)


@require_POST
@tenant_view(Role.MEMBER)
def subscription_action(request: HttpRequest, subscription_id: str, action: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    subscription = _get_or_404(subscriptions.subscription_get, environment, str(subscription_id))
    actor = Actor.from_request(request)
    try:
        if action == "cancel":
            mode = request.POST.get("mode", Subscription.CancelMode.END_OF_PERIOD).lower()
            subscription_cancel(subscription=subscription, mode=mode, actor=actor)
            messages.success(request, "Subscription cancelled.")
        elif action == "revert-cancel":
            subscription_cancel_revert(subscription=subscription, actor=actor)
            messages.success(request, "Scheduled cancellation withdrawn.")
        elif action == "change-plan":
            plan = _get_or_404(plans.plan_get, environment, request.POST.get("plan", ""))
            timing = request.POST.get("timing") or None
            change = subscription_change_plan(
                subscription=subscription, plan=plan, timing=timing, actor=actor
            )
            messages.success(
                request, f"Plan change to {plan.key}: {change.get_status_display().lower()}."
            )
        elif action == "drop-change":
            subscription_change_cancel(subscription=subscription, actor=actor)
            messages.success(request, "Scheduled plan change dropped.")
        else:
            raise Http404("No such action.")
    except TansoError as exc:
        messages.error(request, _error_text(exc))
    return redirect("dashboard:subscription", subscription_id=subscription.pk)


# --- Invoices --------------------------------------------------------------------------------

INVOICE_STATUSES = (("", "All"), *Invoice.Status.choices)


def invoice_amount(invoice: Invoice) -> Decimal:
    return from_minor_units(invoice.total_minor, invoice.currency)


@tenant_view()
def invoice_list(request: HttpRequest) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    status = request.GET.get("status", "")
    if status not in dict(INVOICE_STATUSES):
        status = ""
    rows = billing.invoices_search(environment, status=status or None).order_by(
        "-issued_at", "-sequence"
    )
    page = _page_of(request, rows)
    context = {
        "page": page,
        "invoices": [(inv, invoice_amount(inv)) for inv in page],
        "status": status,
        "statuses": INVOICE_STATUSES,
    }
    return _render(request, "dashboard/platform/invoices.html", "table", context)


@tenant_view()
def invoice_detail(request: HttpRequest, invoice_id: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    invoice = _get_or_404(billing.invoice_get, environment, invoice_id)
    context = {
        "invoice": invoice,
        "amount": invoice_amount(invoice),
        "lines": [
            (line, from_minor_units(line.amount_minor, invoice.currency))
            for line in invoice.lines.all()
        ],
        "can_manage": _can_manage(request),
    }
    return render(request, "dashboard/platform/invoice.html", context)


@require_POST
@tenant_view(Role.MEMBER)
def invoice_pay(request: HttpRequest, invoice_id: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    invoice = _get_or_404(billing.invoice_get, environment, invoice_id)
    try:
        invoice = invoice_mark_paid(
            invoice=invoice,
            reference=request.POST.get("reference", "")[:255],
            actor=Actor.from_request(request),
        )
        messages.success(request, f"Invoice {invoice.number} marked paid.")
    except TansoError as exc:
        messages.error(request, _error_text(exc))
    return redirect("dashboard:invoice", invoice_id=invoice.pk)


# --- Credits ---------------------------------------------------------------------------------


@tenant_view()
def credit_pools(request: HttpRequest) -> HttpResponse:
    """Every pool of the environment, grouped by customer, with burn and projected depletion."""
    environment = request.environment  # type: ignore[attr-defined]
    q = request.GET.get("q", "").strip()[:200]
    customers = scoped(Customer, environment).filter(
        pk__in=scoped(CreditPool, environment).values("customer_id")
    )
    if q:
        customers = customers.filter(reference_id__icontains=q)
    page = _page_of(request, customers.order_by("reference_id"))
    now = timezone.now()
    usage = credits.credit_usage_by_customer(environment, list(page), now=now)
    groups = [(c, usage.get(c.pk, [])) for c in page]
    context = {"page": page, "groups": groups, "q": q}
    return _render(request, "dashboard/platform/credits.html", "table", context)


@tenant_view()
def credit_pool(request: HttpRequest, pool_id: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    pool = _get_or_404(credits.pool_get_by_id, environment, pool_id)
    usage = next(
        (
            u
            for u in credits.customer_credit_usage(environment, pool.customer)
            if u.pool.pk == pool.pk
        ),
        None,
    )
    ledger = _page_of(
        request,
        credits.pool_transactions(pool).select_related("feature").order_by("-sequence"),
    )
    context = {
        "pool": pool,
        "usage": usage,
        "ledger": ledger,
        "grants": credits.pool_grants(pool).order_by("-granted_at")[:50],
    }
    return _render(request, "dashboard/platform/pool.html", "ledger", context)


# --- The customer page's platform section ----------------------------------------------------


def customer_platform(environment: Any, reference_id: str) -> dict[str, Any]:
    """Subscriptions, usage against the plan's limits, credit pools and invoices of a customer
    (empty when the reference names no customer)."""
    customer = scoped(Customer, environment).filter(reference_id=reference_id).first()
    if customer is None:
        return {"platform_customer": None}
    return {
        "platform_customer": customer,
        "customer_subscriptions": list(
            subscriptions.subscriptions_search(environment, customer=customer).order_by(
                "-created_at"
            )[:10]
        ),
        "customer_usage": [d for d in feature_usage(environment, reference_id) if d.usage],
        "customer_pools": (pools := credits.customer_credit_usage(environment, customer)),
        "customer_pool_groups": [(customer, pools)],
        "customer_invoices": [
            (inv, invoice_amount(inv))
            for inv in billing.invoices_search(environment, customer=customer).order_by(
                "-issued_at"
            )[:CUSTOMER_INVOICES]
        ],
    }


def customer_plans(environment: Any, reference_ids: list[str]) -> dict[str, Subscription]:
    """The newest subscription of each of these customers (for the customers table)."""
    rows = (
        subscriptions.subscriptions_for(environment)
        .filter(customer__reference_id__in=reference_ids)
        .select_related("customer", "plan")
        .order_by("customer_id", "-created_at")
    )
    found: dict[str, Subscription] = {}
    for sub in rows:
        found.setdefault(sub.customer.reference_id, sub)
    return found
