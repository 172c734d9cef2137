"""Invoice behaviour of Stripe that localstripe lacks, for pass-through mode.

* ``POST /v1/invoices`` also takes ``currency``, ``collection_method``,
  ``days_until_due``, ``auto_advance`` and ``pending_invoice_items_behavior=exclude``
  (a draft invoice with no items: items are then added with ``invoice=in_...``);
* ``POST /v1/invoiceitems`` with ``invoice=in_...`` puts the item on that draft
  invoice (localstripe only sweeps pending items into the next invoice);
* ``POST /v1/invoices/{id}/finalize``: draft -> open (number, ``hosted_invoice_url``;
  a total of 0 is paid at once), webhook ``invoice.finalized``;
* ``POST /v1/invoices/{id}/void`` works on invoices without a payment intent (sent
  invoices) and sends ``invoice.voided``;
* ``POST /v1/invoices/{id}/pay`` also takes ``payment_method`` (attached to the
  customer first) and ``paid_out_of_band``; a declined card answers 402 and sends
  ``invoice.payment_failed``, as Stripe does;
* a successful payment sends ``invoice.paid`` besides localstripe's
  ``invoice.payment_succeeded``;
* ``GET /hosted_invoices/{id}``: the page ``hosted_invoice_url`` points at.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from localstripe import resources, server
from localstripe.errors import UserError
from localstripe.resources import (
    Customer,
    Event,
    Invoice,
    InvoiceItem,
    InvoiceLineItem,
    PaymentMethod,
)

_original_create = Invoice._api_create.__func__  # type: ignore[attr-defined]
_original_item_create = InvoiceItem._api_create.__func__  # type: ignore[attr-defined]
_original_pay = Invoice._api_pay_invoice.__func__  # type: ignore[attr-defined]
_original_on_success = Invoice._on_payment_success
_original_void = Invoice._api_void_invoice.__func__  # type: ignore[attr-defined]
_original_status = Invoice.status


def register(app: web.Application, peer: Any) -> None:
    def status(self: Invoice) -> str:
        if getattr(self, "_paid_out_of_band", False) and not self._voided:
            return "paid"
        return _original_status.fget(self)

    Invoice.status = property(status)  # type: ignore[method-assign,assignment]

    def _extras(
        invoice: Invoice,
        *,
        currency: str | None,
        collection_method: str | None,
        days_until_due: Any,
        auto_advance: Any,
    ) -> None:
        if currency:
            invoice.currency = currency.lower()
        invoice.collection_method = collection_method or "charge_automatically"
        invoice.days_until_due = resources.try_convert_to_int(days_until_due)
        invoice.auto_advance = resources.try_convert_to_bool(auto_advance)
        invoice.number = None
        invoice.hosted_invoice_url = None
        invoice.invoice_pdf = None
        invoice.due_date = None

    def create(
        cls: type[Invoice],
        *,
        currency: str | None = None,
        collection_method: str | None = None,
        days_until_due: Any = None,
        auto_advance: Any = None,
        pending_invoice_items_behavior: str | None = None,
        **data: Any,
    ) -> Invoice:
        if collection_method not in (None, "charge_automatically", "send_invoice"):
            raise UserError(400, "Invalid collection_method")
        if collection_method == "send_invoice" and days_until_due is None:
            raise UserError(400, "days_until_due is required for send_invoice")
        if pending_invoice_items_behavior == "exclude":
            customer = data.get("customer")
            if not isinstance(customer, str) or not customer.startswith("cus_"):
                raise UserError(400, "Missing required param: customer.")
            unexpected = set(data) - {"customer", "metadata", "description"}
            if unexpected:
                raise UserError(400, "Unexpected " + ", ".join(sorted(unexpected)))
            # simulation=True: localstripe neither claims pending items nor sends a webhook.
            invoice = Invoice(simulation=True, **data)
            invoice.lines._list = []
            invoice.currency = "usd"
            _extras(
                invoice,
                currency=currency,
                collection_method=collection_method,
                days_until_due=days_until_due,
                auto_advance=auto_advance,
            )
            peer.schedule(Event("invoice.created", invoice))
            return invoice
        invoice = _original_create(cls, **data)
        _extras(
            invoice,
            currency=currency,
            collection_method=collection_method,
            days_until_due=days_until_due,
            auto_advance=auto_advance,
        )
        return invoice

    Invoice._api_create = classmethod(create)  # type: ignore[method-assign,assignment]

    def create_item(cls: type[InvoiceItem], **data: Any) -> InvoiceItem:
        invoice_id = data.get("invoice")
        if invoice_id is not None:
            invoice = Invoice._api_retrieve(invoice_id)
            if invoice.status != "draft":
                raise UserError(400, "Invoice items can only be added to draft invoices.")
            currency = (data.get("currency") or "").lower()
            if invoice.lines._list and currency != invoice.currency:
                raise UserError(400, "The currency of an item must match its invoice.")
        item = _original_item_create(cls, **data)
        if invoice_id is not None:
            invoice.lines._list.append(InvoiceLineItem(item))
            invoice.currency = item.currency
        return item

    InvoiceItem._api_create = classmethod(create_item)  # type: ignore[method-assign,assignment]

    def on_payment_success(self: Invoice) -> None:
        _original_on_success(self)
        peer.schedule(Event("invoice.paid", self))

    Invoice._on_payment_success = on_payment_success  # type: ignore[method-assign]

    def pay(
        cls: type[Invoice],
        id: str,
        payment_method: str | None = None,
        paid_out_of_band: Any = None,
        **kwargs: Any,
    ) -> Invoice:
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(sorted(kwargs)))
        invoice = Invoice._api_retrieve(id)
        if resources.try_convert_to_bool(paid_out_of_band) is True:
            if invoice.status not in ("draft", "open"):
                raise UserError(400, "Invoice is already " + invoice.status)
            invoice._draft = False
            invoice._paid_out_of_band = True
            invoice.status_transitions["paid_at"] = int(time.time())
            peer.schedule(Event("invoice.paid", invoice))
            return invoice
        try:
            if payment_method is not None:
                method = PaymentMethod._api_retrieve(payment_method)
                PaymentMethod._api_attach(method.id, customer=invoice.customer)
                customer = Customer._api_retrieve(invoice.customer)
                customer.invoice_settings["default_payment_method"] = method.id
            invoice = _original_pay(cls, id)
        except UserError as exc:
            if exc.code == 402:  # declined: Stripe tells the invoice's listeners too
                failed = Invoice._api_retrieve(id)
                peer.schedule(Event("invoice.payment_failed", failed))
            raise
        if invoice.status == "open" and invoice.payment_intent:
            intent = resources.PaymentIntent._api_retrieve(invoice.payment_intent)
            charge = intent.latest_charge
            if charge is not None and charge.status == "failed":
                peer.schedule(Event("invoice.payment_failed", invoice))
                raise UserError(
                    402, "Your card was declined.", {"code": "card_declined", "charge": charge.id}
                )
        return invoice

    Invoice._api_pay_invoice = classmethod(pay)  # type: ignore[method-assign,assignment]

    def pay_route(**data: Any) -> Invoice:
        return Invoice._api_pay_invoice(**data)  # the patched classmethod, looked up now

    peer.replace_route(app, "POST", "/v1/invoices/{id}/pay", server.api_extra(pay_route, None))

    def void(id: str, **kwargs: Any) -> Invoice:
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(sorted(kwargs)))
        invoice = Invoice._api_retrieve(id)
        if invoice.payment_intent:  # localstripe's own path cancels the payment intent
            invoice = _original_void(Invoice, id)
        else:
            if invoice.status not in ("draft", "open"):
                raise UserError(400, f"This invoice is {invoice.status}: it cannot be voided.")
            invoice._draft = False
            invoice._voided = True
            invoice.status_transitions["voided_at"] = int(time.time())
        peer.schedule(Event("invoice.voided", invoice))
        return invoice

    peer.replace_route(app, "POST", "/v1/invoices/{id}/void", server.api_extra(void, None))

    def finalize(id: str, auto_advance: Any = None, **kwargs: Any) -> Invoice:
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(sorted(kwargs)))
        invoice = Invoice._api_retrieve(id)
        if invoice.status != "draft":
            raise UserError(400, f"This invoice is already {invoice.status}.")
        invoice._finalize()
        invoice.number = f"LS-{peer.next_number('invoice'):05d}"
        base = getattr(peer, "base_url", "")
        invoice.hosted_invoice_url = f"{base}/hosted_invoices/{invoice.id}"
        invoice.invoice_pdf = f"{base}/hosted_invoices/{invoice.id}/pdf"
        days = getattr(invoice, "days_until_due", None)
        if getattr(invoice, "collection_method", "") == "send_invoice" and days is not None:
            invoice.due_date = int(time.time()) + int(days) * 86400
        peer.schedule(Event("invoice.finalized", invoice))
        if invoice.total <= 0:
            invoice._on_payment_success()
        return invoice

    async def finalize_route(request: web.Request) -> web.Response:
        data = await server.get_post_data(request) or {}
        data.pop("expand", None)
        invoice = finalize(request.match_info["id"], **data)
        return server.json_response(invoice._export())

    def hosted_invoice(invoice_id: str) -> web.Response:
        try:
            invoice = Invoice._api_retrieve(invoice_id)
        except UserError as exc:
            return exc.to_response()
        return web.Response(
            text=(
                f"<h1>Invoice {invoice.number}</h1><p>{invoice.total} {invoice.currency}"
                f" — {invoice.status}</p>"
            ),
            content_type="text/html",
        )

    @web.middleware
    async def remember_base(request: web.Request, handler: Any) -> web.StreamResponse:
        peer.base_url = f"{request.scheme}://{request.host}"
        if request.method == "GET" and request.path.startswith("/hosted_invoices/"):
            # The customer's payment page: public, before localstripe's key check.
            return hosted_invoice(request.path.split("/")[2])
        return await handler(request)

    app.middlewares.insert(0, remember_base)
    app.router.add_post("/v1/invoices/{id}/finalize", finalize_route)
