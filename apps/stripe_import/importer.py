"""One run of the import: read the Stripe account, record it here. Never writes to Stripe.

Phases, in order (each a paginated list read 100 objects a page; the job's counters
move after every page, so the dashboard's progress bar moves with them):

1. **customers** — each Stripe customer is matched to one of ours, in this order:
   our customer's ``stripeCustomerId``; its ``metadata.stripe_customer_id``; the
   Stripe customer's ``metadata.customerReferenceId`` (or ``customer_reference_id``),
   or its ``cus_`` id, as our customer reference; the customer of the latest event
   (last 90 days) whose ``meta.stripe_customer_id`` names it. Otherwise a customer is
   created with source ``stripe`` (reference: the metadata's reference, else the
   ``cus_`` id). A matched customer without a Stripe id gets this one. A customer
   mapped by an earlier run keeps its mapping.
2. **products**, 3. **prices** (``/v1/prices``, then the legacy ``/v1/plans``; a Stripe
   peer without ``/v1/prices`` skips it).
4. **subscriptions** (``status=all``): the recurring amount of the licensed items per
   interval, the dates, and the span that earns revenue (:mod:`.revenue`). A
   subscription of a customer the first phase did not see (created meanwhile) has
   its customer read and recorded first.

Every row is written ``INSERT ... ON CONFLICT (environment, stripe_id) DO UPDATE``: a
second run updates, never duplicates. An object that cannot be recorded (a price with
no currency, an unknown interval) is counted as failed with its reason and the run
goes on. Stripe refusing the key fails the job; Stripe unreachable raises
:class:`StripeUnavailable` so the task retries with backoff (the run starts over:
every write is an upsert).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import stripe
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.core.money import decimal_str
from apps.core.tenancy import scoped
from apps.customers.models import Customer
from apps.events.selectors import latest_customer_by_meta

from .amounts import PriceError, PriceTerms
from .models import (
    AMOUNT_PLACES,
    ImportedCustomer,
    ImportedObject,
    ImportedPrice,
    ImportedProduct,
    ImportedSubscription,
    ImportJob,
)

if TYPE_CHECKING:
    from apps.accounts.models import Environment

log = logging.getLogger(__name__)

PAGE_SIZE = 100
EVENT_MATCH_LOOKBACK = dt.timedelta(days=90)
# Stripe customer metadata keys that may carry our customer reference.
REFERENCE_KEYS = ("customerReferenceId", "customer_reference_id", "tanso_customer_reference_id")
# Statuses that earn: the others never were paid for (incomplete), or stopped (unpaid, paused).
EARNING_STATUSES = frozenset({"active", "past_due", "trialing", "canceled"})
QUANTUM = Decimal(1).scaleb(-AMOUNT_PLACES)


class StripeUnavailable(Exception):
    """Stripe could not be reached or answered 5xx / 429: retry the run later."""


class StripeRefused(Exception):
    """Stripe refused the key or a read (401, 403, 400): the run cannot go on."""


def _at(timestamp: Any) -> dt.datetime | None:
    if timestamp in (None, "", 0):
        return None
    return dt.datetime.fromtimestamp(int(timestamp), tz=dt.UTC)


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


@dataclasses.dataclass
class _Progress:
    """The job's counters, written after every page (one UPDATE)."""

    job: ImportJob
    counts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    errors: list[dict[str, str]] = dataclasses.field(default_factory=list)
    total: int = 0
    processed: int = 0
    failed: int = 0

    def count(self, kind: str, name: str, n: int = 1) -> None:
        bucket = self.counts.setdefault(kind, {})
        bucket[name] = bucket.get(name, 0) + n

    def ok(self, kind: str, outcome: str) -> None:
        self.processed += 1
        self.count(kind, outcome)

    def fail(self, kind: str, stripe_id: str, message: str) -> None:
        self.failed += 1
        self.count(kind, "failed")
        if len(self.errors) < ImportJob.MAX_ERRORS:
            self.errors.append({"object": kind, "id": stripe_id, "message": message[:500]})

    def read(self, kind: str, n: int) -> None:
        self.total += n
        self.count(kind, "read", n)

    def save(self, phase: str) -> None:
        ImportJob.objects.filter(pk=self.job.pk).update(
            phase=phase,
            total=self.total,
            processed=self.processed,
            failed=self.failed,
            counts=self.counts,
            errors=self.errors,
            updated_at=timezone.now(),
        )


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """One Stripe read, ``fn(*args)``, its errors sorted into retry-later and give-up."""
    try:
        return fn(*args)
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        raise StripeUnavailable(str(exc) or type(exc).__name__) from exc
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        raise StripeRefused(f"Stripe refused the key: {exc.user_message or exc}") from exc
    except stripe.InvalidRequestError:
        raise
    except stripe.StripeError as exc:
        status = getattr(exc, "http_status", None) or 0
        if status >= 500 or status == 0:
            raise StripeUnavailable(str(exc) or type(exc).__name__) from exc
        raise StripeRefused(str(exc)) from exc


def _pages(list_call: Callable[..., Any], params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """Every page of a Stripe list, as plain dicts (cursor: ``starting_after``)."""
    after: str | None = None
    while True:
        page_params = {**params, "limit": PAGE_SIZE}
        if after:
            page_params["starting_after"] = after
        page = _call(list_call, page_params)
        objects = [_plain(obj) for obj in page.data]
        yield objects
        if not page.has_more or not objects:
            return
        after = objects[-1]["id"]


# --- Customers -----------------------------------------------------------------------------


def _event_index(environment: Environment) -> dict[str, Any]:
    """``stripe_customer_id`` named in recent events' meta -> the latest such event's
    customer: one scan of the environment's last 90 days, once per run."""
    since = timezone.now() - EVENT_MATCH_LOOKBACK
    return latest_customer_by_meta(environment, "stripe_customer_id", since=since)


def _reference_in(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    for key in REFERENCE_KEYS:
        value = metadata.get(key)
        if isinstance(value, str) and value.strip() and len(value) <= 255 and "\x00" not in value:
            return value
    return ""


def _email(obj: dict[str, Any]) -> str:
    value = (obj.get("email") or "").strip()
    try:
        validate_email(value)
    except ValidationError:
        return ""
    return value[:254]


def _match(
    environment: Environment, objs: list[dict[str, Any]], events: dict[str, Any]
) -> dict[str, tuple[Any, str]]:
    """``cus_`` id -> (our customer id, how it matched) for the customers of one page that
    have no mapping yet; those that match nothing are created (source ``stripe``)."""
    ids = [obj["id"] for obj in objs]
    found: dict[str, tuple[Any, str]] = {}
    customers = scoped(Customer, environment.pk)
    for customer_id, stripe_id in customers.filter(stripe_customer_id__in=ids).values_list(
        "id", "stripe_customer_id"
    ):
        found.setdefault(stripe_id, (customer_id, ImportedCustomer.Match.STRIPE_ID))
    rest = [i for i in ids if i not in found]
    if rest:
        for customer_id, stripe_id in customers.filter(
            metadata__stripe_customer_id__in=rest
        ).values_list("id", "metadata__stripe_customer_id"):
            found.setdefault(stripe_id, (customer_id, ImportedCustomer.Match.METADATA))
    wanted = {obj["id"]: _reference_in(obj) or obj["id"] for obj in objs if obj["id"] not in found}
    if wanted:
        by_reference = dict(
            customers.filter(reference_id__in=set(wanted.values())).values_list(
                "reference_id", "id"
            )
        )
        for stripe_id, reference in wanted.items():
            if reference in by_reference:
                found[stripe_id] = (by_reference[reference], ImportedCustomer.Match.REFERENCE)
            elif stripe_id in by_reference:
                found[stripe_id] = (by_reference[stripe_id], ImportedCustomer.Match.REFERENCE)
            elif stripe_id in events:
                found[stripe_id] = (events[stripe_id], ImportedCustomer.Match.EVENTS)
    new = {obj["id"]: obj for obj in objs if obj["id"] not in found}
    if new:
        now = timezone.now()
        Customer.objects.bulk_create(
            [
                Customer(
                    environment_id=environment.pk,
                    reference_id=wanted[stripe_id],
                    email=_email(obj),
                    first_name=(obj.get("name") or "")[:150],
                    phone=(obj.get("phone") or "")[:40],
                    stripe_customer_id=stripe_id,
                    source=Customer.Source.STRIPE,
                    created_at=now,
                    updated_at=now,
                )
                for stripe_id, obj in new.items()
            ],
            ignore_conflicts=True,  # a reference taken meanwhile: matched below
        )
        created = dict(
            customers.filter(reference_id__in=[wanted[i] for i in new]).values_list(
                "reference_id", "id"
            )
        )
        for stripe_id in new:
            found[stripe_id] = (created[wanted[stripe_id]], ImportedCustomer.Match.CREATED)
    # A matched customer without a Stripe id takes this one (an empty field only).
    for stripe_id, (customer_id, how) in found.items():
        if how != ImportedCustomer.Match.CREATED:
            customers.filter(pk=customer_id, stripe_customer_id="").update(
                stripe_customer_id=stripe_id, updated_at=timezone.now()
            )
    return found


def _upsert(
    model: type[ImportedObject], rows: Sequence[ImportedObject], *, keep: tuple[str, ...] = ()
) -> None:
    """``INSERT ... ON CONFLICT (environment, stripe_id) DO UPDATE``: a row recorded before
    takes every field of this read, except its first ``imported_at`` and the fields in
    ``keep``."""
    fixed = {"id", "environment", "stripe_id", "imported_at", *keep}
    model.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["environment", "stripe_id"],
        update_fields=[f.name for f in model._meta.concrete_fields if f.name not in fixed],
    )


def _record_customers(
    environment: Environment,
    objs: list[dict[str, Any]],
    events: dict[str, Any],
    progress: _Progress | None,
) -> dict[str, Any]:
    """Match and record one page of Stripe customers: ``cus_`` id -> our customer id."""
    objs = [obj for obj in objs if obj.get("id") and not obj.get("deleted")]
    with transaction.atomic():
        mapped = dict(
            scoped(ImportedCustomer, environment.pk)
            .filter(stripe_id__in=[o["id"] for o in objs])
            .values_list("stripe_id", "customer_id")
        )
        matches = _match(environment, [o for o in objs if o["id"] not in mapped], events)
        now = timezone.now()
        _upsert(
            ImportedCustomer,
            [
                ImportedCustomer(
                    environment_id=environment.pk,
                    stripe_id=obj["id"],
                    customer_id=mapped.get(obj["id"]) or matches[obj["id"]][0],
                    matched_by=matches[obj["id"]][1] if obj["id"] in matches else "",
                    email=(obj.get("email") or "")[:255],
                    name=(obj.get("name") or "")[:255],
                    metadata=obj.get("metadata") or {},
                    imported_at=now,
                    updated_at=now,
                )
                for obj in objs
            ],
            keep=("customer", "matched_by"),  # a customer mapped by an earlier run stays
        )
    if progress is not None:
        for obj in objs:
            if obj["id"] in mapped:
                progress.ok("customers", "updated")
            elif matches[obj["id"]][1] == ImportedCustomer.Match.CREATED:
                progress.ok("customers", "created")
            else:
                progress.ok("customers", "matched")
    return {obj["id"]: mapped.get(obj["id"]) or matches[obj["id"]][0] for obj in objs}


# --- Products and prices -------------------------------------------------------------------


def _record_products(
    environment: Environment, objs: list[dict[str, Any]], progress: _Progress
) -> None:
    now = timezone.now()
    rows = []
    for obj in objs:
        if not obj.get("id"):
            continue
        rows.append(
            ImportedProduct(
                environment_id=environment.pk,
                stripe_id=obj["id"],
                name=str(obj.get("name") or "")[:255],
                active=bool(obj.get("active", True)),
                metadata=obj.get("metadata") or {},
                imported_at=now,
                updated_at=now,
            )
        )
    _upsert(ImportedProduct, rows)
    for _row in rows:
        progress.ok("products", "recorded")


def _price_row(
    environment: Environment, obj: dict[str, Any], kind: str, now: dt.datetime
) -> ImportedPrice:
    terms = PriceTerms.of(obj)
    product = obj.get("product")
    if isinstance(product, dict):
        product = product.get("id")
    return ImportedPrice(
        environment_id=environment.pk,
        stripe_id=obj["id"],
        kind=kind,
        product_stripe_id=str(product or "")[:255],
        nickname=str(obj.get("nickname") or "")[:255],
        active=bool(obj.get("active", True)),
        currency=terms.currency,
        unit_amount=terms.unit_amount,
        billing_scheme=terms.billing_scheme[:8],
        tiers_mode=terms.tiers_mode[:9],
        tiers=[
            {k: (str(v) if isinstance(v, Decimal) else v) for k, v in t.items()}
            for t in terms.tiers
        ],
        transform_quantity=terms.transform_quantity,
        interval=terms.interval,
        interval_count=terms.interval_count,
        usage_type=terms.usage_type[:8],
        metadata=obj.get("metadata") or {},
        imported_at=now,
        updated_at=now,
    )


def _record_prices(
    environment: Environment,
    objs: list[dict[str, Any]],
    kind: str,
    progress: _Progress,
    seen: set[str],
) -> None:
    """One page of prices (or plans); ``seen``: ids recorded earlier in this run (Stripe
    lists a recurring price under /v1/plans too: it is recorded once, as a price)."""
    now = timezone.now()
    rows: dict[str, ImportedPrice] = {}
    for obj in objs:
        if obj.get("id") in seen:
            progress.ok("prices", "listed_twice")
            continue
        try:
            rows[obj["id"]] = _price_row(environment, obj, kind, now)
        except (PriceError, KeyError) as exc:
            progress.fail("prices", str(obj.get("id", "")), str(exc))
    _upsert(ImportedPrice, list(rows.values()))
    seen.update(rows)
    for _row in rows:
        progress.ok("prices", "recorded")


# --- Subscriptions -------------------------------------------------------------------------


def _stored_terms(environment: Environment, price_ids: set[str]) -> dict[str, dict[str, Any]]:
    """Imported prices as Stripe-shaped dicts (for items whose price came without tiers)."""
    out = {}
    for price in scoped(ImportedPrice, environment.pk).filter(stripe_id__in=price_ids):
        out[price.stripe_id] = {
            "id": price.stripe_id,
            "object": "price",
            "currency": price.currency,
            "unit_amount_decimal": price.unit_amount,
            "billing_scheme": price.billing_scheme,
            "tiers_mode": price.tiers_mode,
            "tiers": price.tiers,
            "transform_quantity": price.transform_quantity,
            "recurring": {
                "interval": price.interval,
                "interval_count": price.interval_count,
                "usage_type": price.usage_type,
            }
            if price.interval
            else None,
        }
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class _Item:
    id: str
    price: str
    quantity: int
    usage_type: str
    interval: str
    interval_count: int
    currency: str
    amount: Decimal  # major units per interval; 0 for metered and one-time items


def _items(obj: dict[str, Any], stored: dict[str, dict[str, Any]]) -> list[_Item]:
    items = []
    for item in (obj.get("items") or {}).get("data") or []:
        price = item.get("price") or item.get("plan")
        if isinstance(price, str):
            price = stored.get(price)
        if not isinstance(price, dict):
            raise PriceError(f"item {item.get('id')} has no price")
        if price.get("billing_scheme") == "tiered" and not price.get("tiers"):
            price = stored.get(price.get("id", ""), price)
        terms = PriceTerms.of(price)
        quantity = item.get("quantity")
        quantity = 1 if quantity is None else int(quantity)
        items.append(
            _Item(
                id=str(item.get("id") or ""),
                price=terms.stripe_id,
                quantity=quantity,
                usage_type=terms.usage_type,
                interval=terms.interval,
                interval_count=terms.interval_count,
                currency=terms.currency,
                amount=terms.major_amount(quantity) if terms.is_recurring_licensed else Decimal(0),
            )
        )
    return items


def _subscription_fields(obj: dict[str, Any], items: list[_Item]) -> dict[str, Any]:
    """The row of one Stripe subscription (its dates, amount and earning span)."""
    from .revenue import Schedule

    licensed = [item for item in items if item.interval and item.usage_type != "metered"]
    intervals = {(item.interval, item.interval_count) for item in licensed}
    if len(intervals) > 1:
        raise PriceError("its licensed items bill on different intervals")
    currency = str(obj.get("currency") or (items[0].currency if items else "")).upper()
    if len(currency) != 3:
        raise PriceError("it has no currency")
    if any(item.currency != currency for item in licensed):
        raise PriceError("its items are in different currencies")
    interval, count = next(iter(intervals)) if intervals else ("", 1)
    amount = sum((item.amount for item in licensed), Decimal(0))
    if amount != amount.quantize(QUANTUM):
        raise PriceError("its amount has more than 12 decimal places")
    started = _at(obj.get("start_date")) or _at(obj.get("created"))
    if started is None:
        raise PriceError("it has no start date")
    first = ((obj.get("items") or {}).get("data") or [{}])[0]
    anchor = (
        _at(obj.get("current_period_start"))
        or _at(first.get("current_period_start"))
        or _at(obj.get("billing_cycle_anchor"))
        or started
    )
    period_end = _at(obj.get("current_period_end")) or _at(first.get("current_period_end"))
    if (period_end is None or period_end <= anchor) and interval:
        period_end = Schedule(amount, interval, count, anchor, anchor, None).period_start(1)
    if period_end is None or period_end <= anchor:
        period_end = anchor + dt.timedelta(days=1)
    trial_end = _at(obj.get("trial_end"))
    ended = _at(obj.get("ended_at"))
    cancel_at = _at(obj.get("cancel_at"))
    status = str(obj.get("status") or "")
    earns_from: dt.datetime | None = max(started, trial_end) if trial_end else started
    if status == "canceled":
        until = ended or _at(obj.get("canceled_at"))
    else:
        until = ended or cancel_at or (period_end if obj.get("cancel_at_period_end") else None)
    if (
        status not in EARNING_STATUSES
        or not interval
        or amount <= 0
        or (status == "canceled" and until is None)
        or (until is not None and earns_from is not None and until <= earns_from)
    ):
        earns_from, until = None, None
    return {
        "status": status[:20],
        "currency": currency,
        "interval": interval,
        "interval_count": count,
        "amount": amount,
        "items": [
            {
                "id": item.id,
                "price": item.price,
                "quantity": item.quantity,
                "usageType": item.usage_type,
                "amount": decimal_str(item.amount),
            }
            for item in items
        ],
        "started_at": started,
        "trial_end": trial_end,
        "ended_at": ended,
        "cancel_at": cancel_at,
        "current_period_start": anchor,
        "current_period_end": period_end,
        "revenue_from": earns_from,
        "revenue_until": until,
        "metadata": obj.get("metadata") or {},
    }


def _record_subscriptions(
    environment: Environment,
    objs: list[dict[str, Any]],
    customers: Callable[[set[str]], dict[str, Any]],
    progress: _Progress,
) -> None:
    price_ids = set()
    for obj in objs:
        for item in (obj.get("items") or {}).get("data") or []:
            price = item.get("price") or item.get("plan")
            price_ids.add(price if isinstance(price, str) else (price or {}).get("id", ""))
    stored = _stored_terms(environment, price_ids)
    owners = customers({str(obj.get("customer") or "") for obj in objs} - {""})
    now = timezone.now()
    rows = []
    for obj in objs:
        stripe_id = str(obj.get("id") or "")
        customer = obj.get("customer")
        customer = customer.get("id") if isinstance(customer, dict) else customer
        try:
            if customer not in owners:
                raise PriceError(f"its customer {customer!r} could not be read")
            fields = _subscription_fields(obj, _items(obj, stored))
        except (PriceError, ValueError, TypeError) as exc:
            progress.fail("subscriptions", stripe_id, f"Subscription {stripe_id}: {exc}")
            continue
        rows.append(
            ImportedSubscription(
                environment_id=environment.pk,
                stripe_id=stripe_id,
                stripe_customer_id=customer,
                customer_id=owners[customer],
                imported_at=now,
                updated_at=now,
                **fields,
            )
        )
    _upsert(ImportedSubscription, rows)
    for row in rows:
        progress.ok("subscriptions", "earning" if row.revenue_from else "not_earning")


# --- The run -------------------------------------------------------------------------------


def import_run(job: ImportJob, client: stripe.StripeClient) -> ImportJob:
    """Read everything, record it, complete the job (see the module docstring).

    Raises :class:`StripeUnavailable` (retry later) and :class:`StripeRefused` (fail
    the job; also for a read Stripe refuses as invalid); the caller (the task) decides.
    """
    try:
        return _run(job, client)
    except stripe.InvalidRequestError as exc:
        raise StripeRefused(f"Stripe refused a read: {exc.user_message or exc}") from exc


def _run(job: ImportJob, client: stripe.StripeClient) -> ImportJob:
    environment = job.environment
    progress = _Progress(job)
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.RUNNING,
        phase=ImportJob.Phase.CUSTOMERS,
        started_at=timezone.now(),
        total=0,
        processed=0,
        failed=0,
        counts={},
        errors=[],
        error="",
        attempts=F("attempts") + 1,
        updated_at=timezone.now(),
    )
    v1 = client.v1

    events = _event_index(environment)
    for objs in _pages(v1.customers.list, {}):
        progress.read("customers", len(objs))
        _record_customers(environment, objs, events, progress)
        progress.save(ImportJob.Phase.CUSTOMERS)

    progress.save(ImportJob.Phase.PRODUCTS)
    for objs in _pages(v1.products.list, {}):
        progress.read("products", len(objs))
        _record_products(environment, objs, progress)
        progress.save(ImportJob.Phase.PRODUCTS)

    progress.save(ImportJob.Phase.PRICES)
    seen: set[str] = set()
    try:
        for page in _pages(v1.prices.list, {}):
            progress.read("prices", len(page))
            # Stripe sends a price's tiers only when asked (expand[]=tiers).
            objs = [
                _plain(_call(v1.prices.retrieve, obj["id"], {"expand": ["tiers"]}))
                if obj.get("billing_scheme") == "tiered" and not obj.get("tiers")
                else obj
                for obj in page
            ]
            _record_prices(environment, objs, ImportedPrice.Kind.PRICE, progress, seen)
            progress.save(ImportJob.Phase.PRICES)
    except stripe.InvalidRequestError as exc:
        if getattr(exc, "http_status", None) != 404:
            raise
        progress.count("prices", "unsupported")  # a peer without /v1/prices: plans only
    for objs in _pages(v1.plans.list, {}):
        progress.read("prices", len(objs))
        _record_prices(environment, objs, ImportedPrice.Kind.PLAN, progress, seen)
        progress.save(ImportJob.Phase.PRICES)

    def owners(stripe_ids: set[str]) -> dict[str, Any]:
        known = dict(
            scoped(ImportedCustomer, environment.pk)
            .filter(stripe_id__in=stripe_ids)
            .values_list("stripe_id", "customer_id")
        )
        for stripe_id in stripe_ids - set(known):
            try:
                obj = _plain(_call(v1.customers.retrieve, stripe_id))
            except stripe.InvalidRequestError:
                continue  # deleted in Stripe: its subscriptions fail with the reason
            known.update(_record_customers(environment, [obj], events, None))
        return known

    progress.save(ImportJob.Phase.SUBSCRIPTIONS)
    for objs in _pages(v1.subscriptions.list, {"status": "all"}):
        progress.read("subscriptions", len(objs))
        _record_subscriptions(environment, objs, owners, progress)
        progress.save(ImportJob.Phase.SUBSCRIPTIONS)

    progress.save(ImportJob.Phase.DONE)
    # Only a job still running completes (one failed meanwhile as stale stays failed).
    ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.RUNNING).update(
        status=ImportJob.Status.COMPLETED, finished_at=timezone.now(), updated_at=timezone.now()
    )
    job.refresh_from_db()
    log.info("stripe import %s completed: %s", job.pk, progress.counts)
    return job
