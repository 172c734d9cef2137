"""Keep the cached plan state honest: a change to plans, rules or subscriptions of an
environment renews its state token once the change commits (``state.state_changed``).

A signal, not a call in the services of ``apps.plans`` and ``apps.subscriptions``:
this is cache invalidation, not a business rule, and those apps sit beside us in
the layers (they must not know who caches them). Every write they make goes
through ``save()`` or ``delete()`` (their bulk ``update()`` calls come with a
``save()`` of the same subscription in the same transaction).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from . import state


def _changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    environment_id = getattr(instance, "environment_id", None)
    if environment_id is not None:
        transaction.on_commit(lambda: state.state_changed(environment_id))


def connect() -> None:
    from apps.plans.models import Plan, PlanFeatureRule
    from apps.subscriptions.models import Subscription, SubscriptionChange

    for model in (Plan, PlanFeatureRule, Subscription, SubscriptionChange):
        post_save.connect(_changed, sender=model, dispatch_uid=f"entitlements-{model.__name__}")
        post_delete.connect(
            _changed, sender=model, dispatch_uid=f"entitlements-del-{model.__name__}"
        )
