"""Writes for credits, one module per concern:

* :mod:`.credit_models`: credit models and the credits plans allocate;
* :mod:`.pools`: one pool per customer and denomination;
* :mod:`.grants`: credits added to a pool (by hand, purchase, or plan period);
* :mod:`.deductions`: an event's usage charged, and manual deductions;
* :mod:`.usage_batches`: the usage deductions of an ingestion batch;
* :mod:`.reversal`: reversing a deduction;
* :mod:`.rollover`: rollover and expiry;
* :mod:`.publishing`: weights and the price book;
* :mod:`.audit`, :mod:`.checks`: who made a change, and the shared input checks.

Every change to a pool goes through :class:`apps.credits.ledger.PoolBook` under
the pool's row lock, in one transaction (a savepoint when the caller already has
one, as ingestion does): the ledger entries, the grants' remaining credits and
the pool's cached balance move together or not at all.

For the ingestion pipeline: :func:`credits_deduct_for_usage` (inside the event's
transaction), the batch forms in :mod:`.usage_batches`, and :func:`credits_reverse`.
For subscriptions: :func:`credits_grant_plan_period` at each period start.

Other apps import from this package (``from apps.credits.services import ...``), not
from its modules.
"""

from __future__ import annotations

from apps.credits.models import WeightMatch

from .audit import actor_label
from .credit_models import (
    credit_model_archive,
    credit_model_create,
    plan_allocation_remove,
    plan_allocation_set,
)
from .deductions import DeductionResult, credits_deduct, credits_deduct_for_usage
from .grants import credit_grant, credits_grant_plan_period
from .pools import credit_pool_ensure
from .publishing import (
    PUBLISH_MAX_ENTRIES,
    PriceEntry,
    WeightEntry,
    credit_prices_publish,
    credit_weight_withdraw,
    credit_weights_publish,
)
from .reversal import credits_reverse
from .rollover import SettleResult, credits_rollover, credits_settle_pool
from .usage_batches import (
    PreparedUsage,
    UsageCharge,
    credits_commit_usage,
    credits_deduct_for_usage_many,
    credits_prepare_usage,
)

__all__ = [
    "PUBLISH_MAX_ENTRIES",
    "DeductionResult",
    "PreparedUsage",
    "PriceEntry",
    "SettleResult",
    "UsageCharge",
    "WeightEntry",
    "WeightMatch",
    "actor_label",
    "credit_grant",
    "credit_model_archive",
    "credit_model_create",
    "credit_pool_ensure",
    "credit_prices_publish",
    "credit_weight_withdraw",
    "credit_weights_publish",
    "credits_commit_usage",
    "credits_deduct",
    "credits_deduct_for_usage",
    "credits_deduct_for_usage_many",
    "credits_grant_plan_period",
    "credits_prepare_usage",
    "credits_reverse",
    "credits_rollover",
    "credits_settle_pool",
    "plan_allocation_remove",
    "plan_allocation_set",
]
