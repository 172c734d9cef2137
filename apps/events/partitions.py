"""Monthly partitions of ``events_event`` (range on ``occurred_at``, UTC months).

``events_event_pYYYYMM`` holds one month; ``events_event_default`` catches what
no monthly partition covers (far back-fills, a missed maintenance run), so an
insert never fails for want of a partition. ``ensure_partitions`` creates the
months around now; when the default partition already holds rows of a month
being created, they are moved into the new partition in the same transaction
(PostgreSQL refuses to attach a range the default partition overlaps).
"""

from __future__ import annotations

import datetime as dt

from django.db import connection, transaction

from apps.core.months import add_months

PARENT = "events_event"
DEFAULT_PARTITION = "events_event_default"
# Months created around the current one: back-fill room behind, headroom ahead.
MONTHS_BEHIND = 2
MONTHS_AHEAD = 3


def month_floor(at: dt.datetime | dt.date) -> dt.date:
    return dt.date(at.year, at.month, 1)


def partition_name(month: dt.date) -> str:
    return f"{PARENT}_p{month.year:04d}{month.month:02d}"


def _bound(month: dt.date) -> str:
    return f"{month.isoformat()} 00:00:00+00"


def existing_partitions() -> set[str]:
    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT c.relname FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = %s
            """,
            [PARENT],
        )
        return {row[0] for row in cur.fetchall()}


def create_month_partition(month: dt.date) -> bool:
    """Create the partition of ``month`` if missing; True when it was created."""
    name = partition_name(month)
    low, high = _bound(month), _bound(add_months(month, 1))
    with transaction.atomic(), connection.cursor() as cur:
        # Serialise concurrent maintenance runs (and block inserts into the
        # default partition while rows move out of it).
        cur.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN ACCESS EXCLUSIVE MODE")
        cur.execute("SELECT to_regclass(%s)", [name])
        if cur.fetchone()[0] is not None:
            return False
        cur.execute(
            f"SELECT EXISTS (SELECT 1 FROM {DEFAULT_PARTITION}"  # noqa: S608 - names are ours
            " WHERE occurred_at >= %s AND occurred_at < %s)",
            [low, high],
        )
        stranded = cur.fetchone()[0]
        if stranded:
            cur.execute(
                f"CREATE TEMP TABLE _events_moving ON COMMIT DROP AS SELECT * FROM "  # noqa: S608
                f"{DEFAULT_PARTITION} WHERE occurred_at >= %s AND occurred_at < %s",
                [low, high],
            )
            cur.execute(
                f"DELETE FROM {DEFAULT_PARTITION} WHERE occurred_at >= %s AND occurred_at < %s",  # noqa: S608
                [low, high],
            )
        cur.execute(
            f"CREATE TABLE {name} PARTITION OF {PARENT} FOR VALUES FROM ('{low}') TO ('{high}')"
        )
        if stranded:
            cur.execute(f"INSERT INTO {PARENT} SELECT * FROM _events_moving")  # noqa: S608
    return True


def ensure_partitions(
    *,
    around: dt.datetime | None = None,
    behind: int = MONTHS_BEHIND,
    ahead: int = MONTHS_AHEAD,
) -> list[str]:
    """Make sure the months ``around - behind`` .. ``around + ahead`` exist; idempotent."""
    now = around or dt.datetime.now(tz=dt.UTC)
    first = add_months(month_floor(now), -behind)
    have = existing_partitions()
    created = []
    for offset in range(behind + ahead + 1):
        month = add_months(first, offset)
        if partition_name(month) not in have and create_month_partition(month):
            created.append(partition_name(month))
    return created
