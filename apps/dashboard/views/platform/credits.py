"""Credits: every customer's pools, one pool with its ledger; credit models (the
denominations) and plan allocations; grants and manual deductions (adjustments).

Writes go through ``apps.credits.services`` as the API's do: a grant finds or opens the
customer's pool of the denomination (``credit_pool_ensure``) and adds to it
(``credit_grant``), in one transaction; a form's one-time token is the grant's source
reference, so a form sent twice grants once."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.accounts.audit import Actor
from apps.accounts.models import Role
from apps.core.errors import NotFound, TansoError
from apps.core.tenancy import scoped
from apps.credits import selectors as credits
from apps.credits.models import DENOMINATION_MAX_LENGTH, CreditPool, GrantType, RolloverPolicy
from apps.credits.services import (
    credit_grant,
    credit_model_archive,
    credit_model_create,
    credit_pool_ensure,
    credits_deduct,
    plan_allocation_remove,
    plan_allocation_set,
)
from apps.customers.models import Customer
from apps.customers.selectors import customer_get
from apps.dashboard.decorators import tenant_view
from apps.plans import selectors as plans

from .common import (
    can_manage,
    form_errors,
    get_or_404,
    page_of,
    parse_decimal,
    parse_int,
    render_page,
)

# As the API's denomination field: letters, digits, "_" and "-" (it appears in URLs).
DENOMINATION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
# Grant types a person gives by hand ("plan" and "rollover" come from the billing cycle).
MANUAL_GRANT_TYPES = [
    (v, label) for v, label in GrantType.choices if v not in (GrantType.PLAN, GrantType.ROLLOVER)
]
MODEL_FIELDS = {
    "name": "name",
    "denomination": "denomination",
    "rolloverPolicy": "rollover_policy",
    "rolloverCap": "rollover_cap",
    "grantExpiresMonths": "grant_expiry_months",
}
ALLOCATION_FIELDS = {
    "planKey": "plan",
    "creditModelId": "credit_model",
    "creditAmount": "credit_amount",
    "grantExpiresMonths": "grant_expiry_months",
}
GRANT_FIELDS = {
    "customerReferenceId": "customer",
    "denomination": "credit_model",
    "amount": "amount",
    "grantType": "grant_type",
    "expiresAt": "expires_in_days",
}
DEDUCT_FIELDS = {"amount": "amount", "description": "description"}


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
    page = page_of(request, customers.order_by("reference_id"))
    now = timezone.now()
    usage = credits.credit_usage_by_customer(environment, list(page), now=now)
    groups = [(c, usage.get(c.pk, [])) for c in page]
    context = {
        "page": page,
        "groups": groups,
        "q": q,
        "can_manage": can_manage(request),
        **_grant_form_context(request, {}, {}),
    }
    return render_page(request, "dashboard/platform/credits.html", "table", context)


@tenant_view()
def credit_pool(request: HttpRequest, pool_id: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    pool = get_or_404(credits.pool_get_by_id, environment, pool_id)
    return _pool_page(request, pool)


def _pool_page(
    request: HttpRequest,
    pool: CreditPool,
    *,
    errors: dict[str, list[str]] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    usage = next(
        (
            u
            for u in credits.customer_credit_usage(environment, pool.customer)
            if u.pool.pk == pool.pk
        ),
        None,
    )
    ledger = page_of(
        request,
        credits.pool_transactions(pool).select_related("feature").order_by("-sequence"),
    )
    context = {
        "pool": pool,
        "usage": usage,
        "ledger": ledger,
        "grants": credits.pool_grants(pool).order_by("-granted_at")[:50],
        "can_manage": can_manage(request),
        "grant_types": MANUAL_GRANT_TYPES,
        "grant_token": uuid.uuid4().hex,
        "errors": errors or {},
        "values": values or {},
    }
    return render_page(request, "dashboard/platform/pool.html", "ledger", context, status)


def _grant_form_context(
    request: HttpRequest, values: dict[str, str], errors: dict[str, list[str]]
) -> dict[str, Any]:
    environment = request.environment  # type: ignore[attr-defined]
    return {
        "credit_models": credits.credit_models_for(environment)
        .filter(archived_at__isnull=True)
        .order_by("denomination"),
        "grant_types": MANUAL_GRANT_TYPES,
        "grant_token": uuid.uuid4().hex,
        "grant_values": values,
        "grant_errors": errors,
    }


def _expiry(raw: str, errors: dict[str, list[str]]) -> dt.datetime | None:
    days = parse_int(raw, "expires_in_days", errors)
    if days is None:
        return None
    if not 1 <= days <= 36_500:
        errors["expires_in_days"] = ["Between 1 and 36,500 days."]
        return None
    return timezone.now() + dt.timedelta(days=days)


def _give(
    request: HttpRequest, pool_of: Any, values: dict[str, str], errors: dict[str, list[str]]
) -> tuple[Any, dict[str, list[str]]]:
    """Grant ``values['amount']`` to the pool ``pool_of()`` finds or opens; the grant, or
    the errors by form field."""
    amount = parse_decimal(values.get("amount", ""), "amount", errors)
    if amount is None and "amount" not in errors:
        errors["amount"] = ["Enter how many credits."]
    grant_type = values.get("grant_type") or GrantType.MANUAL
    if grant_type not in dict(MANUAL_GRANT_TYPES):
        errors["grant_type"] = ["Choose a kind of grant."]
    expires_at = _expiry(values.get("expires_in_days", ""), errors)
    token = values.get("grant_token") or uuid.uuid4().hex
    if errors or amount is None:
        return None, errors
    try:
        with transaction.atomic():  # a pool opened for a refused grant is not kept
            pool = pool_of()
            grant = credit_grant(
                pool=pool,
                amount=amount,
                grant_type=grant_type,
                source_ref=f"dashboard:{token[:64]}",
                expires_at=expires_at,
                actor=Actor.from_request(request),
                description=values.get("description", "")[:500],
            )
    except TansoError as exc:
        return None, form_errors(exc, GRANT_FIELDS)
    return grant, {}


_GRANT_INPUTS = (
    "customer",
    "credit_model",
    "amount",
    "grant_type",
    "expires_in_days",
    "description",
    "grant_token",
)


@require_POST
@tenant_view(Role.MEMBER)
def credit_grant_new(request: HttpRequest) -> HttpResponse:
    """Grant credits to a customer in a denomination (the pool is opened when missing)."""
    environment = request.environment  # type: ignore[attr-defined]
    values = {name: (request.POST.get(name) or "").strip() for name in _GRANT_INPUTS}
    errors: dict[str, list[str]] = {}
    customer = model = None
    try:
        customer = customer_get(environment, values["customer"])
    except NotFound:
        errors["customer"] = ["No customer has this reference."]
    try:
        model = credits.credit_model_get(environment, values["credit_model"])
    except (NotFound, ValueError, TypeError):
        errors["credit_model"] = ["Choose a credit model."]
    if not errors and customer is not None and model is not None:
        c, m = customer, model

        def pool_of() -> CreditPool:
            return credit_pool_ensure(environment=environment, customer=c, credit_model=m)

        grant, errors = _give(request, pool_of, values, errors)
        if grant is not None:
            messages.success(
                request,
                f"{grant.amount} {grant.pool.denomination} granted to {c.reference_id}.",
            )
            return redirect("dashboard:credit_pool", pool_id=grant.pool_id)
    # The page again, with the form's values and errors beside its fields.
    return _credits_page_with(request, _grant_form_context(request, values, errors))


def _credits_page_with(request: HttpRequest, grant_context: dict[str, Any]) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    customers = scoped(Customer, environment).filter(
        pk__in=scoped(CreditPool, environment).values("customer_id")
    )
    page = page_of(request, customers.order_by("reference_id"))
    usage = credits.credit_usage_by_customer(environment, list(page), now=timezone.now())
    context = {
        "page": page,
        "groups": [(c, usage.get(c.pk, [])) for c in page],
        "q": "",
        "can_manage": True,
        **grant_context,
    }
    return render(request, "dashboard/platform/credits.html", context, status=400)


@require_POST
@tenant_view(Role.MEMBER)
def credit_pool_grant(request: HttpRequest, pool_id: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    pool = get_or_404(credits.pool_get_by_id, environment, pool_id)
    values = {name: (request.POST.get(name) or "").strip() for name in _GRANT_INPUTS}
    grant, errors = _give(request, lambda: pool, values, {})
    if grant is None:
        return _pool_page(request, pool, errors=errors, values=values, status=400)
    messages.success(request, f"{grant.amount} {pool.denomination} granted.")
    return redirect("dashboard:credit_pool", pool_id=pool.pk)


@require_POST
@tenant_view(Role.MEMBER)
def credit_pool_deduct(request: HttpRequest, pool_id: str) -> HttpResponse:
    """An adjustment down: a manual deduction (a hard-limit pool refuses to go below 0)."""
    environment = request.environment  # type: ignore[attr-defined]
    pool = get_or_404(credits.pool_get_by_id, environment, pool_id)
    values = {
        "deduct_amount": (request.POST.get("deduct_amount") or "").strip(),
        "description": (request.POST.get("description") or "").strip()[:500],
        "deduct_token": (request.POST.get("deduct_token") or "").strip()[:64],
    }
    errors: dict[str, list[str]] = {}
    amount = parse_decimal(values["deduct_amount"], "deduct_amount", errors)
    if amount is None and not errors:
        errors["deduct_amount"] = ["Enter how many credits."]
    if not errors and amount is not None:
        try:
            credits_deduct(
                pool=pool,
                amount=amount,
                actor=Actor.from_request(request),
                description=values["description"],
                idempotency_key=f"dashboard:{values['deduct_token']}"
                if values["deduct_token"]
                else "",
            )
        except TansoError as exc:
            errors = form_errors(exc, {"amount": "deduct_amount", "description": "description"})
        else:
            messages.success(request, f"{amount} {pool.denomination} deducted.")
            return redirect("dashboard:credit_pool", pool_id=pool.pk)
    return _pool_page(request, pool, errors=errors, values=values, status=400)


# --- Credit models and plan allocations --------------------------------------------------


def _models_page(
    request: HttpRequest,
    *,
    errors: dict[str, list[str]] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    context = {
        "credit_models": credits.credit_models_for(environment).order_by(
            "archived_at", "denomination"
        ),
        "allocations": credits.allocations_for(environment).order_by(
            "plan_key", "credit_model__denomination"
        ),
        "plans": plans.plans_list(environment).exclude(status="archived").order_by("key"),
        "policies": RolloverPolicy.choices,
        "can_manage": can_manage(request),
        "errors": errors or {},
        "values": values or {},
    }
    return render(request, "dashboard/platform/credit_models.html", context, status=status)


@tenant_view()
def credit_models(request: HttpRequest) -> HttpResponse:
    return _models_page(request)


@require_POST
@tenant_view(Role.MEMBER)
def credit_model_new(request: HttpRequest) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    names = (
        "name",
        "denomination",
        "description",
        "rollover_policy",
        "rollover_cap",
        "grant_expiry_months",
        "hard_limit",
    )
    values = {name: (request.POST.get(name) or "").strip() for name in names}
    values["form"] = "model"
    errors: dict[str, list[str]] = {}
    if not values["name"]:
        errors["name"] = ["Enter a name."]
    denomination = values["denomination"]
    if not denomination:
        errors["denomination"] = ["Enter a denomination, e.g. AI_CREDITS."]
    elif len(denomination) > DENOMINATION_MAX_LENGTH or not DENOMINATION_RE.match(denomination):
        errors["denomination"] = [
            f"Letters, digits, _ and -, up to {DENOMINATION_MAX_LENGTH} characters."
        ]
    policy = values["rollover_policy"] or RolloverPolicy.NONE
    if policy not in RolloverPolicy.values:
        errors["rollover_policy"] = ["Choose what happens to unused credits."]
    cap = parse_decimal(values["rollover_cap"], "rollover_cap", errors)
    expiry = parse_int(values["grant_expiry_months"], "grant_expiry_months", errors)
    if not errors:
        try:
            model = credit_model_create(
                environment=environment,
                name=values["name"][:150],
                denomination=denomination,
                description=values["description"],
                hard_limit=values["hard_limit"] != "no",
                rollover_policy=policy,
                rollover_cap=cap,
                grant_expiry_months=expiry,
                actor=Actor.from_request(request),
            )
        except TansoError as exc:
            return _models_page(
                request, errors=form_errors(exc, MODEL_FIELDS), values=values, status=exc.status
            )
        else:
            messages.success(request, f"Credit model {model.denomination} created.")
            return redirect("dashboard:credit_models")
    return _models_page(request, errors=errors, values=values, status=400)


@require_POST
@tenant_view(Role.MEMBER)
def credit_model_archive_view(request: HttpRequest, model_id: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    model = get_or_404(credits.credit_model_get, environment, model_id)
    credit_model_archive(credit_model=model, actor=Actor.from_request(request))
    messages.success(
        request, f"{model.denomination} archived: no new pools or allocations; pools go on."
    )
    return redirect("dashboard:credit_models")


@require_POST
@tenant_view(Role.MEMBER)
def allocation_new(request: HttpRequest) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    names = ("plan", "credit_model", "credit_amount", "grant_expiry_months")
    values = {name: (request.POST.get(name) or "").strip() for name in names}
    values["form"] = "allocation"
    errors: dict[str, list[str]] = {}
    plan = model = None
    try:
        plan = plans.plan_get(environment, values["plan"]) if values["plan"] else None
    except NotFound:
        plan = None
    if plan is None:
        errors["plan"] = ["Choose a plan."]
    try:
        model = credits.credit_model_get(environment, values["credit_model"])
    except (NotFound, ValueError, TypeError):
        errors["credit_model"] = ["Choose a credit model."]
    amount = parse_decimal(values["credit_amount"], "credit_amount", errors)
    if amount is None and "credit_amount" not in errors:
        errors["credit_amount"] = ["Enter the credits granted each period."]
    expiry = parse_int(values["grant_expiry_months"], "grant_expiry_months", errors)
    if not errors and plan is not None and model is not None and amount is not None:
        try:
            plan_allocation_set(
                environment=environment,
                plan_key=plan.key,
                credit_model=model,
                credit_amount=amount,
                grant_expiry_months=expiry,
                actor=Actor.from_request(request),
            )
        except TansoError as exc:
            return _models_page(
                request,
                errors=form_errors(exc, ALLOCATION_FIELDS),
                values=values,
                status=exc.status,
            )
        else:
            messages.success(
                request, f"{plan.key} grants {amount} {model.denomination} each period."
            )
            return redirect("dashboard:credit_models")
    return _models_page(request, errors=errors, values=values, status=400)


@require_POST
@tenant_view(Role.MEMBER)
def allocation_remove(request: HttpRequest, allocation_id: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    allocation = get_or_404(credits.allocation_get, environment, allocation_id)
    plan_allocation_remove(allocation=allocation, actor=Actor.from_request(request))
    messages.success(
        request,
        f"{allocation.plan_key} no longer grants {allocation.credit_model.denomination}; "
        "grants already made stay.",
    )
    return redirect("dashboard:credit_models")
