"""Start Stripe work when ours changes: a signal only enqueues an idempotent task (after the
commit), the task decides. Not a call in the services of ``apps.subscriptions`` or
``apps.plans``: those apps sit below us in the layers and must not know Stripe exists.

* a customer created in a Stripe-driven environment (by the API or the dashboard) ->
  ``provision_customer`` (customers that events create in bulk have no signal: the
  provisioning sweep makes those whose usage waits for them);
* a subscription created in a Stripe-driven environment -> ``provision_subscription``;
  one that ended -> ``cancel_subscription`` (when it reached Stripe);
* a plan saved active -> ``provision_plan``;
* billing settings saved -> this process forgets the environment's cached mode; set to
  Stripe-driven -> ``provision_environment`` (plans and live subscriptions made so far).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save

from .ingestion import forget_mode, is_stripe_driven


def _enqueue(task: Any, *args: Any) -> None:
    transaction.on_commit(lambda: task.delay(*args), robust=True)


def _subscription_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    from .models import StripeSubscription
    from .tasks import cancel_subscription, provision_subscription

    if not is_stripe_driven(instance.environment_id):
        return
    if created:
        _enqueue(provision_subscription, str(instance.pk))
    elif (
        not instance.is_live
        and StripeSubscription.objects.filter(
            subscription_id=instance.pk, cancelled_at__isnull=True
        ).exists()
    ):
        _enqueue(cancel_subscription, str(instance.pk))


def _customer_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    from .tasks import provision_customer

    if created and is_stripe_driven(instance.environment_id):
        _enqueue(provision_customer, str(instance.pk))


def _plan_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    from .tasks import provision_plan

    if instance.status == "active" and is_stripe_driven(instance.environment_id):
        _enqueue(provision_plan, str(instance.pk))


def _settings_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    from apps.billing.models import StripeMode

    from .tasks import provision_environment

    forget_mode(instance.environment_id)
    if instance.stripe_mode == StripeMode.STRIPE_DRIVEN:
        _enqueue(provision_environment, str(instance.environment_id))


def connect() -> None:
    from apps.billing.models import BillingSettings
    from apps.customers.models import Customer
    from apps.plans.models import Plan
    from apps.subscriptions.models import Subscription

    post_save.connect(_subscription_saved, sender=Subscription, dispatch_uid="stripe-meters-sub")
    post_save.connect(_customer_saved, sender=Customer, dispatch_uid="stripe-meters-customer")
    post_save.connect(_plan_saved, sender=Plan, dispatch_uid="stripe-meters-plan")
    post_save.connect(_settings_saved, sender=BillingSettings, dispatch_uid="stripe-meters-mode")
