"""Statements PostgreSQL prepares once per connection, for the write hot paths.

Django's cursors bind parameters client-side and never prepare, so PostgreSQL
parses and plans every statement on every call, and psycopg quotes every
parameter into the text (for a large jsonb parameter, a copy and an escape of
all of it). For the few long statements run on every event (the event store,
credit ledger writes) that is most of their cost. :func:`prepared_cursor` gives a
Django cursor (query logging, execute wrappers) over a server-side-binding
psycopg cursor of the same connection, so inside Django's transaction, on which
psycopg prepares a statement after ``PREPARE_THRESHOLD`` runs of the same text.

Django turns psycopg's prepared statements off (``prepare_threshold=None``) for
the sake of transaction-mode poolers; its own cursors never prepare anyway, so
enabling them on the connection only affects cursors made here.
``EVENTS_PREPARED_STATEMENTS = False`` in settings keeps them off (for a pooler
without prepared statement support). Statements take PostgreSQL's own ``$n``
placeholders (:func:`numbered` turns ``%s`` into them).
"""

from __future__ import annotations

import functools
import re

import psycopg
from django.conf import settings
from django.db import connection
from django.db.backends.utils import CursorWrapper

# Executions of a statement on a connection before psycopg prepares it.
PREPARE_THRESHOLD = 2

_PLACEHOLDER = re.compile(r"%s")


def prepared_cursor() -> CursorWrapper:
    """A Django cursor over a server-side-binding psycopg cursor (``$n`` placeholders)."""
    connection.ensure_connection()
    conn = connection.connection
    if conn.prepare_threshold is None and getattr(settings, "EVENTS_PREPARED_STATEMENTS", True):
        conn.prepare_threshold = PREPARE_THRESHOLD
    raw = psycopg.RawCursor(conn)
    # make_cursor/make_debug_cursor wrap a DB-API cursor (as cursor() wraps create_cursor()'s);
    # django-stubs type their argument as the CursorWrapper they return.
    if connection.queries_logged:
        return connection.make_debug_cursor(raw)  # type: ignore[arg-type]  # django-stubs, above
    return connection.make_cursor(raw)  # type: ignore[arg-type]  # django-stubs, above


@functools.lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """``sql`` with its ``%s`` placeholders as ``$1``, ``$2``, ... (in order). The text
    must hold no other ``%`` (no literal percent signs, no ``%(name)s``)."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _m: f"${next(counter)}", sql)
