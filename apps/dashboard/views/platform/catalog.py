"""The catalog in the browser: create and edit customers and features, through the same
services as the API (``customer_create`` / ``customer_update``, ``feature_create`` /
``feature_update``): a reference that an event already named is claimed, a taken one is
shown as an error beside the field."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from apps.accounts.audit import Actor
from apps.accounts.models import Role
from apps.core.errors import TansoError
from apps.core.tenancy import get_scoped_or_404
from apps.customers.models import Customer
from apps.customers.services import customer_create, customer_update
from apps.dashboard.decorators import tenant_view
from apps.features.models import Feature
from apps.features.selectors import features_for
from apps.features.services import feature_create, feature_update

from .common import can_manage, form_errors, page_of

# The services' (API) field names -> the forms' inputs.
CUSTOMER_FIELDS = {
    "customerReferenceId": "reference_id",
    "email": "email",
    "firstName": "first_name",
    "lastName": "last_name",
    "phoneNumber": "phone",
}
CUSTOMER_INPUTS = ("email", "first_name", "last_name", "phone")
FEATURE_FIELDS = {
    "key": "key",
    "name": "name",
    "description": "description",
    "unitLabel": "unit_label",
    "isEnabled": "is_enabled",
}
FEATURE_INPUTS = ("name", "description", "unit_label")


def _customer_form(
    request: HttpRequest,
    customer: Customer | None,
    values: dict[str, str],
    errors: dict[str, list[str]],
    status: int = 200,
) -> HttpResponse:
    context = {"customer": customer, "values": values, "errors": errors}
    return render(request, "dashboard/platform/customer_form.html", context, status=status)


@require_http_methods(["GET", "POST"])
@tenant_view(Role.MEMBER)
def customer_new(request: HttpRequest) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    if request.method == "GET":
        return _customer_form(request, None, {"reference_id": request.GET.get("ref", "")}, {})
    values = {
        name: (request.POST.get(name) or "").strip() for name in ("reference_id", *CUSTOMER_INPUTS)
    }
    if not values["reference_id"]:
        return _customer_form(
            request, None, values, {"reference_id": ["Enter the customer's reference."]}, 400
        )
    try:
        customer = customer_create(
            environment=environment,
            reference_id=values["reference_id"],
            email=values["email"],
            first_name=values["first_name"],
            last_name=values["last_name"],
            phone=values["phone"],
            actor=Actor.from_request(request),
        )
    except TansoError as exc:
        return _customer_form(request, None, values, form_errors(exc, CUSTOMER_FIELDS), exc.status)
    messages.success(request, f"Customer {customer.reference_id} created.")
    return redirect("dashboard:customer", reference_id=customer.reference_id)


@require_http_methods(["GET", "POST"])
@tenant_view(Role.MEMBER)
def customer_edit(request: HttpRequest, customer_id: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    customer = get_scoped_or_404(Customer, environment, pk=customer_id)
    if request.method == "GET":
        values = {name: getattr(customer, name) for name in CUSTOMER_INPUTS}
        return _customer_form(request, customer, values, {})
    values = {name: (request.POST.get(name) or "").strip() for name in CUSTOMER_INPUTS}
    try:
        customer_update(customer=customer, actor=Actor.from_request(request), **values)
    except TansoError as exc:
        customer.refresh_from_db()
        return _customer_form(
            request, customer, values, form_errors(exc, CUSTOMER_FIELDS), exc.status
        )
    messages.success(request, f"Customer {customer.reference_id} saved.")
    return redirect("dashboard:customer", reference_id=customer.reference_id)


# --- Features --------------------------------------------------------------------------------


def _features_page(
    request: HttpRequest, values: dict[str, Any], errors: dict[str, list[str]], status: int = 200
) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    context = {
        "page": page_of(request, features_for(environment).order_by("key")),
        "values": values,
        "errors": errors,
        "can_manage": can_manage(request),
    }
    return render(request, "dashboard/platform/features.html", context, status=status)


@require_http_methods(["GET", "POST"])
@tenant_view()
def feature_list(request: HttpRequest) -> HttpResponse:
    """The feature catalog; a POST (member role) defines a new feature."""
    if request.method == "GET":
        return _features_page(request, {"is_enabled": True}, {})
    if not can_manage(request):
        raise PermissionDenied("This needs the member role.")
    environment = request.environment  # type: ignore[attr-defined]
    values: dict[str, Any] = {
        name: (request.POST.get(name) or "").strip() for name in ("key", *FEATURE_INPUTS)
    }
    values["is_enabled"] = request.POST.get("is_enabled") == "on"
    if not values["key"]:
        return _features_page(request, values, {"key": ["Enter a key, e.g. chat."]}, 400)
    try:
        feature = feature_create(
            environment=environment,
            key=values["key"],
            **{name: values[name] for name in FEATURE_INPUTS},
            is_enabled=values["is_enabled"],
            actor=Actor.from_request(request),
        )
    except TansoError as exc:
        return _features_page(request, values, form_errors(exc, FEATURE_FIELDS), exc.status)
    messages.success(request, f"Feature {feature.key} created: plans can now price it.")
    return redirect("dashboard:catalog_features")


@require_http_methods(["GET", "POST"])
@tenant_view(Role.MEMBER)
def feature_edit(request: HttpRequest, feature_id: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    feature = get_scoped_or_404(Feature, environment, pk=feature_id)
    if request.method == "GET":
        values: dict[str, Any] = {name: getattr(feature, name) for name in FEATURE_INPUTS}
        values["is_enabled"] = feature.is_enabled
        return _feature_form(request, feature, values, {})
    values = {name: (request.POST.get(name) or "").strip() for name in FEATURE_INPUTS}
    values["is_enabled"] = request.POST.get("is_enabled") == "on"
    try:
        feature_update(feature=feature, actor=Actor.from_request(request), **values)
    except TansoError as exc:
        feature.refresh_from_db()
        return _feature_form(request, feature, values, form_errors(exc, FEATURE_FIELDS), exc.status)
    messages.success(request, f"Feature {feature.key} saved.")
    return redirect("dashboard:catalog_features")


def _feature_form(
    request: HttpRequest,
    feature: Feature,
    values: dict[str, Any],
    errors: dict[str, list[str]],
    status: int = 200,
) -> HttpResponse:
    context = {"feature": feature, "values": values, "errors": errors}
    return render(request, "dashboard/platform/feature_form.html", context, status=status)
