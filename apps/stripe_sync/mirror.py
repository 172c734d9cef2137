"""dj-stripe's local mirror of Stripe objects, kept from webhook payloads (best effort).

Only customers are mirrored: dj-stripe 2.11 stores them from the payload alone. Its
invoice sync fails on any invoice with lines (``Invoice._attach_objects_post_save_hook``
iterates ``data["lines"]``, a list *object*, as if it were a list), so invoices are kept
in our own mapping (see docs/stripe.md). Our own mapping (``Customer.stripe_customer_id``,
``StripeInvoiceSync``) is what the code relies on. Runs in a savepoint: a payload
dj-stripe cannot take rolls back alone and never fails the webhook.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.db import transaction

from .client import api_key_of

if TYPE_CHECKING:
    from .models import StripeConnection

logger = logging.getLogger(__name__)


def _model_for(object_type: str) -> Any:
    from djstripe import models as djstripe_models

    return {"customer": djstripe_models.Customer}.get(object_type)


def mirror_object(stripe_connection: StripeConnection, payload: dict[str, Any]) -> bool:
    """Store ``data.object`` of an event in dj-stripe's tables; True when stored."""
    obj = (payload.get("data") or {}).get("object") or {}
    model = _model_for(str(obj.get("object") or ""))
    if model is None or obj.get("deleted"):
        return False
    with transaction.atomic():
        model.sync_from_stripe_data(obj, api_key=api_key_of(stripe_connection.environment_id))
    return True
