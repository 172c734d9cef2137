"""Settings → Stripe: connect a key, choose the mode, disconnect, see the sync status and
the webhook endpoint; in import mode, the Stripe import panel (apps.stripe_import).

Everything through apps.stripe_sync's and apps.billing's services, for
``request.environment`` only (test and live have their own connection). Everyone in the
organization reads the page (the key only as its last 4 characters); connecting,
disconnecting and the mode need the admin role (403 otherwise). Connecting calls Stripe:
the view holds no database transaction open meanwhile.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from apps.accounts.audit import Actor
from apps.accounts.models import Role
from apps.billing.models import StripeMode
from apps.billing.services import billing_settings_get, billing_settings_update
from apps.core.errors import TansoError
from apps.dashboard.confirm import Confirmation, needs_confirmation
from apps.dashboard.decorators import tenant_view
from apps.stripe_sync.selectors import stripe_connection_get
from apps.stripe_sync.services import stripe_connect, stripe_disconnect, webhook_event_types

TEMPLATE = "dashboard/stripe.html"
# What each mode needs and does, for the selector.
MODE_HELP: dict[str, str] = {
    StripeMode.NONE: "Tanso issues invoices; payments are marked paid (API or dashboard).",
    StripeMode.PASS_THROUGH: "Tanso issues invoices and pushes them to Stripe, which collects "
    "payment; paid and failed payments come back by webhook.",
    StripeMode.STRIPE_DRIVEN: "Stripe Billing bills: plans become Stripe products and prices, "
    "usage is sent as meter events, Stripe's invoices are mirrored here.",
    StripeMode.IMPORT: "Observe only: customers, prices and subscriptions are read from "
    "Stripe (nothing is written there) and count as revenue in the margin views.",
}


def _can_manage(request: HttpRequest) -> bool:
    return request.membership.at_least(Role.ADMIN)  # type: ignore[attr-defined]


def _page(
    request: HttpRequest,
    *,
    status: int = 200,
    key_error: str = "",
    mode_error: str = "",
    webhook_secret: str | None = None,
) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    connection = stripe_connection_get(environment)
    mode = billing_settings_get(environment).stripe_mode
    endpoint = connection.webhook_endpoint if connection is not None else None
    counts = sorted((connection.sync_counts or {}).items()) if connection is not None else []
    context: dict[str, Any] = {
        "connection": connection,
        "endpoint": endpoint,
        "counts": counts,
        "mode": mode,
        "modes": [(value, label, MODE_HELP[value]) for value, label in StripeMode.choices],
        "can_manage": _can_manage(request),
        "key_error": key_error,
        "mode_error": mode_error,
        "webhook_secret": webhook_secret,
        "event_types": endpoint.enabled_events if endpoint is not None else webhook_event_types(),
        "key_prefix": f"sk_{environment.kind}_ or rk_{environment.kind}_",
        "show_import": mode == StripeMode.IMPORT,
    }
    response = render(request, TEMPLATE, context, status=status)
    if webhook_secret:
        response["Cache-Control"] = "no-store"  # the secret is shown this once
    return response


@tenant_view()
def stripe_settings(request: HttpRequest) -> HttpResponse:
    return _page(request)


@require_POST
@tenant_view(Role.ADMIN)
def stripe_connect_view(request: HttpRequest) -> HttpResponse:
    """Check the key with Stripe, store it encrypted, set up the webhook endpoint. When
    Stripe would not create the endpoint, its signing secret is shown in this answer
    only, with the URL to enter in Stripe."""
    api_key = (request.POST.get("api_key") or "").strip()
    if not api_key:
        return _page(request, status=400, key_error="Paste a secret or restricted key.")
    try:
        connection, secret = stripe_connect(
            environment=request.environment,  # type: ignore[attr-defined]
            api_key=api_key,
            actor=Actor.from_request(request),
        )
    except TansoError as exc:
        fields = exc.fields or {}
        text = " ".join(str(m) for m in fields.get("stripeSecretKey", [])) or exc.message
        return _page(request, status=exc.status, key_error=text)
    if secret is None:
        messages.success(request, f"Stripe connected (key ending in {connection.key_hint}).")
        return redirect("dashboard:stripe")
    messages.success(
        request,
        f"Stripe connected (key ending in {connection.key_hint}). Add the webhook endpoint "
        "in Stripe with the URL and signing secret below: the secret is shown only now.",
    )
    return _page(request, webhook_secret=secret)


@require_POST
@tenant_view(Role.ADMIN)
def stripe_disconnect_view(request: HttpRequest) -> HttpResponse:
    asked = needs_confirmation(
        request,
        Confirmation(
            title="Disconnect Stripe?",
            consequence=(
                "The stored Stripe key and the webhook endpoint are deleted: nothing is synced "
                "to or from Stripe any more and Stripe's events stop arriving. To connect again "
                "you will need to paste a key again."
            ),
            label="Disconnect Stripe",
            back_url=reverse("dashboard:stripe"),
        ),
    )
    if asked is not None:
        return asked
    stripe_disconnect(
        environment=request.environment,  # type: ignore[attr-defined]
        actor=Actor.from_request(request),
    )
    messages.success(request, "Stripe disconnected: the key and the webhook endpoint are gone.")
    return redirect("dashboard:stripe")


@require_POST
@tenant_view(Role.ADMIN)
def stripe_mode_view(request: HttpRequest) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    mode = (request.POST.get("mode") or "").lower()
    if mode not in StripeMode.values:
        return _page(request, status=400, mode_error="Choose one of the modes.")
    if mode != StripeMode.NONE and stripe_connection_get(environment) is None:
        return _page(request, status=409, mode_error="Connect a Stripe key first.")
    try:
        billing_settings_update(
            environment=environment, stripe_mode=mode, actor=Actor.from_request(request)
        )
    except TansoError as exc:
        return _page(request, status=exc.status, mode_error=exc.message)
    messages.success(request, f"Stripe mode: {StripeMode(mode).label.split(':')[0]}.")
    return redirect("dashboard:stripe")
