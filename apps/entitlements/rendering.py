"""Entitlement answers on the wire: one flat camelCase object with ``allowed`` at the top
level (the public page's ``const { allowed } = await check.json()``); amounts are
decimal strings."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from .models import Reservation
from .selectors import Decision, UsageView, projected_end_of_period


def render_usage(usage: UsageView, reset_interval: str) -> dict[str, Any]:
    return {
        "used": usage.used,
        "limit": usage.limit,
        "remaining": usage.remaining,
        "held": usage.held,
        "unlimited": usage.unlimited,
        "resetsAt": usage.window_end,
        "resetInterval": reset_interval if usage.limit is not None else "billing_period",
        "windowStart": usage.window_start,
        "periodStart": usage.period_start,
        "periodEnd": usage.period_end,
        "overagePricePerUnit": usage.overage_price,
    }


def render_decision(decision: Decision) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customerReferenceId": decision.reference_id,
        "featureKey": decision.feature_key,
        "allowed": decision.allowed,
        "reason": None
        if decision.allowed
        else {"code": decision.reason, "message": decision.message},
        "requestedUnits": decision.requested_units,
    }
    applied = decision.applied
    if applied is not None:
        body["subscriptionId"] = str(applied.subscription_id)
        body["subscriptionStatus"] = applied.status
        body["planKey"] = applied.rule.plan_key
    if decision.usage is not None and applied is not None:
        body["usage"] = render_usage(decision.usage, applied.rule.reset_interval)
    credits = decision.credits
    if credits is not None:
        body["credits"] = {
            "denomination": credits.denomination,
            "balance": credits.balance,
            "available": max(credits.available, Decimal(0)),
            "held": credits.held,
            "hardLimit": credits.hard_limit,
            "requiredCredits": credits.required,
            "creditsPerUnit": credits.weight.credits_per_unit,
            "weightMatch": credits.weight.match,
        }
    reservation = decision.reservation
    if reservation is not None:
        body["reservationId"] = str(reservation.pk)
        body["reservation"] = render_reservation(reservation)
    return body


def render_reservation(reservation: Reservation) -> dict[str, Any]:
    return {
        "id": str(reservation.pk),
        "units": reservation.units,
        "credits": reservation.credits,
        "denomination": reservation.denomination or None,
        "expiresAt": reservation.expires_at,
        "status": reservation.status,
    }


def render_released(reservation: Reservation) -> dict[str, Any]:
    """The answer of ``POST /entitlements/reservations/{id}/release``."""
    return {
        **render_reservation(reservation),
        "customerReferenceId": reservation.customer.reference_id,
        "featureKey": reservation.feature.key,
        "releasedAt": reservation.released_at,
    }


def render_feature_usage(decision: Decision, now: dt.datetime) -> dict[str, Any]:
    """One feature of the usage report (``GET /customers/{ref}/usage``)."""
    usage = decision.usage
    row: dict[str, Any] = {"featureKey": decision.feature_key, "allowed": decision.allowed}
    if not decision.allowed:
        row["reason"] = {"code": decision.reason, "message": decision.message}
    if usage is None:
        return row
    projected = projected_end_of_period(usage, now)
    row.update(
        {
            "used": usage.used,
            "limit": usage.limit,
            "remaining": usage.remaining,
            "held": usage.held,
            "unlimited": usage.unlimited,
            "windowStart": usage.window_start,
            "resetsAt": usage.window_end,
            "projectedEndOfPeriod": projected,
            "wouldExceedLimit": (
                projected is not None and usage.limit is not None and projected > usage.limit
            ),
        }
    )
    return row


def render_usage_report(decisions: list[Decision], now: dt.datetime) -> list[dict[str, Any]]:
    """Per subscription in force: its period and its features' usage."""
    subscriptions: dict[str, dict[str, Any]] = {}
    for decision in decisions:
        applied = decision.applied
        if applied is None:
            continue
        entry = subscriptions.setdefault(
            str(applied.subscription_id),
            {
                "subscriptionId": str(applied.subscription_id),
                "planKey": applied.rule.plan_key,
                "status": applied.status,
                "currentPeriodStart": applied.period_start,
                "currentPeriodEnd": applied.period_end,
                "features": [],
            },
        )
        entry["features"].append(render_feature_usage(decision, now))
    return list(subscriptions.values())
