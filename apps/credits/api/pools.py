"""``credits/{ref}/pools[/{id}[/grants|/transactions]]``: a customer's pools (ck keys may
read their own customer's)."""

from __future__ import annotations

import base64
import binascii

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.apikeys import scopes as S
from apps.apikeys.authentication import environment_of
from apps.apikeys.idempotency import APIView
from apps.apikeys.permissions import ensure_customer_access
from apps.core.api.pagination import page_limit, paginate_newest_first
from apps.core.api.schema import PAGE_PARAMETERS, page
from apps.core.errors import InvalidQuery
from apps.credits import rendering as R
from apps.credits import selectors as sel
from apps.credits.models import TransactionType
from apps.customers.models import Customer
from apps.customers.selectors import customer_get

from .inputs import _now, _with_allocations
from .schema import GRANT_OUT, POOL_OUT, POOL_PARAM, REFERENCE_PARAM, TRANSACTION_OUT


class _CustomerPoolView(APIView):
    required_scopes = {"GET": S.BILLING_READ, "HEAD": S.BILLING_READ}
    customer_key_scope = S.CUSTOMER_READ

    def customer(self, request: Request, reference_id: str) -> Customer:
        ensure_customer_access(request, reference_id)
        return customer_get(environment_of(request), reference_id)


class PoolList(_CustomerPoolView):
    @extend_schema(
        summary="A customer's credit pools (one per denomination)",
        operation_id="credit_pools_list",
        request=None,
        parameters=[REFERENCE_PARAM],
        responses={200: page("CreditsPoolPage", POOL_OUT)},
    )
    def get(self, request: Request, reference_id: str) -> Response:
        customer = self.customer(request, reference_id)
        pools = sel.customer_pools(environment_of(request), customer)
        items = [R.render_pool(pool, customer.reference_id) for pool in pools]
        return Response({"items": items, "nextCursor": None, "hasMore": False})


class PoolDetail(_CustomerPoolView):
    @extend_schema(
        summary="One credit pool",
        request=None,
        parameters=[REFERENCE_PARAM, POOL_PARAM],
        responses={200: POOL_OUT},
    )
    def get(self, request: Request, reference_id: str, pool_id: str) -> Response:
        customer = self.customer(request, reference_id)
        pool = sel.pool_get(environment_of(request), customer, pool_id)
        return Response(R.render_pool(pool, customer.reference_id))


class PoolGrants(_CustomerPoolView):
    @extend_schema(
        summary="A pool's grants, newest first",
        request=None,
        parameters=[REFERENCE_PARAM, POOL_PARAM, *PAGE_PARAMETERS],
        responses={200: page("CreditsGrantPage", GRANT_OUT)},
    )
    def get(self, request: Request, reference_id: str, pool_id: str) -> Response:
        customer = self.customer(request, reference_id)
        pool = sel.pool_get(environment_of(request), customer, pool_id)
        now = _now()
        return Response(
            paginate_newest_first(
                sel.pool_grants(pool), request, lambda grant: R.render_grant(grant, now)
            )
        )


def _decode_sequence_cursor(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode()).decode()
        value = int(raw.removeprefix("seq:")) if raw.startswith("seq:") else None
    except (ValueError, UnicodeDecodeError, binascii.Error):
        value = None
    if value is None or value < 0:
        raise InvalidQuery(fields={"cursor": ["Malformed cursor."]})
    return value


def _encode_sequence_cursor(sequence: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{sequence}".encode()).decode().rstrip("=")


class PoolTransactions(_CustomerPoolView):
    @extend_schema(
        summary="A pool's ledger, newest entry first",
        request=None,
        parameters=[
            REFERENCE_PARAM,
            POOL_PARAM,
            OpenApiParameter("transactionType", str, enum=TransactionType.values),
            *PAGE_PARAMETERS,
        ],
        responses={200: page("CreditsTransactionPage", TRANSACTION_OUT)},
    )
    def get(self, request: Request, reference_id: str, pool_id: str) -> Response:
        customer = self.customer(request, reference_id)
        pool = sel.pool_get(environment_of(request), customer, pool_id)
        entries = sel.pool_transactions(pool)
        kind = request.query_params.get("transactionType")
        if kind:
            kind = kind.lower()
            if kind not in TransactionType.values:
                raise InvalidQuery(
                    fields={"transactionType": [f"One of {', '.join(TransactionType.values)}."]}
                )
            entries = entries.filter(transaction_type=kind)
        limit = page_limit(request)
        cursor = request.query_params.get("cursor")
        if cursor:
            entries = entries.filter(sequence__lt=_decode_sequence_cursor(cursor))
        rows = list(_with_allocations(entries.order_by("-sequence"))[: limit + 1])
        has_more = len(rows) > limit
        rows = rows[:limit]
        return Response(
            {
                "items": [R.render_transaction(row) for row in rows],
                "nextCursor": _encode_sequence_cursor(rows[-1].sequence) if has_more else None,
                "hasMore": has_more,
            }
        )
