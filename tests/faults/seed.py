"""Data for the fault tests, written through the services into the throwaway database.

Run as ``python -m tests.faults.seed`` with ``DATABASE_URL`` / ``REDIS_URL`` pointing at
the throwaway servers; prints JSON: the secret key, the customer and feature to check
and meter, and a login.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from decimal import Decimal

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tanso.settings")


def main() -> None:
    import django

    django.setup()

    from django.utils import timezone

    from apps.accounts.audit import Actor
    from apps.customers.models import Customer
    from apps.plans.pricing import PricingModel, Rule
    from apps.plans.services import RuleSpec
    from apps.pricing.services import catalog_ensure_loaded
    from apps.subscriptions.models import Subscription
    from apps.subscriptions.services import subscription_create
    from tests.factories import PASSWORD, UserFactory, env_of, make_key, make_org
    from tests.plans.helpers import make_plan

    # The model price catalog, as a deployment has it (the release step, or the demo data);
    # else the first event of the load would load it, under its locks.
    catalog_ensure_loaded()
    owner = UserFactory(email="owner@faults.example")
    org = make_org(owner, name="Faults Inc")
    environment = env_of(org, "test")
    key = make_key(environment, "sk").plaintext
    # A cap far above what the load can use: every check that can be decided is allowed.
    plan = make_plan(
        environment,
        "pro",
        features={
            "chat": RuleSpec(
                rule=Rule(
                    model=PricingModel.PER_UNIT,
                    unit_price=Decimal("0.002"),
                    max_usage=Decimal(10**9),
                )
            )
        },
    )
    customer, _ = Customer.objects.get_or_create(environment=environment, reference_id="cus_f")
    long_ago = timezone.now() - dt.timedelta(days=2)
    subscription_create(
        environment=environment,
        customer=customer,
        plan=plan,
        now=long_ago,
        actor=Actor.system(),
    )
    # Past the environment's first minute on Platform, when counters are not built yet.
    Subscription.objects.filter(environment=environment).update(created_at=long_ago)
    json.dump(
        {
            "key": key,
            "environmentId": str(environment.pk),
            "customer": "cus_f",
            "feature": "chat",
            "email": owner.email,
            "password": PASSWORD,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
