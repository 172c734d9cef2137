"""Observe reads: margins for a window; customers, features and models by profitability;
one customer; unpriced models; events; traces. Same views, selectors and renderings as
``GET /api/analytics/overview``, ``/api/customers``, ``/api/features``, ``/api/models``,
``/api/events`` and ``/api/traces/{traceId}`` (apps/analytics/api.py): the same window
gives the same figures, to the cent."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from pydantic import Field

from apps.analytics import api as analytics_api
from apps.apikeys import scopes as S
from apps.mcp.calls import ToolAnswer, call_view, tool
from apps.mcp.registry import ToolSpec
from apps.pricing import api as pricing_api

To = Annotated[
    str | None,
    Field(description="Window end, exclusive: ISO 8601 date or datetime. Default: end of today."),
]
Sort = Annotated[
    str | None,
    Field(
        description="cost, revenue, margin, marginPct, events, unpricedEvents or lastSeen; "
        "'-' for descending. Default -cost (most expensive first); 'marginPct' lists the "
        "least profitable first."
    ),
]
Search = Annotated[str | None, Field(description="Text to filter rows by.")]
Limit = Annotated[int | None, Field(description="Rows per page, 1-200 (default 50).")]
Cursor = Annotated[
    str | None, Field(description="nextCursor of the previous page (keeps its window and sort).")
]


def _row_line(name: str, row: dict[str, Any]) -> str:
    pct = row.get("marginPct")
    return (
        f"- {name}: cost ${row['cost']}, revenue ${row['revenue']}, margin ${row['margin']}"
        + (f" ({pct}%)" if pct is not None else "")
        + (f", {row['unpricedEvents']} unpriced events" if row.get("unpricedEvents") else "")
    )


def _table_text(title: str, page: dict[str, Any], name_of: Any) -> str:
    lines = [f"{title} from {page['from']} to {page['to']}: {len(page['items'])} rows"]
    lines += [_row_line(name_of(row), row) for row in page["items"][:20]]
    if page.get("hasMore"):
        lines.append("More rows: pass nextCursor as cursor.")
    return "\n".join(lines)


def _table_query(
    *,
    from_: str | None,
    to: str | None,
    sort: str | None,
    search: str | None,
    limit: Any,
    cursor: Any,
) -> dict[str, Any]:
    return {
        "from": from_,
        "to": to,
        "sort": sort,
        "search": search,
        "limit": limit,
        "cursor": cursor,
    }


@tool(ToolSpec("getMarginSummary", "Margin summary for a window", scope=S.USAGE_READ))
def get_margin_summary(
    *, from_: Annotated[str | None, Field(alias="from")] = None, to: To = None
) -> ToolAnswer:
    """Totals of a window (events, cost, revenue, margin, margin %, unpriced events), the
    count of active customers, features and models, and a daily series. Amounts are USD
    decimal strings; `cost` counts priced events only (`unpricedEvents` are never free)."""
    data = call_view(analytics_api.Overview, "get", query={"from": from_, "to": to})
    pct = data["marginPct"]
    text = (
        f"From {data['from']} to {data['to']}: {data['events']} events, cost ${data['cost']}, "
        f"revenue ${data['revenue']}, margin ${data['margin']}"
        + (f" ({pct}%)" if pct is not None else "")
        + f"; {data['customers']} customers, {data['features']} features, "
        f"{data['models']} models; {data['unpricedEvents']} unpriced events."
    )
    return ToolAnswer(data, text, "/dashboard/")


@tool(ToolSpec("listCustomersByProfitability", "Customers by profitability", S.CUSTOMERS_READ))
def list_customers_by_profitability(
    *,
    from_: Annotated[str | None, Field(alias="from")] = None,
    to: To = None,
    sort: Sort = None,
    search: Search = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> ToolAnswer:
    """Customers active in the window with cost, revenue and margin, sorted (default: by
    cost, highest first; sort=marginPct for the least profitable first)."""
    page = call_view(
        analytics_api.CustomerList,
        "get",
        query=_table_query(
            from_=from_, to=to, sort=sort, search=search, limit=limit, cursor=cursor
        ),
    )
    text = _table_text("Customers", page, lambda row: row["customerReferenceId"])
    return ToolAnswer(page, text, "/dashboard/customers/")


@tool(ToolSpec("getCustomerProfitability", "One customer's profitability", S.CUSTOMERS_READ))
def get_customer_profitability(
    *,
    customerReferenceId: Annotated[str, Field(description="The customer's reference id.")],
    from_: Annotated[str | None, Field(alias="from")] = None,
    to: To = None,
) -> ToolAnswer:
    """One customer's totals in the window with a feature x model breakdown."""
    data = call_view(
        analytics_api.CustomerDetail,
        "get",
        query={"from": from_, "to": to},
        reference_id=customerReferenceId,
    )
    lines = [_row_line(f"Customer {customerReferenceId}", data)]
    lines += [_row_line(f"  feature {f['featureKey']}", f) for f in data["features"][:20]]
    return ToolAnswer(
        data, "\n".join(lines), f"/dashboard/customers/{quote(customerReferenceId, safe='')}"
    )


@tool(ToolSpec("listFeaturesByProfitability", "Features by profitability", S.USAGE_READ))
def list_features_by_profitability(
    *,
    from_: Annotated[str | None, Field(alias="from")] = None,
    to: To = None,
    sort: Sort = None,
    search: Search = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> ToolAnswer:
    """Features active in the window with cost, revenue and margin, each with its models."""
    page = call_view(
        analytics_api.FeatureList,
        "get",
        query=_table_query(
            from_=from_, to=to, sort=sort, search=search, limit=limit, cursor=cursor
        ),
    )
    text = _table_text("Features", page, lambda row: row["featureKey"])
    return ToolAnswer(page, text, "/dashboard/features/")


@tool(ToolSpec("listModelsByProfitability", "Models by profitability", S.MODELS_READ))
def list_models_by_profitability(
    *,
    from_: Annotated[str | None, Field(alias="from")] = None,
    to: To = None,
    sort: Sort = None,
    search: Search = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> ToolAnswer:
    """Models seen in the window: cost, revenue, margin, latency and the price in force
    (null: the model has no price, its events are unpriced)."""
    page = call_view(
        analytics_api.ModelList,
        "get",
        query=_table_query(
            from_=from_, to=to, sort=sort, search=search, limit=limit, cursor=cursor
        ),
    )
    text = _table_text("Models", page, lambda row: f"{row['modelProvider']}/{row['model']}")
    return ToolAnswer(page, text, "/dashboard/models/")


@tool(ToolSpec("listUnpricedModels", "Models without a price", S.MODELS_READ))
def list_unpriced_models(
    *, from_: Annotated[str | None, Field(alias="from")] = None, to: To = None
) -> ToolAnswer:
    """Models with events of unknown cost in the window (no catalog price and no
    override): their cost is not counted anywhere until a price exists. Set a price
    override to have them re-costed."""
    page = call_view(
        analytics_api.ModelList,
        "get",
        query={"from": from_, "to": to, "sort": "-unpricedEvents", "limit": 200},
    )
    items = [row for row in page["items"] if row["unpricedEvents"]]
    data = {"from": page["from"], "to": page["to"], "items": items, "nextCursor": None}
    data["hasMore"] = bool(page["hasMore"] and items and len(items) == len(page["items"]))
    lines = [f"{len(items)} models with unpriced events from {page['from']} to {page['to']}"]
    lines += [
        f"- {row['modelProvider']}/{row['model']}: {row['unpricedEvents']} unpriced events"
        for row in items[:20]
    ]
    return ToolAnswer(data, "\n".join(lines), "/dashboard/settings/model-prices/")


@tool(ToolSpec("queryEvents", "Query events", S.EVENTS_READ))
def query_events(
    *,
    customerReferenceId: str | None = None,
    featureKey: str | None = None,
    model: str | None = None,
    modelProvider: str | None = None,
    traceId: str | None = None,
    eventName: str | None = None,
    costSource: Annotated[
        str | None, Field(description="How the cost was found, e.g. unpriced or catalog.")
    ] = None,
    from_: Annotated[
        str | None, Field(alias="from", description="Events at or after (ISO 8601).")
    ] = None,
    to: Annotated[str | None, Field(description="Events strictly before (ISO 8601).")] = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> ToolAnswer:
    """Raw events, newest first; filters are exact matches combined with AND. Pages are
    stable while new events arrive (pass nextCursor as cursor)."""
    page = call_view(
        analytics_api.EventList,
        "get",
        query={
            "customerReferenceId": customerReferenceId,
            "featureKey": featureKey,
            "model": model,
            "modelProvider": modelProvider,
            "traceId": traceId,
            "eventName": eventName,
            "costSource": costSource,
            "from": from_,
            "to": to,
            "limit": limit,
            "cursor": cursor,
        },
    )
    lines = [
        f"{len(page['items'])} events" + (" (more: pass nextCursor)" if page["hasMore"] else "")
    ]
    lines += [
        f"- {e['occurredAt']} {e['eventName']} customer {e['customerReferenceId']} "
        f"feature {e['featureKey']} cost {e.get('costAmount')} revenue {e.get('revenueAmount')}"
        for e in page["items"][:20]
    ]
    return ToolAnswer(page, "\n".join(lines), "/dashboard/events/")


@tool(ToolSpec("getTrace", "One trace", S.EVENTS_READ))
def get_trace(
    *,
    traceId: Annotated[str, Field(description="The traceId the events carry.")],
) -> ToolAnswer:
    """A multi-step flow's events in time order, with total cost, revenue and duration."""
    data = call_view(analytics_api.TraceDetail, "get", trace_id=traceId)
    text = (
        f"Trace {traceId}: {data['events']} events, cost ${data['cost']}, revenue "
        f"${data['revenue']}, margin ${data['margin']}, span {data['spanMs']} ms."
    )
    return ToolAnswer(data, text, f"/dashboard/traces/{quote(traceId, safe='')}")


@tool(ToolSpec("listModelPrices", "Model prices in force", S.MODELS_READ))
def list_model_prices(
    *,
    provider: Annotated[str | None, Field(description="e.g. openai, anthropic.")] = None,
    model: Annotated[str | None, Field(description="e.g. gpt-4o.")] = None,
    limit: Limit = None,
    cursor: Cursor = None,
) -> ToolAnswer:
    """The model price catalog in force (prices per million tokens: input, output, cache
    read and write, and other components the source knows), as GET /api/model-prices.
    A model missing here has no price: its events are unpriced until an override exists."""
    page = call_view(
        pricing_api.ModelPriceList,
        "get",
        query={"provider": provider, "model": model, "limit": limit, "cursor": cursor},
    )
    lines = [
        f"{len(page['items'])} model prices"
        + (" (more: pass nextCursor)" if page["hasMore"] else "")
    ]
    lines += [
        f"- {row.get('provider')}/{row.get('model')}: {row.get('prices')}"
        for row in page["items"][:20]
    ]
    return ToolAnswer(page, "\n".join(lines), "/dashboard/settings/model-prices/")
