"""Reads for onboarding flows."""

from __future__ import annotations

import datetime as dt
import ipaddress
import math

from django.utils import timezone

from apps.accounts.models import AuditEntry


def signup_wait_from_audit(ip: str, *, limit: int, window_seconds: int) -> int | None:
    """The signup limit counted in PostgreSQL, for when Redis cannot count it.

    Every signup writes an ``organization.created`` audit entry with the client IP in
    the same transaction as the account, so the entries of the last window are the
    signups that window allowed. Seconds to wait when ``limit`` are there, else None.
    Deliberately across organizations: the limit is per address, not per tenant.
    """
    try:
        address: str | None = str(ipaddress.ip_address(ip))
    except ValueError:
        address = None  # Actor.from_request stores no IP for an unparsable one
    since = timezone.now() - dt.timedelta(seconds=window_seconds)
    times = list(
        AuditEntry.objects.filter(
            action=AuditEntry.Action.ORGANIZATION_CREATED, ip=address, created_at__gt=since
        )
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:limit]
    )
    if len(times) < limit:
        return None
    leaves = times[-1] + dt.timedelta(seconds=window_seconds)
    return max(1, math.ceil((leaves - timezone.now()).total_seconds()))
