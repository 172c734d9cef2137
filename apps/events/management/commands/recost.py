"""Re-price events: the unpriced ones (default) or, with --all, every non-explicit one.

Examples:
  manage.py recost                               # price what became priceable
  manage.py recost --model gpt-4o --from 2026-01-01T00:00:00Z --to 2026-02-01T00:00:00Z --all
"""

from __future__ import annotations

import datetime as dt
import getpass
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.events.services import DEFAULT_BATCH, events_recost


def _timestamp(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"not an ISO 8601 timestamp: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", default=None, help="only events of this model name")
        parser.add_argument("--from", dest="start", default=None, help="ISO 8601, inclusive")
        parser.add_argument("--to", dest="end", default=None, help="ISO 8601, exclusive")
        parser.add_argument("--env", default=None, help="environment id (default: all)")
        parser.add_argument(
            "--all",
            action="store_true",
            help="re-price every non-explicit event in the filter, not only unpriced ones",
        )
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)

    def handle(self, *args: Any, **options: Any) -> None:
        environment_id = None
        if options["env"]:
            try:
                environment_id = uuid.UUID(options["env"])
            except ValueError:
                raise CommandError("--env must be an environment id (UUID)") from None
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be positive")
        run = events_recost(
            actor=f"cli:{getpass.getuser()}",
            environment_id=environment_id,
            model=options["model"],
            start=_timestamp(options["start"]) if options["start"] else None,
            end=_timestamp(options["end"]) if options["end"] else None,
            reprice_all=options["all"],
            batch_size=options["batch_size"],
        )
        assert run is not None
        self.stdout.write(
            f"recost run #{run.pk}: examined {run.events_examined}, changed "
            f"{run.events_changed} ({run.events_newly_priced} newly priced), "
            f"cost change {run.cost_change_usd} USD"
        )
