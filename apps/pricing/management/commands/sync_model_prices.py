"""Load the model price catalog from its source (genai-prices data, or MODEL_PRICES_SOURCE)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.pricing.services import catalog_sync
from apps.pricing.source import SourceError


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--source",
            default=None,
            help="a local JSON file in the genai-prices shape (default: MODEL_PRICES_SOURCE, "
            "else the data bundled with genai-prices)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = catalog_sync(source=options["source"])
        except SourceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(result.as_dict()))
