"""The price in force for a model of one environment, as ``GET /api/models`` shows it.

Same precedence as costing (apps/pricing/costing.py): the environment's custom
rates for the model > the catalog price less the environment's discount (for
the model, else for its provider) > the catalog price. Read from the
in-process caches of apps.pricing.catalog: no query in steady state.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from apps.pricing.catalog import get_catalog, get_overrides
from apps.pricing.selectors import price_in_force

if TYPE_CHECKING:
    from apps.accounts.models import Environment


def model_price_in_force(
    environment: Environment, provider: str, model: str, at: dt.datetime
) -> dict[str, Any] | None:
    """``{"source", "catalog", "discountPercent", "customRates"}``; None when unpriced.

    ``source`` is what an event of this model recorded at ``at`` would be costed
    with: ``override_rate``, ``override_discount`` or ``catalog``. ``catalog`` is
    the catalog version in force (apps.pricing.selectors.price_in_force), or None.
    """
    model_ref = model.strip().lower()
    if not model_ref:
        return None
    provider_ref = provider.strip().lower() or None
    catalog = get_catalog()
    resolved = catalog.resolve(provider_ref, model_ref)
    if resolved is not None:
        provider_id: str | None = resolved.provider_id
        names: tuple[str, ...] = (
            (model_ref,) if resolved.model_id == model_ref else (model_ref, resolved.model_id)
        )
    else:
        provider_id = provider_ref or catalog.infer_provider(model_ref)
        names = (model_ref,)
    catalog_price = price_in_force(provider, model, at)
    overrides = get_overrides(environment.pk)
    rate = None if overrides.empty else overrides.rate_for(provider_id, names)
    if rate is not None:
        return {
            "source": "override_rate",
            "catalog": catalog_price,
            "discountPercent": None,
            "customRates": {
                "inputCostPerMillion": rate.input_mtok,
                "outputCostPerMillion": rate.output_mtok,
                "cacheReadCostPerMillion": rate.cache_read_mtok,
                "cacheWriteCostPerMillion": rate.cache_write_mtok,
                "costPerRequest": rate.per_request_usd,
            },
        }
    if catalog_price is None:
        return None
    discount = None if overrides.empty else overrides.discount_for(provider_id, names)
    return {
        "source": "catalog" if discount is None else "override_discount",
        "catalog": catalog_price,
        "discountPercent": discount,
        "customRates": None,
    }
