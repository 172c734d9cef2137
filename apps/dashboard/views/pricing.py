"""Settings → model prices: the environment's negotiated rates (overrides) and
re-costing the events that have no price.

Everyone reads; changing anything needs the member role (as API keys do).
Writes go through the apps.pricing services, re-costing through the Celery
task apps.events.tasks.recost_events, enqueued once the request commits.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.accounts.audit import Actor
from apps.accounts.models import Role
from apps.analytics.params import parse_instant
from apps.core.errors import TansoError
from apps.dashboard import selectors
from apps.dashboard.confirm import Confirmation, needs_confirmation
from apps.dashboard.decorators import tenant_view
from apps.dashboard.forms import OverrideForm
from apps.events.services import events_recost_request
from apps.pricing.models import ModelPriceOverride
from apps.pricing.selectors import override_get, overrides_for
from apps.pricing.services import API_FIELD, override_create, override_delete, override_update

# Where unpriced models are listed from (the all-time count needs no window).
UNPRICED_LOOKBACK = dt.timedelta(days=90)
# API field names in service errors -> form field names.
FORM_FIELD = {api: name for name, api in API_FIELD.items()}


def _can_manage(request: HttpRequest) -> bool:
    return request.membership.at_least(Role.MEMBER)  # type: ignore[attr-defined]


def _initial(override: ModelPriceOverride) -> dict[str, Any]:
    return {
        "kind": "discount" if override.discount_percent is not None else "rates",
        "provider": override.provider,
        "model": override.model,
        "note": override.note,
        "discount_percent": override.discount_percent,
        **{name: getattr(override, name) for name in OverrideForm.RATE_FIELDS},
    }


def _on_screen(form: OverrideForm, message: str) -> str:
    """The service's message with the API's field names (``inputCostPerMillion``) turned
    into the labels this form shows ("Input, USD per 1M tokens")."""
    for api_name in sorted(FORM_FIELD, key=len, reverse=True):
        name = FORM_FIELD[api_name]
        # Only the API's own spellings ("provider" is a word on screen too).
        if api_name != name and api_name in message and name in form.fields:
            message = message.replace(api_name, f"“{form[name].label}”")
    return message


def _add_errors(form: OverrideForm, exc: TansoError) -> None:
    for field, errors in (exc.fields or {"_body": [exc.message]}).items():
        name = FORM_FIELD.get(field)
        for error in errors:
            form.add_error(name if name in form.fields else None, _on_screen(form, error))


def _since(raw: str | None) -> dt.datetime | None:
    if not raw:
        return None
    try:
        return parse_instant(raw)
    except (ValueError, OverflowError):
        return None


def _page(
    request: HttpRequest,
    form: OverrideForm,
    *,
    editing: ModelPriceOverride | None = None,
    status: int = 200,
) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    now = timezone.now()
    since = _since(request.GET.get("since"))
    return render(
        request,
        "dashboard/pricing/overrides.html",
        {
            "overrides": overrides_for(environment).order_by("provider", "model"),
            "form": form,
            "editing": editing,
            "can_manage": _can_manage(request),
            "unpriced": selectors.unpriced_count(environment),
            "unpriced_models": selectors.unpriced_models(
                environment, start=now - UNPRICED_LOOKBACK, end=now + dt.timedelta(hours=1)
            )[:20],
            "run": selectors.recost_run_since(environment, since),
            "since": since.isoformat() if since else "",
        },
        status=status,
    )


@tenant_view()
def overrides(request: HttpRequest) -> HttpResponse:
    # The models page links an unpriced model here with ?provider=&model= to prefill.
    prefill = {
        name: request.GET[name][:200] for name in ("provider", "model") if name in request.GET
    }
    return _page(request, OverrideForm(initial=prefill))


@require_POST
@tenant_view(Role.MEMBER)
def override_new(request: HttpRequest) -> HttpResponse:
    form = OverrideForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    try:
        override = override_create(
            environment=request.environment,  # type: ignore[attr-defined]
            actor=Actor.from_request(request),
            **form.service_values(),  # type: ignore[arg-type]
        )
    except TansoError as exc:
        _add_errors(form, exc)
        return _page(request, form, status=400)
    messages.success(request, f"Override for {override} saved.")
    return redirect("dashboard:overrides")


@tenant_view()
def override_edit(request: HttpRequest, override_id: str) -> HttpResponse:
    override = override_get(request.environment, override_id)  # type: ignore[attr-defined]
    if request.method != "POST":
        return _page(request, OverrideForm(initial=_initial(override)), editing=override)
    if not _can_manage(request):
        raise PermissionDenied("Changing model prices needs the member role.")
    form = OverrideForm(request.POST)
    if not form.is_valid():
        return _page(request, form, editing=override, status=400)
    try:
        override_update(
            override=override, changes=form.service_values(), actor=Actor.from_request(request)
        )
    except TansoError as exc:
        _add_errors(form, exc)
        return _page(request, form, editing=override, status=400)
    messages.success(request, f"Override for {override} updated.")
    return redirect("dashboard:overrides")


@require_POST
@tenant_view(Role.MEMBER)
def override_remove(request: HttpRequest, override_id: str) -> HttpResponse:
    override = override_get(request.environment, override_id)  # type: ignore[attr-defined]
    label = str(override)
    asked = needs_confirmation(
        request,
        Confirmation(
            title=f"Delete the price override for {label}?",
            consequence=(
                "Events from now on are priced with the catalog's price for this model again. "
                "Events already priced keep their cost; the override cannot be restored "
                "(create a new one instead)."
            ),
            label="Delete override",
            back_url=reverse("dashboard:overrides"),
        ),
    )
    if asked is not None:
        return asked
    override_delete(override=override, actor=Actor.from_request(request))
    messages.success(request, f"Override for {label} deleted.")
    return redirect("dashboard:overrides")


@require_POST
@tenant_view(Role.MEMBER)
def recost(request: HttpRequest) -> HttpResponse:
    """Enqueue re-costing of the environment's unpriced events; the page polls its run."""
    environment = request.environment  # type: ignore[attr-defined]
    since = timezone.now()
    events_recost_request(
        environment=environment,
        actor=Actor.from_request(request),
        label=f"dashboard:{request.user.email}",  # type: ignore[union-attr]
    )
    messages.success(request, "Re-costing queued: unpriced events are priced in the background.")
    query = urlencode({"since": since.isoformat()})
    return redirect(f"{reverse('dashboard:overrides')}?{query}#recost")


@tenant_view()
def recost_status(request: HttpRequest) -> HttpResponse:
    """The status of the latest run since ``?since=`` (polled until it has finished)."""
    environment = request.environment  # type: ignore[attr-defined]
    since = _since(request.GET.get("since"))
    if not getattr(request, "htmx", None):
        # Without JavaScript the settings page itself shows the status.
        query = "?" + urlencode({"since": since.isoformat()}) if since else ""
        return redirect(f"{reverse('dashboard:overrides')}{query}#recost")
    return render(
        request,
        "dashboard/pricing/overrides.html#recost",
        {
            "run": selectors.recost_run_since(environment, since),
            "since": since.isoformat() if since else "",
            "unpriced": selectors.unpriced_count(environment),
            "can_manage": _can_manage(request),
        },
    )
