"""Load the demo organization, login and keys (idempotent), and print them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.demo.services import demo_load


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args: Any, **options: Any) -> None:
        demo = demo_load()
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
                    *(f"  {label:<10} {key}" for label, key in demo.keys.items()),
                    f"  API docs:  {site}/api/docs",
                    "",
                ]
            )
        )
