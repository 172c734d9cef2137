"""Dashboard: the Stripe import panel (start an import, watch its progress bar).

The Stripe settings page includes the panel with ``{% load stripe_import %}
{% stripe_import_panel %}`` (see :mod:`.templatetags.stripe_import`); the panel polls
:func:`import_panel` with htmx every 2 s while a job runs. Without JavaScript the
button posts a plain form and lands on :func:`import_page`, which shows the same
panel (reload to follow the progress). Starting needs the admin role (settings);
any member of the organization may look. Jobs of another environment or
organization are a 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from apps.accounts.audit import Actor
from apps.accounts.models import Role
from apps.billing.models import StripeMode
from apps.billing.services import billing_settings_get
from apps.core.errors import TansoError
from apps.core.tenancy import scoped
from apps.dashboard.decorators import tenant_view
from apps.stripe_sync.models import StripeConnection

from .models import ImportedSubscription, ImportJob
from .rendering import job_percent
from .selectors import import_job_get, import_job_latest
from .services import stripe_import_start

PANEL = "stripe_import/panel.html#panel"


def panel_context(request: HttpRequest, job: ImportJob | None = None) -> dict[str, Any]:
    """What the panel shows for the request's environment (four small queries)."""
    environment = request.environment  # type: ignore[attr-defined]
    if job is None:
        job = import_job_latest(environment)
    subscriptions = scoped(ImportedSubscription, environment.pk)
    membership = getattr(request, "membership", None)
    return {
        "job": job,
        "percent": job_percent(job) if job is not None else 0,
        "mode_is_import": billing_settings_get(environment).stripe_mode == StripeMode.IMPORT,
        "connected": scoped(StripeConnection, environment.pk).exists(),
        "imported": subscriptions.count(),
        "earning": subscriptions.filter(revenue_from__isnull=False, currency="USD").count(),
        "can_start": membership is not None and membership.at_least(Role.ADMIN),
        "environment": environment,
    }


@tenant_view()
def import_page(request: HttpRequest) -> HttpResponse:
    """The panel on a page of its own (where the no-JavaScript form lands)."""
    return render(request, "stripe_import/panel.html", panel_context(request))


@tenant_view()
def import_panel(request: HttpRequest) -> HttpResponse:
    """The panel alone (htmx polls it), for the job ``?job=`` or the latest one."""
    job_id = request.GET.get("job")
    job = import_job_get(request.environment, job_id) if job_id else None  # type: ignore[attr-defined]
    if not getattr(request, "htmx", None):
        return redirect("stripe_import:page")
    return render(request, PANEL, panel_context(request, job))


@require_POST
@tenant_view(Role.ADMIN)
def import_start(request: HttpRequest) -> HttpResponse:
    job = None
    try:
        job = stripe_import_start(
            environment=request.environment,  # type: ignore[attr-defined]
            actor=Actor.from_request(request),
        )
    except TansoError as exc:
        error = exc.message
    else:
        error = ""
    if getattr(request, "htmx", None):
        # htmx swaps only 2xx answers: a refusal is shown inside the panel.
        return render(request, PANEL, {**panel_context(request, job), "error": error})
    if error:
        messages.error(request, error)
    else:
        messages.success(request, "Stripe import started: it runs in the background.")
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect(reverse("stripe_import:page"))
