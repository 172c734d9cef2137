"""Load the demo organization, login and keys, and its history of usage, invoices and
credits (idempotent), and print the login and keys."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from apps.demo.history import HISTORY_DAYS, demo_history_load
from apps.demo.services import demo_load


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-history",
            action="store_true",
            help="Only the login and keys: no customers, usage, invoices or credits.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        demo = demo_load()
        history = "not loaded (--no-history)"
        if not options["no_history"]:
            started = time.monotonic()
            loaded = demo_history_load(
                environment=demo.environment, secret_key=demo.keys["sk_test"]
            )
            took = time.monotonic() - started
            history = (
                f"{HISTORY_DAYS} days up to yesterday (already loaded)"
                if not loaded.days
                else f"{loaded.days} days, {loaded.events} events added in {took:.1f} s"
            )
        site = settings.SITE_URL
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "  Demo data ready",
                    f"  Sign in:   {site}/accounts/login/",
                    f"  Email:     {demo.email}",
                    f"  Password:  {demo.password}",
                    f"  Org:       {demo.organization.name} (test environment)",
                    f"  History:   {history}",
                    *(f"  {label:<10} {key}" for label, key in demo.keys.items()),
                    f"  API docs:  {site}/api/docs",
                    "",
                ]
            )
        )
