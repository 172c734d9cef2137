"""Observe pages: overview, customers, features, models, heatmap, events, traces.

Every figure comes from the analytics selectors (the read API's, over the
rollups), for the request's environment only. One view, two renderings: the
whole page, or (``request.htmx``) only the partial the request swaps in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.accounts.models import Environment, Role
from apps.analytics import export
from apps.analytics import selectors as analytics
from apps.analytics.params import (
    MAX_OFFSET,
    OPEN_END,
    OPEN_START,
    TableQuery,
    Window,
    event_cursor,
    next_event_cursor,
)
from apps.analytics.prices import model_price_in_force
from apps.analytics.services import margin_settings_update
from apps.apikeys.selectors import apikeys_for
from apps.core.errors import ValidationFailed
from apps.dashboard import selectors
from apps.dashboard.decorators import tenant_view
from apps.dashboard.forms import EventFilterForm
from apps.dashboard.views import platform
from apps.dashboard.windows import PRESETS, WindowChoice, window_from
from apps.events.models import Event
from apps.events.selectors import event_get

PAGE_SIZE = 50
EVENTS_PAGE_SIZE = 50
RECENT_EVENTS = 20
TOP = 5
HEATMAP_SIZES = (5, 10, 20)
HEATMAP_DEFAULT = 10
SHARE_QUANTUM = Decimal("0.1")


def _render(
    request: HttpRequest,
    template: str,
    partial: str,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> HttpResponse:
    """The page, or only ``template#partial`` when htmx asks (a boosted link wants the page)."""
    htmx = getattr(request, "htmx", None)
    name = f"{template}#{partial}" if htmx and not htmx.boosted else template
    return render(request, name, context, status=status)


def _window_context(
    environment: Environment, choice: WindowChoice, keep: dict[str, str] | None = None
) -> dict[str, Any]:
    """What the window picker needs; ``keep``: the page's other parameters, kept by its links.
    With it the environment's target margin, the line between thin and healthy bands."""
    return {
        "choice": choice,
        "presets": PRESETS,
        "keep": keep or {},
        "target_margin": analytics.target_margin(environment),
    }


# --- Overview ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kpi:
    """One headline figure of the window beside the previous window's."""

    key: str
    label: str
    value: Decimal | None
    previous: Decimal | None
    # "usd" or "pct"; a margin % changes by percentage points, not percent.
    unit: str
    up_is_good: bool

    @property
    def delta(self) -> Decimal | None:
        if self.value is None or self.previous is None:
            return None
        with localcontext(prec=80):
            return self.value - self.previous

    @property
    def delta_pct(self) -> Decimal | None:
        """Change relative to the previous window, in percent (None from zero)."""
        if self.unit != "usd" or self.delta is None or not self.previous:
            return None
        with localcontext(prec=80):
            return (self.delta * 100 / abs(self.previous)).quantize(
                SHARE_QUANTUM, rounding=ROUND_HALF_EVEN
            )

    @property
    def trend(self) -> str:
        if self.delta is None or self.delta == 0:
            return "flat"
        return "up" if self.delta > 0 else "down"

    @property
    def tone(self) -> str:
        if self.trend == "flat":
            return "neutral"
        return "good" if (self.trend == "up") == self.up_is_good else "bad"


def _kpis(current: analytics.Totals, previous: analytics.Totals) -> list[Kpi]:
    return [
        Kpi("revenue", "Revenue", current.revenue, previous.revenue, "usd", True),
        Kpi("cost", "Cost", current.cost, previous.cost, "usd", False),
        Kpi("margin", "Margin", current.margin, previous.margin, "usd", True),
        Kpi("marginPct", "Margin %", current.margin_pct, previous.margin_pct, "pct", True),
    ]


@tenant_view()
def overview(request: HttpRequest) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    choice = window_from(request.GET)
    # Both "top" lists of a table from one GROUP BY (the table's first rows under each sort).
    top_customers = analytics.customer_tops(
        environment, choice.window, sorts=("-cost", "margin"), limit=TOP
    )
    # That GROUP BY has counted the active customers already.
    current = analytics.overview(environment, choice.window, customer_count=top_customers.active)
    # The previous window only for the KPIs' change: its totals alone.
    previous = analytics.window_totals(environment, choice.previous)
    top_features = analytics.feature_tops(
        environment, choice.window, sorts=("-cost", "margin"), limit=TOP
    )
    context = {
        **_window_context(environment, choice),
        "data": current,
        "kpis": _kpis(current.totals, previous),
        "customers_by_cost": top_customers.rows["-cost"],
        "customers_by_margin": top_customers.rows["margin"],
        "features_by_cost": top_features.rows["-cost"],
        "features_by_margin": top_features.rows["margin"],
        "chart": [
            {
                "date": day.date.isoformat(),
                "revenue": export.cell(day.totals.revenue),
                "cost": export.cell(day.totals.cost),
            }
            for day in current.daily
        ],
        "active_keys": apikeys_for(environment).filter(revoked_at__isnull=True).count(),
    }
    return _render(request, "dashboard/observe/overview.html", "body", context)


# --- Tables (customers, features, models) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    key: str  # the API's sort name
    label: str
    current: str  # the table's sort

    @property
    def next_sort(self) -> str:
        """A click sorts descending first, then flips."""
        return self.key if self.current == f"-{self.key}" else f"-{self.key}"

    @property
    def aria_sort(self) -> str:
        if self.current == f"-{self.key}":
            return "descending"
        if self.current == self.key:
            return "ascending"
        return "none"


COLUMNS = (
    ("events", "Events"),
    ("cost", "Cost"),
    ("revenue", "Revenue"),
    ("margin", "Margin"),
    ("marginPct", "Margin %"),
)


def _sort(raw: str | None, default: str = "-cost") -> str:
    if not raw or raw.startswith("--") or raw.lstrip("-") not in analytics.SORTS:
        return default
    return raw


def _page_number(raw: str | None) -> int:
    try:
        number = int(raw or 1)
    except ValueError:
        return 1
    return max(1, min(number, MAX_OFFSET // PAGE_SIZE))


@dataclass(frozen=True, slots=True)
class TableState:
    choice: WindowChoice
    query: TableQuery
    page: int

    @property
    def params(self) -> dict[str, str]:
        """The page's own query string: window, search, sort (page added per link)."""
        return {
            **self.choice.params(),
            "q": self.query.search,
            "sort": self.query.sort,
        }


def _table_state(request: HttpRequest) -> TableState:
    choice = window_from(request.GET)
    search = (request.GET.get("q") or "").replace("\x00", "").strip()[:255]
    page = _page_number(request.GET.get("page"))
    query = TableQuery(
        sort=_sort(request.GET.get("sort")),
        search=search,
        window=choice.window,
        offset=(page - 1) * PAGE_SIZE,
    )
    return TableState(choice=choice, query=query, page=page)


def _table_context(
    environment: Environment, state: TableState, columns: tuple[tuple[str, str], ...]
) -> dict[str, Any]:
    return {
        **_window_context(
            environment, state.choice, {"q": state.query.search, "sort": state.query.sort}
        ),
        "state": state,
        "params": state.params,
        "columns": [Column(key, label, state.query.sort) for key, label in columns],
    }


def _share(part: Decimal, whole: Decimal) -> Decimal | None:
    """``part`` as a percent of ``whole``, 0.1 dp."""
    if not whole:
        return None
    with localcontext(prec=80):
        return (part * 100 / whole).quantize(SHARE_QUANTUM, rounding=ROUND_HALF_EVEN)


@tenant_view()
def customers(request: HttpRequest) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    state = _table_state(request)
    table = analytics.customer_table(environment, state.query, limit=PAGE_SIZE)
    # The Plan / Status columns: each customer's newest subscription (one query).
    subs = platform.customer_plans(environment, [row.customer.reference_id for row in table.rows])
    for row in table.rows:
        row.customer.subscription_shown = subs.get(row.customer.reference_id)  # type: ignore[attr-defined]
    context = {
        **_table_context(environment, state, (*COLUMNS, ("lastSeen", "Last seen"))),
        "rows": table.rows,
        "has_more": table.has_more,
    }
    return _render(request, "dashboard/observe/customers.html", "table", context)


@tenant_view()
def customer(request: HttpRequest, reference_id: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    choice = window_from(request.GET)
    detail = analytics.customer_detail(environment, reference_id, choice.window)
    events = analytics.newest_first(
        analytics.events_matching(
            environment, analytics.EventFilters(customer_reference_id=reference_id)
        ),
        before=None,
        limit=RECENT_EVENTS,
    )
    context = {
        **_window_context(environment, choice),
        "detail": detail,
        "rows": event_rows(environment, events),
        **platform.customer_platform(environment, reference_id),
    }
    return _render(request, "dashboard/observe/customer.html", "body", context)


@tenant_view()
def features(request: HttpRequest) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    state = _table_state(request)
    table = analytics.feature_table(environment, state.query, limit=PAGE_SIZE)
    total_cost = analytics.window_totals(environment, state.choice.window).cost
    context = {
        **_table_context(environment, state, COLUMNS),
        "rows": [(row, _share(row.totals.cost, total_cost)) for row in table.rows],
        "has_more": table.has_more,
        "total_cost": total_cost,
    }
    return _render(request, "dashboard/observe/features.html", "table", context)


@tenant_view()
def models(request: HttpRequest) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    state = _table_state(request)
    table = analytics.model_table(environment, state.query, limit=PAGE_SIZE)
    total_cost = analytics.window_totals(environment, state.choice.window).cost
    now = timezone.now()
    context = {
        **_table_context(environment, state, COLUMNS),
        "rows": [
            (
                row,
                _share(row.totals.cost, total_cost),
                model_price_in_force(environment, row.provider, row.model, now),
            )
            for row in table.rows
        ],
        "has_more": table.has_more,
        "total_cost": total_cost,
    }
    return _render(request, "dashboard/observe/models.html", "table", context)


@tenant_view()
def heatmap(request: HttpRequest) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    choice = window_from(request.GET)
    raw = request.GET.get("n") or ""
    size = int(raw) if raw.isdigit() and int(raw) in HEATMAP_SIZES else HEATMAP_DEFAULT
    context = {
        **_window_context(environment, choice, {"n": str(size)}),
        "size": size,
        "sizes": HEATMAP_SIZES,
        "map": selectors.heatmap(environment, choice.window, size=size),
        "params": {**choice.params(), "n": str(size)},
    }
    return _render(request, "dashboard/observe/heatmap.html", "body", context)


# --- CSV exports (the read API's streamed CSV, for what the page shows) ----------------------


@tenant_view()
def customers_csv(request: HttpRequest) -> StreamingHttpResponse:
    state = _table_state(request)
    query = TableQuery(sort=state.query.sort, search=state.query.search, window=state.query.window)
    return export.customers_csv(request.environment, query)  # type: ignore[attr-defined]


@tenant_view()
def features_csv(request: HttpRequest) -> StreamingHttpResponse:
    state = _table_state(request)
    query = TableQuery(sort=state.query.sort, search=state.query.search, window=state.query.window)
    return export.features_csv(request.environment, query)  # type: ignore[attr-defined]


@tenant_view()
def models_csv(request: HttpRequest) -> StreamingHttpResponse:
    state = _table_state(request)
    query = TableQuery(sort=state.query.sort, search=state.query.search, window=state.query.window)
    return export.models_csv(request.environment, query, now=timezone.now())  # type: ignore[attr-defined]


# --- Events ------------------------------------------------------------------------------

SINCE = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(days=1), "7d": dt.timedelta(days=7)}
FILTER_FIELDS = ("customer", "feature", "model", "provider", "trace", "event_name")


def _event_filters(form: EventFilterForm, now: dt.datetime) -> analytics.EventFilters:
    """The form's valid fields as the read API's filters (an invalid field is left out)."""
    data = form.cleaned_data if form.is_bound else {}
    window: Window | None = None
    if data.get("start") or data.get("end"):
        window = Window(data.get("start") or OPEN_START, data.get("end") or OPEN_END)
        if window.start >= window.end:
            window = None
    elif data.get("since") in SINCE:
        window = Window(now - SINCE[data["since"]], OPEN_END)
    return analytics.EventFilters(
        window=window,
        # Customer and feature match partially and in any case, the provider in any case
        # (stored in lower case); model, trace and event name exactly.
        customer_search=data.get("customer") or None,
        feature_search=data.get("feature") or None,
        model=data.get("model") or None,
        provider=(data.get("provider") or "").lower() or None,
        trace_id=data.get("trace") or None,
        event_name=data.get("event_name") or None,
    )


def _filter_params(request: HttpRequest) -> dict[str, str]:
    """The filters as given, to carry them into links (cursor and tail excluded)."""
    names = (*FILTER_FIELDS, "since", "start", "end")
    return {name: request.GET[name] for name in names if request.GET.get(name)}


@dataclass(frozen=True, slots=True)
class EventRow:
    event: Event
    customer: str  # the customer's reference id
    feature: str  # the feature key


def event_rows(environment: Any, events: list[Event]) -> list[EventRow]:
    """Events with their customer reference and feature key (two queries for any number)."""
    names = analytics.event_names(environment, events)
    return [EventRow(event, names.customer(event), names.feature(event)) for event in events]


def _events_context(
    request: HttpRequest, events: list[Event], form: EventFilterForm
) -> dict[str, Any]:
    params = _filter_params(request)
    return {
        "form": form,
        "params": params,
        # How many filters besides the customer are set: "More filters" opens for them.
        "more_filters_set": len([name for name in params if name != "customer"]),
        "rows": event_rows(request.environment, events),  # type: ignore[attr-defined]
    }


@tenant_view()
def events(request: HttpRequest) -> HttpResponse:
    """The event list; with ``?after=<id>`` (the live tail) only the rows stored since."""
    environment = request.environment  # type: ignore[attr-defined]
    now = timezone.now()
    form = EventFilterForm(request.GET or None)
    if form.is_bound:
        form.is_valid()
    filters = _event_filters(form, now)

    after = request.GET.get("after") or ""
    htmx = getattr(request, "htmx", None)
    if htmx and after.isdigit():
        fresh = selectors.events_after(environment, filters, after_id=int(after), now=now)
        if not fresh:
            return HttpResponse(status=204)
        context = {**_events_context(request, fresh, form), "newest_id": fresh[0].id}
        return render(request, "dashboard/observe/events.html#tail", context)

    try:
        before = event_cursor(request.GET.get("cursor"))
    except ValidationFailed:
        before = None
    page = analytics.newest_first(
        analytics.events_matching(environment, filters), before=before, limit=EVENTS_PAGE_SIZE + 1
    )
    has_more = len(page) > EVENTS_PAGE_SIZE
    page = page[:EVENTS_PAGE_SIZE]
    newest = max((event.id for event in page), default=0)
    if before is None and not page:
        # An empty first page still tails from the newest event of the environment.
        latest = selectors.latest_event(environment)
        newest = latest[0].id if latest else 0
    context = {
        **_events_context(request, page, form),
        "has_more": has_more,
        "next_cursor": next_event_cursor(page[-1].occurred_at, page[-1].id) if has_more else None,
        # Only the first page tails: an older page stays still.
        "live": before is None,
        "newest_id": newest,
    }
    return _render(request, "dashboard/observe/events.html", "results", context)


@tenant_view()
def event(request: HttpRequest, event_id: int) -> HttpResponse:
    """One event and how its cost was found; htmx gets the row that expands under it."""
    environment = request.environment  # type: ignore[attr-defined]
    item = event_get(environment, event_id)
    row = event_rows(environment, [item])[0]
    context = {
        "event": item,
        "customer_ref": row.customer,
        "feature_key": row.feature,
        "how": selectors.provenance(environment, [item])[item.id],
        "collapsed": request.GET.get("collapsed") == "1",
    }
    return _render(request, "dashboard/observe/event.html", "row", context)


@tenant_view()
def events_csv(request: HttpRequest) -> StreamingHttpResponse:
    form = EventFilterForm(request.GET or None)
    if form.is_bound:
        form.is_valid()
    filters = _event_filters(form, timezone.now())
    return export.events_csv(request.environment, filters)  # type: ignore[attr-defined]


@tenant_view()
def trace(request: HttpRequest, trace_id: str) -> HttpResponse:
    environment = request.environment  # type: ignore[attr-defined]
    found = analytics.trace_get(environment, trace_id)
    span = max(found.span_ms, 1)
    bars = []
    for item in found.events:
        offset = int((item.occurred_at - found.started_at) / dt.timedelta(milliseconds=1))
        # SVG geometry in percent of the span (attributes, so no inline style under the CSP).
        bars.append(
            {
                "offset_ms": offset,
                "x": round(offset * 100 / span, 3),
                "width": max(round((item.duration_ms or 0) * 100 / span, 3), 0.4),
            }
        )
    context = {
        "trace": found,
        "rows": list(zip(found.events, bars, strict=True)),
    }
    return render(request, "dashboard/observe/trace.html", context)


# --- First event (the onboarding panel) -----------------------------------------------------


@tenant_view()
def first_event(request: HttpRequest) -> HttpResponse:
    """Has the environment (``?env=test|live`` of the current organization) any event yet?

    Polled by the onboarding page; the answer stops the polling once it is yes.
    """
    environment = request.environment  # type: ignore[attr-defined]
    kind = request.GET.get("env")
    if kind in Environment.Kind.values and kind != environment.kind:
        environment = request.organization.environments.get(kind=kind)  # type: ignore[attr-defined]
    latest = selectors.latest_event(environment)
    context = {
        "environment": environment,
        "event": latest[0] if latest else None,
        "customer_ref": latest[1].customer(latest[0]) if latest else "",
    }
    return render(request, "dashboard/observe/first_event.html", context)


# --- Target margin (a field of the settings page) ------------------------------------------


@require_POST
@tenant_view()
def target_margin(request: HttpRequest) -> HttpResponse:
    """Set the environment's target margin from the settings page (owners and admins)."""
    environment = request.environment  # type: ignore[attr-defined]
    if not request.membership.at_least(Role.ADMIN):  # type: ignore[attr-defined]
        raise PermissionDenied("Only owners and admins change settings.")
    raw = (request.POST.get("target_margin_pct") or "").strip()
    try:
        value = Decimal(raw)
        if not value.is_finite():
            raise InvalidOperation
        margin_settings_update(environment=environment, target_margin_pct=value)
    except (InvalidOperation, ValueError):
        messages.error(request, "The target margin is a percentage from 0 to 100.")
        return redirect("dashboard:settings")
    messages.success(request, f"Target margin set to {value.quantize(Decimal('0.01'))}%.")
    return redirect("dashboard:settings")
