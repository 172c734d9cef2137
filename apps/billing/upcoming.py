"""The upcoming invoice of a subscription (Stripe's "invoice preview"): what the billing
cycle will issue at the end of the current period, from the usage recorded so far.

It is drafted by the cycle's own code (:func:`.services.cycles._close_subscription`,
run as of the period's end for this one subscription) and rounded per line as
:func:`.services.issuing._insert` rounds; nothing is written, no cursor moves, no
credit is granted. So, when no more usage arrives before the period ends, the preview
equals the invoice the period then produces, to the cent. In advance, that invoice is
the next period's base fee and this period's usage; in arrears, this period's base fee
and usage; a subscription that ends at the period's end gets its final invoice (and a
credit note for what an immediate cancellation cut short).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

from django.utils import timezone

from apps.billing.lines import LineDraft
from apps.core.money import from_minor_units, to_minor_units
from apps.subscriptions.models import Subscription

from .services.cycles import (
    CycleResult,
    _billed_so_far,
    _close_subscription,
    _plans_by_env,
    _read_period_usage,
    _Writes,
)
from .services.issuing import InvoiceDraft
from .services.late_usage import _late_usage
from .services.timelines import _Catalog, _timelines


@dataclasses.dataclass(frozen=True)
class UpcomingInvoice:
    """One invoice the cycle will issue: its draft and each line rounded as issuing does."""

    draft: InvoiceDraft
    lines: list[tuple[LineDraft, int]]  # (line, amount in minor units)

    @property
    def total_minor(self) -> int:
        return sum(minor for _, minor in self.lines)

    @property
    def rounded_lines(self) -> list[tuple[LineDraft, Decimal]]:
        """Each line and its amount as the invoice will hold it (major units)."""
        currency = self.draft.currency
        return [(line, from_minor_units(minor, currency)) for line, minor in self.lines]

    @property
    def total(self) -> Decimal:
        return from_minor_units(self.total_minor, self.draft.currency)


@dataclasses.dataclass(frozen=True)
class Upcoming:
    at: dt.datetime | None  # when the cycle issues them (the current period's end)
    invoices: list[UpcomingInvoice]


def upcoming_invoices(subscription: Subscription, *, now: dt.datetime | None = None) -> Upcoming:
    """The invoices the billing cycle will issue for ``subscription`` at the end of the
    period in force at ``now``, with the usage recorded by ``now``. Reads only."""
    now = now or timezone.now()
    catalog = _Catalog()
    catalog.load({subscription.environment_id})
    at = _timelines([subscription], catalog, now)[subscription.pk].next_boundary(now)
    if at is None:
        return Upcoming(at=None, invoices=[])
    billed = _billed_so_far([subscription])
    writes = _Writes()
    for env_id, plans in _plans_by_env([subscription], catalog, billed, at).items():
        late = _late_usage(plans, catalog, env_id)
        book, needs = _read_period_usage(plans, catalog, env_id)
        for p in plans:
            _close_subscription(
                p,
                env_id=env_id,
                catalog=catalog,
                book=book,
                needs=needs,
                late=late.get(p.subscription.pk, []),
                billed=billed,
                writes=writes,
                result=CycleResult(),
                now=at,
            )
    invoices = [
        UpcomingInvoice(
            draft,
            [(line, to_minor_units(line.amount_exact, draft.currency)) for line in draft.lines],
        )
        for draft in writes.drafts
    ]
    return Upcoming(at=at, invoices=invoices)
