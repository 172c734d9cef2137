"""Credits: a customer's pools and balances, a pool's ledger, the price book (as the
``GET /api/v1/client/credits/...`` routes), and the Platform writes: grant credits and
record a purchase (as ``POST /api/v1/client/credits/grants``). Both add to a balance the
customer can spend, so without ``confirm: true`` they answer a preview (the grant made
inside a transaction that is rolled back: the grant and the balance after it)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import Field

from apps.apikeys import scopes as S
from apps.core.errors import ValidationFailed
from apps.core.money import decimal_str
from apps.credits import api as credits_api
from apps.mcp.calls import ToolAnswer, call_view, dry_run, tool
from apps.mcp.registry import ToolSpec
from apps.mcp.tools.pinning import pinned

Reference = Annotated[
    str | None, Field(description="The customer; a customer key may leave it out (its own).")
]
Confirm = Annotated[
    bool,
    Field(description="true to make the change; false (default) answers a preview only."),
]
IdempotencyKey = Annotated[
    str | None,
    Field(description="Optional: the same key and arguments within 24 h replay the first answer."),
]


@tool(ToolSpec("listCreditPools", "A customer's credit balances", S.BILLING_READ, S.CUSTOMER_READ))
def list_credit_pools(*, customerReferenceId: Reference = None) -> ToolAnswer:
    """The customer's credit pools (one per denomination) with their balances."""
    reference = pinned(customerReferenceId)
    page = call_view(credits_api.PoolList, "get", reference_id=reference)
    lines = [f"{reference}: {len(page['items'])} credit pools"]
    lines += [
        f"- {pool.get('denomination')}: balance {pool.get('balance')}" for pool in page["items"]
    ]
    return ToolAnswer(page, "\n".join(lines), "/dashboard/credits/")


@tool(ToolSpec("listCreditTransactions", "A credit pool's ledger", S.BILLING_READ, S.CUSTOMER_READ))
def list_credit_transactions(
    *,
    poolId: str,
    customerReferenceId: Reference = None,
    limit: Annotated[int | None, Field(description="1-200 (default 50).")] = None,
    cursor: Annotated[str | None, Field(description="nextCursor of the previous page.")] = None,
) -> ToolAnswer:
    """A pool's ledger entries (grants, deductions, expirations, reversals), newest first."""
    reference = pinned(customerReferenceId)
    page = call_view(
        credits_api.PoolTransactions,
        "get",
        query={"limit": limit, "cursor": cursor},
        reference_id=reference,
        pool_id=poolId,
    )
    lines = [f"{len(page['items'])} ledger entries"]
    lines += [
        f"- {row.get('createdAt')} {row.get('transactionType')} {row.get('amount')}"
        for row in page["items"][:20]
    ]
    return ToolAnswer(page, "\n".join(lines), f"/dashboard/credits/{poolId}/")


@tool(ToolSpec("getCreditPrices", "The credit price book", S.BILLING_READ, S.CUSTOMER_READ))
def get_credit_prices() -> ToolAnswer:
    """The price per credit in force now, per denomination and currency."""
    page = call_view(credits_api.PriceList, "get")
    lines = [f"{len(page['items'])} credit prices"]
    lines += [
        f"- {row.get('denomination')}: {row.get('pricePerCredit')} {row.get('currency')} per credit"
        for row in page["items"]
    ]
    return ToolAnswer(page, "\n".join(lines), "/dashboard/credits/")


def _grant(body: dict[str, Any], confirm: bool, what: str) -> ToolAnswer:
    def grant() -> dict[str, Any]:
        return call_view(credits_api.GrantCreate, "post", data=body)

    if not confirm:
        after = dry_run(grant)
        data = {"preview": True, "confirmed": False, "grant": after}
        text = (
            f"PREVIEW (nothing changed; call again with confirm: true): {what} "
            f"{after.get('amount')} credits; balance after: {after.get('balanceAfter')}."
        )
        return ToolAnswer(data, text, "/dashboard/credits/")
    granted = grant()
    data = {"preview": False, "confirmed": True, "grant": granted}
    text = f"Done: {what} {granted.get('amount')} credits; balance {granted.get('balanceAfter')}."
    return ToolAnswer(data, text, "/dashboard/credits/")


def _target(
    customerReferenceId: str | None, denomination: str | None, poolId: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if poolId:
        body["creditPoolId"] = poolId
    if customerReferenceId:
        body["customerReferenceId"] = customerReferenceId
    if denomination:
        body["denomination"] = denomination
    return body


@tool(
    ToolSpec(
        "grantCredits",
        "Grant credits",
        S.BILLING_WRITE,
        kind="write",
        idempotent=False,
        confirms=True,
    )
)
def grant_credits(
    *,
    amount: Annotated[str, Field(description="Credits to add, a decimal string.")],
    customerReferenceId: str | None = None,
    denomination: Annotated[
        str | None, Field(description="The credit model's denomination (with the customer).")
    ] = None,
    poolId: Annotated[str | None, Field(description="Or the pool's id.")] = None,
    grantType: Annotated[
        str | None, Field(description="manual (default), promotional, refund or plan.")
    ] = None,
    expiresAt: Annotated[str | None, Field(description="ISO 8601; default: never.")] = None,
    description: str | None = None,
    confirm: Confirm = False,
    idempotencyKey: IdempotencyKey = None,
) -> ToolAnswer:
    """Add credits to a customer's pool (created when missing). Without confirm: true, a
    preview of the grant and the balance after it."""
    body = _target(customerReferenceId, denomination, poolId)
    body.update({"amount": amount, "grantType": grantType or "manual"})
    if expiresAt:
        body["expiresAt"] = expiresAt
    if description:
        body["description"] = description
    return _grant(body, confirm, "grant")


@tool(
    ToolSpec(
        "purchaseCredits",
        "Record a purchase of credits",
        S.BILLING_WRITE,
        kind="write",
        idempotent=False,
        confirms=True,
    )
)
def purchase_credits(
    *,
    credits: Annotated[str, Field(description="Credits bought, a decimal string.")],
    customerReferenceId: str,
    denomination: str,
    confirm: Confirm = False,
    idempotencyKey: IdempotencyKey = None,
) -> ToolAnswer:
    """Record that the customer bought credits at the price book's price in force (a
    `purchased` grant carrying the unit price). The preview shows the price to charge and
    the balance after."""
    try:
        quantity = Decimal(credits)
    except InvalidOperation:
        raise ValidationFailed(fields={"credits": ["A decimal number."]}) from None
    prices = call_view(credits_api.PriceList, "get")["items"]
    price = next((p for p in prices if p.get("denomination") == denomination), None)
    if price is None:
        raise ValidationFailed(
            fields={"denomination": ["The price book has no price for this denomination."]}
        )
    unit_price = Decimal(str(price["pricePerCredit"]))
    body = {
        "customerReferenceId": pinned(customerReferenceId),
        "denomination": denomination,
        "amount": credits,
        "grantType": "purchased",
        "unitPrice": str(unit_price),
        "currency": price.get("currency") or "",
    }
    answer = _grant(body, confirm, "purchase of")
    answer.data["price"] = {
        "unitPrice": decimal_str(unit_price),
        "currency": price.get("currency"),
        "total": decimal_str(unit_price * quantity),
    }
    answer.text += f" Price: {decimal_str(unit_price * quantity)} {price.get('currency')}."
    return answer
