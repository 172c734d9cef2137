"""``manage.py mcp --key KEY``: the MCP server over stdio, for desktop clients.

Every request runs as ``--key`` (or ``$TANSO_API_KEY``), checked again on each call, so
revoking the key stops the process's tools at once. ``--list`` prints the tools and the
scope each needs."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.apikeys.authentication import authenticate_raw_key
from apps.core.errors import TansoError
from apps.mcp.server import build_server, describe


class Command(BaseCommand):
    help = "Run the Tanso MCP server over stdio with an API key (see docs/mcp.md)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--key", help="The API key (default: $TANSO_API_KEY).")
        parser.add_argument("--list", action="store_true", help="Print the tools and exit.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            self.stdout.write(describe())
            return
        key = options["key"] or os.environ.get("TANSO_API_KEY")
        if not key:
            raise CommandError("Give --key or set TANSO_API_KEY.")
        try:
            authenticate_raw_key(key, "stdio")
        except TansoError as exc:
            raise CommandError(f"The key was refused: {exc.message}") from None
        build_server(key=key).run("stdio")
