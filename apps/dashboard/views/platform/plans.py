"""Plans: the catalog of plans, one plan with its rules, the rule editor, activation
(asks first: it freezes the plan's terms) and archiving."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.accounts.audit import Actor
from apps.accounts.models import Role
from apps.core.errors import NotFound, TansoError
from apps.core.money import decimal_str
from apps.dashboard.confirm import Confirmation, needs_confirmation
from apps.dashboard.decorators import tenant_view
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

from .common import can_manage, error_text, get_or_404, page_of, parse_decimal, render_page

MAX_TIER_ROWS = pricing.MAX_TIERS
DEFAULT_TIER_ROWS = 3


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
    page = page_of(request, rows)
    context = {
        "page": page,
        "plans": [(plan, describe_plan_price(plan)) for plan in page],
        "status": status,
        "statuses": PLAN_STATUSES,
        "can_manage": can_manage(request),
        "errors": errors,
        "values": request.POST if request.method == "POST" else {},
        "intervals": Plan.Interval.choices,
        "timings": Plan.BillingTiming.choices,
    }
    return render_page(request, "dashboard/platform/plans.html", "table", context, status_code)


@require_POST
@tenant_view(Role.MEMBER)
def plan_new(request: HttpRequest) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    data = request.POST
    errors: dict[str, list[str]] = {}
    price = parse_decimal(data.get("price_amount", ""), "priceAmount", errors)
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
    unit_price = parse_decimal(values["price_per_unit"], "pricePerUnit", errors)
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
                up_to = parse_decimal(tier["up_to"], f"tiers.{i}.upTo", errors)
            elif not last:
                errors[f"tiers.{i}.upTo"] = ["Only the last tier is unbounded."]
            price = parse_decimal(tier["unit_price"], f"tiers.{i}.pricePerUnit", errors)
            fee = parse_decimal(tier["flat_fee"], f"tiers.{i}.flatFee", errors)
            tiers.append(
                pricing.Tier(
                    up_to=up_to,
                    unit_price=price if price is not None else Decimal(0),
                    flat_fee=fee if fee is not None else Decimal(0),
                )
            )
    max_usage = parse_decimal(values["max_usage"], "maxUsage", errors)
    overage = parse_decimal(values["overage_price"], "overagePricePerUnit", errors)
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


TIER_LABELS = {"upTo": "up to", "pricePerUnit": "unit price", "flatFee": "flat fee"}


def _tier_errors(errors: dict[str, list[str]]) -> list[tuple[str, str, list[str]]]:
    """The tier rows' errors with the labels on screen: ``tiers.1.upTo`` is "Tier 2, up to"."""
    found = []
    for field, msgs in errors.items():
        parts = field.split(".")
        if parts[0] != "tiers" or len(parts) != 3 or not parts[1].isdigit():
            continue
        label = f"Tier {int(parts[1]) + 1}, {TIER_LABELS.get(parts[2], parts[2])}"
        found.append((field, label, msgs))
    return found


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
        "tier_errors": _tier_errors(form.errors),
        "tier_count": len(form.tiers),
        "preview": preview,
        "models": PlanFeatureRule.Model.choices,
        "resets": PlanFeatureRule.ResetInterval.choices,
        "can_manage": can_manage(request),
        "editable": can_manage(request) and not plan.terms_frozen,
    }
    if getattr(request, "htmx", None):
        status = 200  # htmx swaps only 2xx answers: the errors are in the form it swaps in
    return render_page(request, "dashboard/platform/plan.html", "editor", context, status)


@tenant_view()
def plan_detail(request: HttpRequest, plan_id: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    plan = get_or_404(plans.plan_get, environment, str(plan_id))
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
    plan = get_or_404(plans.plan_get, environment, str(plan_id))
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
    plan = get_or_404(plans.plan_get, environment, str(plan_id))
    feature = get_or_404(feature_get, environment, feature_key)
    try:
        plan_feature_remove(plan=plan, feature=feature, actor=Actor.from_request(request))
        messages.success(request, f"{feature.key} removed from the plan.")
    except TansoError as exc:
        messages.error(request, error_text(exc))
    return redirect("dashboard:plan", plan_id=plan.pk)


@require_POST
@tenant_view(Role.MEMBER)
def plan_status(request: HttpRequest, plan_id: str, action: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    plan = get_or_404(plans.plan_get, environment, str(plan_id))
    service = {"activate": plan_activate, "archive": plan_archive}.get(action)
    if service is None:
        raise Http404("No such action.")
    if action == "activate" and plan.status == Plan.Status.DRAFT:
        asked = needs_confirmation(
            request,
            Confirmation(
                title=f"Activate plan {plan.key}?",
                consequence=(
                    "Activating freezes the plan's terms: its price and rules can no longer be "
                    "edited, and customers can be subscribed to it. This cannot be undone; "
                    "to change the terms later, create another plan."
                ),
                label="Activate and freeze the terms",
                back_url=reverse("dashboard:plan", args=[plan.pk]),
                details=[
                    ("Plan", f"{plan.name} ({plan.key})"),
                    ("Price", describe_plan_price(plan)),
                ],
            ),
        )
        if asked is not None:
            return asked
    try:
        plan = service(plan=plan, actor=Actor.from_request(request))
        messages.success(request, f"Plan {plan.key} is {plan.status}.")
    except TansoError as exc:
        messages.error(request, error_text(exc))
    return redirect("dashboard:plan", plan_id=plan.pk)
