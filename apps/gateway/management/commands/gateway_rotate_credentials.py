"""Re-encrypt every provider credential with the first of GATEWAY_CREDENTIAL_KEYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from apps.gateway.services import credentials_rotate


class Command(BaseCommand):
    help = "Re-encrypt every gateway provider credential with the newest key (docs/gateway.md)."

    def handle(self, *args: Any, **options: Any) -> None:
        count = credentials_rotate()
        self.stdout.write(f"{count} credential(s) re-encrypted")
