"""Invoices: list and read (as ``GET /api/v1/client/billing/invoices`` and the customer's
invoice routes) and mark one paid (as ``POST .../invoices/{id}/paid``, the environment
without Stripe collection). Marking paid settles money, so without ``confirm: true`` it
answers a preview: the invoice as it would be, changed inside a rolled-back transaction."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from apps.apikeys import scopes as S
from apps.billing import api as billing_api
from apps.mcp.calls import ToolAnswer, call_view, current_caller, dry_run, tool
from apps.mcp.registry import ToolSpec
from apps.mcp.tools.pinning import pinned

Confirm = Annotated[
    bool,
    Field(description="true to make the change; false (default) answers a preview only."),
]


def _invoice_text(inv: dict[str, Any]) -> str:
    return (
        f"Invoice {inv.get('number')} ({inv.get('id')}) of {inv.get('customerReferenceId')}: "
        f"{inv.get('status')}, amount {inv.get('amount')} {inv.get('currency')}"
    )


@tool(ToolSpec("listInvoices", "Invoices", S.BILLING_READ, S.CUSTOMER_READ))
def list_invoices(
    *,
    customerReferenceId: Annotated[
        str | None, Field(description="Only this customer's (a customer key: always its own).")
    ] = None,
    status: Annotated[str | None, Field(description="e.g. due, paid, past_due, void.")] = None,
    limit: Annotated[int | None, Field(description="1-200 (default 50).")] = None,
    cursor: Annotated[str | None, Field(description="nextCursor of the previous page.")] = None,
) -> ToolAnswer:
    """Invoices, newest first (by number), optionally of one customer or in one status."""
    query = {"status": status, "limit": limit, "cursor": cursor}
    if current_caller().pinned_reference is not None or customerReferenceId:
        reference = pinned(customerReferenceId)
        page = call_view(billing_api.CustomerInvoices, "get", query=query, reference_id=reference)
    else:
        page = call_view(billing_api.InvoiceList, "get", query=query)
    lines = [f"{len(page['items'])} invoices"] + [_invoice_text(i) for i in page["items"][:20]]
    return ToolAnswer(page, "\n".join(lines), "/dashboard/invoices/")


@tool(ToolSpec("getUpcomingInvoice", "Upcoming invoice", S.BILLING_READ, S.CUSTOMER_READ))
def get_upcoming_invoice(
    *,
    customerReferenceId: Annotated[
        str | None, Field(description="The customer (a customer key: always its own).")
    ] = None,
) -> ToolAnswer:
    """What the customer's subscriptions will be invoiced at the end of the current period,
    from the usage recorded so far (drafted by the billing cycle's own code)."""
    reference = pinned(customerReferenceId)
    upcoming = call_view(billing_api.CustomerUpcomingInvoice, "get", reference_id=reference)
    lines = [f"Upcoming invoices of {reference}, issued {upcoming['issuedAt'] or 'never'}:"]
    lines += [
        f"{inv['amount']} {inv['currency']} for {inv['invoicePeriodStart']} to "
        f"{inv['invoicePeriodEnd']} ({len(inv['items'])} lines)"
        for inv in upcoming["invoices"]
    ] or ["nothing: no subscription in force"]
    return ToolAnswer(upcoming, "\n".join(lines), "/dashboard/subscriptions/")


@tool(
    ToolSpec(
        "markInvoicePaid",
        "Mark an invoice paid",
        S.BILLING_WRITE,
        kind="destructive",
        idempotent=True,
        confirms=True,
    )
)
def mark_invoice_paid(
    *,
    invoiceId: str,
    paymentReference: Annotated[
        str | None, Field(description="Your reference for the payment.")
    ] = None,
    confirm: Confirm = False,
    idempotencyKey: Annotated[
        str | None,
        Field(
            description="Optional: the same key and arguments within 24 h replay the first answer."
        ),
    ] = None,
) -> ToolAnswer:
    """Record that an invoice was paid outside Stripe. Without confirm: true, a preview of
    the invoice as it would be."""
    body: dict[str, Any] = {}
    if paymentReference:
        body["paymentReference"] = paymentReference

    def pay() -> dict[str, Any]:
        return call_view(billing_api.InvoiceMarkPaid, "post", data=body, invoice_id=invoiceId)

    link = f"/dashboard/invoices/{invoiceId}/"
    if not confirm:
        after = dry_run(pay)
        data = {"preview": True, "confirmed": False, "after": after}
        text = "PREVIEW (nothing changed; call again with confirm: true): " + _invoice_text(after)
        return ToolAnswer(data, text, link)
    after = pay()
    return ToolAnswer(
        {"preview": False, "confirmed": True, "after": after}, "Paid. " + _invoice_text(after), link
    )
