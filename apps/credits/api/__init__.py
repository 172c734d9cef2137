"""Client API for credits, under ``/api/v1/client/``.

* ``credits/models``, ``credits/allocations``: denominations and what plans grant;
* ``credits/{ref}/pools[/{id}[/grants|/transactions]]``: a customer's pools (ck keys too);
* ``credits/grants``, ``credits/deductions``, ``credits/transactions/{id}/reverse``:
  manual ledger operations (``billing.write``);
* ``credits/weights``, ``credits/prices``: the two dials, published for a future instant;
* ``customers/{ref}/usage``: the customer's credit burndown.

Reads need ``billing.read`` (``usage.read`` for the usage report), writes ``billing.write``.
Enumerations are lowercase in responses; requests also accept the uppercase
spelling of the reference API (``PURCHASED``, ``PLAN_INCLUDED``, ``CAPPED``...).

One module per group of routes (:mod:`.credit_models`, :mod:`.pools`,
:mod:`.ledger_operations`, :mod:`.publishing`, :mod:`.usage`); :mod:`.inputs` and
:mod:`.schema` hold what they share. ``urls.py`` reaches the views through this package.
"""

from __future__ import annotations

from .credit_models import (
    AllocationDetail,
    AllocationListCreate,
    CreditModelDetail,
    CreditModelListCreate,
)
from .ledger_operations import DeductionCreate, GrantCreate, TransactionReverse
from .pools import PoolDetail, PoolGrants, PoolList, PoolTransactions
from .publishing import PriceList, PricePublish, WeightDetail, WeightList, WeightPublish
from .usage import CustomerUsage

__all__ = [
    "AllocationDetail",
    "AllocationListCreate",
    "CreditModelDetail",
    "CreditModelListCreate",
    "CustomerUsage",
    "DeductionCreate",
    "GrantCreate",
    "PoolDetail",
    "PoolGrants",
    "PoolList",
    "PoolTransactions",
    "PriceList",
    "PricePublish",
    "TransactionReverse",
    "WeightDetail",
    "WeightList",
    "WeightPublish",
]
