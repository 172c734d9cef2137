"""What the Platform pages share: one view two renderings, the role check, 404s from the
selectors' ``NotFound``, paging, typed numbers, and service errors shown with the labels on
screen instead of the API's field paths."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from apps.accounts.models import Role
from apps.core.errors import NotFound, TansoError

PAGE_SIZE = 50


def render_page(
    request: HttpRequest, template: str, partial: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    htmx = getattr(request, "htmx", None)
    name = f"{template}#{partial}" if htmx and not htmx.boosted else template
    return render(request, name, context, status=status)


def can_manage(request: HttpRequest) -> bool:
    return request.membership.at_least(Role.MEMBER)  # type: ignore[attr-defined]


def error_text(exc: TansoError, labels: dict[str, str] | None = None) -> str:
    """The service's message, and each field's problem under the label the form shows."""
    labels = labels or {}
    details = "; ".join(
        f"{labels.get(field, field)}: {' '.join(str(m) for m in msgs)}"
        for field, msgs in (exc.fields or {}).items()
    )
    return f"{exc.message} ({details})" if details else exc.message


def form_errors(exc: TansoError, fields: dict[str, str]) -> dict[str, list[str]]:
    """A service error as ``{form field: messages}``: ``fields`` maps the API field the
    services name (``customerReferenceId``) to the form's input (``reference_id``); a field
    the form does not have, or no field at all, goes under ``form`` (shown above the form)."""
    errors: dict[str, list[str]] = {}
    for api_field, msgs in (exc.fields or {}).items():
        name = fields.get(api_field, "form")
        errors.setdefault(name, []).extend(str(m) for m in msgs)
    if not errors or "form" in errors:
        errors.setdefault("form", []).insert(0, exc.message)
    return errors


def get_or_404(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except NotFound as exc:
        raise Http404(exc.message) from None


def page_of(request: HttpRequest, queryset: Any) -> Any:
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


def parse_decimal(raw: str, field: str, errors: dict[str, list[str]]) -> Decimal | None:
    """``raw`` as a finite Decimal, ``None`` when blank; a problem is added under ``field``."""
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


def parse_int(raw: str, field: str, errors: dict[str, list[str]]) -> int | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        errors.setdefault(field, []).append("Enter a whole number.")
        return None
