"""Create a user, an organization, both environments and one key of each kind.

Idempotent by email + organization name: a second run creates nothing and
prints the existing keys' ids with an empty "key" (secrets are shown once).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.accounts.models import Organization
from apps.onboarding.services import bootstrap_account


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--org", required=True, help="organization name")
        parser.add_argument("--password", default=None)
        parser.add_argument(
            "--mode", choices=Organization.Mode.values, default=Organization.Mode.PLATFORM
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = bootstrap_account(
            email=options["email"],
            org_name=options["org"],
            password=options["password"],
            mode=options["mode"],
        )
        self.stdout.write(
            json.dumps(
                {
                    "user": result.user.email,
                    "organization": {
                        "id": str(result.organization.pk),
                        "name": result.organization.name,
                        "slug": result.organization.slug,
                        "mode": result.organization.mode,
                    },
                    "created": result.created,
                    "keys": result.keys,
                },
                indent=2,
            )
        )
