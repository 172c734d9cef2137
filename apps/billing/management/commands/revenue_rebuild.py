"""Rewrite the recognised revenue of invoices from the invoices (docs/revenue.md).

``manage.py revenue_rebuild --environment <uuid>`` (or ``--all``): after late events
changed the revenue the events carry, or to fill the table for invoices issued before
recognition existed. Idempotent.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts.models import Environment
from apps.billing.recognition import revenue_rebuild


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--environment", help="the environment's id")
        parser.add_argument("--all", action="store_true", help="every environment")

    def handle(self, *args: Any, **options: Any) -> None:
        if bool(options["environment"]) == bool(options["all"]):
            raise CommandError("give --environment <id> or --all")
        environments = (
            Environment.objects.all()
            if options["all"]
            else Environment.objects.filter(pk=options["environment"])
        )
        for environment in environments.order_by("pk"):
            written = revenue_rebuild(environment_id=environment.pk)
            self.stdout.write(f"{environment.pk}: {written} rows")
