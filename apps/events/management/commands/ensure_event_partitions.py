"""Create the monthly partitions of events_event around now (idempotent)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.events.partitions import MONTHS_AHEAD
from apps.events.services import event_partitions_ensure


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ahead", type=int, default=MONTHS_AHEAD, help="months ahead")

    def handle(self, *args: Any, **options: Any) -> None:
        created = event_partitions_ensure(ahead=options["ahead"])
        self.stdout.write("created: " + (", ".join(created) if created else "nothing"))
