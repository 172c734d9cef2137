"""Issue one API key and print it (JSON) — the only time the secret is shown."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts.audit import Actor
from apps.accounts.models import Environment, Organization
from apps.apikeys.models import ApiKey
from apps.apikeys.services import apikey_create
from apps.core.errors import TansoError
from apps.core.tenancy import scoped_to_org
from apps.customers.models import Customer


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="organization name or slug")
        parser.add_argument("--env", choices=Environment.Kind.values, required=True)
        parser.add_argument("--kind", choices=ApiKey.Kind.values, required=True)
        parser.add_argument("--scopes", nargs="*", default=None)
        parser.add_argument("--customer", default=None, help="customer reference (ck keys)")
        parser.add_argument("--name", default="")
        parser.add_argument("--budget-cents", type=int, default=None)
        parser.add_argument("--budget-period", choices=ApiKey.BudgetPeriod.values, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        orgs = Organization.objects.filter(slug=options["org"]) or Organization.objects.filter(
            name=options["org"]
        )
        if orgs.count() != 1:
            raise CommandError(f"no single organization named {options['org']!r}")
        environment = scoped_to_org(
            Environment.objects.select_related("organization"), orgs.get()
        ).get(kind=options["env"])
        customer = None
        if options["customer"]:
            customer = (
                Customer.objects.for_env(environment)
                .filter(reference_id=options["customer"])
                .first()
            )
            if customer is None:
                raise CommandError(f"no customer {options['customer']!r} in {environment}")
        try:
            issued = apikey_create(
                environment=environment,
                kind=options["kind"],
                actor=Actor.system(),
                name=options["name"],
                scopes=options["scopes"],
                customer=customer,
                budget_cents=options["budget_cents"],
                budget_period=options["budget_period"],
            )
        except TansoError as exc:
            raise CommandError(f"{exc.message} {exc.fields or ''}".strip()) from exc
        self.stdout.write(
            json.dumps(
                {
                    "id": str(issued.key.pk),
                    "key": issued.plaintext,
                    "kind": issued.key.kind,
                    "environment": environment.kind,
                    "scopes": sorted(issued.key.effective_scopes),
                },
                indent=2,
            )
        )
