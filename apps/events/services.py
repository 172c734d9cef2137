"""Writes on the ledger outside ingestion: re-costing and partition upkeep.

Re-costing prices events again with the current catalog and overrides:

* default: the events stored ``unpriced`` because their model had no price
  (reason ``unknown_model``); events without a model or without token counts
  cannot be priced by any catalog and are left alone;
* ``reprice_all``: every non-explicit event in the filter (after a price fix).
  An explicit ``costAmount`` is never touched.

It works in batches of ``batch_size`` events, one transaction each: lock the
batch (``FOR UPDATE SKIP LOCKED``: a concurrent run takes other rows), quote
each event at its own ``occurred_at``, update the changed ones, and move every
rollup (hourly, daily customer, daily feature-model) by the delta in the same
transaction (upserts table by table in one order, rows in primary-key order,
as ingestion does, so the two cannot deadlock). A second run finds nothing
left to change: safe to repeat. Every run leaves a ``RecostRun`` audit row.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from . import flags
from .models import NO_API_KEY, CostSource, RecostRun, UnpricedReason
from .partitions import ensure_partitions
from .prices import InvalidUsage, price_event
from .store import DAILY_CUSTOMER_KEY, DAILY_FEATURE_KEY, HOURLY_KEY, MEASURES

DEFAULT_BATCH = 1000

_SELECT = """
SELECT id, occurred_at, environment_id, customer_id, feature_id, model, provider, api_key_id,
       usage_units, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
       reasoning_tokens,
       cost_usd, cost_source, unpriced_reason, price_version_id
  FROM events_event
 WHERE {where}
 ORDER BY occurred_at, id
 LIMIT %(limit)s
 FOR UPDATE SKIP LOCKED
"""

_UPDATE_EVENTS = f"""
UPDATE events_event AS e
   SET cost_usd = u.cost_usd, cost_source = u.cost_source,
       unpriced_reason = u.unpriced_reason, price_version_id = u.price_version_id,
       flags = e.flags || jsonb_build_object('{flags.RECOST_RUN_ID}', %(run)s::bigint)
  FROM unnest(%(ids)s::bigint[], %(at)s::timestamptz[], %(cost)s::numeric[], %(source)s::text[],
              %(reason)s::text[], %(version)s::bigint[])
       AS u(id, occurred_at, cost_usd, cost_source, unpriced_reason, price_version_id)
 WHERE e.id = u.id AND e.occurred_at = u.occurred_at
"""  # noqa: S608 - the flag key is ours

# Same lock order as ingestion (store.py): the rollup tables in one order (hourly,
# daily customer, daily feature-model; each upsert waits for the previous one),
# rows in primary key order. The rows always exist (their events do); the other
# measures are listed because PostgreSQL checks NOT NULL on the proposed row
# before it takes the conflict path.
_MOVED = ("cost_usd", "unpriced_count", "estimated_cost_usd")  # what re-costing changes
_ZERO_MEASURES = ", ".join(f"0 AS {m}" for m in MEASURES if m not in _MOVED)
_OTHER_MEASURES = ", ".join(m for m in MEASURES if m not in _MOVED)


def _move(table: str) -> str:
    return ", ".join(f"{m} = {table}.{m} + EXCLUDED.{m}" for m in _MOVED)


_UPSERT_ROLLUP_DELTAS = f"""
WITH d AS MATERIALIZED (
    SELECT * FROM unnest(%(env)s::uuid[], %(bucket)s::timestamptz[], %(customer)s::uuid[],
                         %(feature)s::uuid[], %(model)s::text[], %(provider)s::text[],
                         %(api_key)s::uuid[], %(cost)s::numeric[], %(unpriced)s::bigint[],
                         %(estimated)s::numeric[])
        AS d(environment_id, bucket_start, customer_id, feature_id, model, provider, api_key_id,
             cost_usd, unpriced_count, estimated_cost_usd)
),
hourly_up AS (
    INSERT INTO events_hourlyrollup ({HOURLY_KEY}, {", ".join(_MOVED)}, {_OTHER_MEASURES})
    SELECT d.*, {_ZERO_MEASURES}
      FROM d
     ORDER BY 1, 2, 3, 4, 5, 6, 7
    ON CONFLICT ({HOURLY_KEY}) DO UPDATE SET {_move("events_hourlyrollup")}
    RETURNING 1
),
daily_customer_up AS (
    INSERT INTO events_dailycustomerrollup
        ({DAILY_CUSTOMER_KEY}, last_bucket_start, {", ".join(_MOVED)}, {_OTHER_MEASURES})
    SELECT environment_id, date_trunc('day', bucket_start, 'UTC'), customer_id,
           max(bucket_start), sum(cost_usd), sum(unpriced_count), sum(estimated_cost_usd),
           {_ZERO_MEASURES}
      FROM d
     WHERE (SELECT count(*) FROM hourly_up) >= 0
     GROUP BY 1, 2, 3
     ORDER BY 1, 2, 3
    ON CONFLICT ({DAILY_CUSTOMER_KEY}) DO UPDATE SET {_move("events_dailycustomerrollup")}
    RETURNING 1
)
INSERT INTO events_dailyfeaturemodelrollup
    ({DAILY_FEATURE_KEY}, last_bucket_start, {", ".join(_MOVED)}, {_OTHER_MEASURES})
SELECT environment_id, date_trunc('day', bucket_start, 'UTC'), feature_id, model, provider,
       max(bucket_start), sum(cost_usd), sum(unpriced_count), sum(estimated_cost_usd),
           {_ZERO_MEASURES}
  FROM d
 WHERE (SELECT count(*) FROM daily_customer_up) >= 0
 GROUP BY 1, 2, 3, 4, 5
 ORDER BY 1, 2, 3, 4, 5
ON CONFLICT ({DAILY_FEATURE_KEY}) DO UPDATE SET {_move("events_dailyfeaturemodelrollup")}
"""  # noqa: S608


def _estimated(cost: Decimal | None, source: str) -> Decimal:
    """The part of an event's cost the rollups count as estimated."""
    return cost if cost is not None and source == CostSource.ESTIMATED else Decimal(0)


def _hour(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _filters_sql(
    *,
    environment_id: uuid.UUID | None,
    model: str | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    reprice_all: bool,
) -> tuple[str, dict[str, Any]]:
    where = ["(occurred_at, id) > (%(after_at)s, %(after_id)s)"]
    params: dict[str, Any] = {}
    if reprice_all:
        where.append("cost_source <> %(explicit)s AND model <> ''")
        params["explicit"] = CostSource.EXPLICIT.value
    else:
        # Matches the partial index event_env_unpriced_idx.
        where.append("cost_usd IS NULL AND unpriced_reason = %(unknown)s")
        params["unknown"] = UnpricedReason.UNKNOWN_MODEL.value
    if environment_id is not None:
        where.append("environment_id = %(env)s")
        params["env"] = environment_id
    if model:
        where.append("model = %(model)s")
        params["model"] = model
    if start is not None:
        where.append("occurred_at >= %(start)s")
        params["start"] = start
    if end is not None:
        where.append("occurred_at < %(end)s")
        params["end"] = end
    return " AND ".join(where), params


def _recost_batch(run: RecostRun, where: str, params: dict[str, Any]) -> tuple[int, Any]:
    """One batch in one transaction; returns (rows examined, keyset position)."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(_SELECT.format(where=where), params)
        rows = cur.fetchall()
        if not rows:
            return 0, None
        updates: dict[str, list[Any]] = defaultdict(list)
        deltas: dict[tuple[Any, ...], list[Any]] = {}
        changed = newly_priced = 0
        cost_change = Decimal(0)
        for (
            event_id,
            occurred_at,
            env_id,
            customer_id,
            feature_id,
            model,
            provider,
            api_key_id,
            usage_units,
            input_tokens,
            output_tokens,
            cache_read,
            cache_write,
            reasoning,
            old_cost,
            old_source,
            old_reason,
            old_version,
        ) in rows:
            try:
                pricing = price_event(
                    environment_id=env_id,
                    model=model,
                    provider=provider,
                    at=occurred_at,
                    explicit_cost=None,
                    # Only an estimate is re-estimated: whether an older event's units
                    # were sent as tokens is not known.
                    usage_units=usage_units if old_source == CostSource.ESTIMATED else None,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cache_read_tokens=cache_read,
                    cache_write_tokens=cache_write,
                    reasoning_tokens=reasoning,
                )
            except InvalidUsage:
                continue  # stored counts the engine refuses: leave the event as it is
            new = (
                pricing.cost_usd,
                pricing.source,
                pricing.unpriced_reason,
                pricing.price_version_id,
            )
            if new == (
                old_cost,
                old_source,
                old_reason,
                old_version,
            ):
                continue
            if pricing.cost_usd is None and old_cost is None:
                continue  # still unknown; nothing to record
            changed += 1
            newly_priced += old_cost is None and pricing.cost_usd is not None
            updates["ids"].append(event_id)
            updates["at"].append(occurred_at)
            updates["cost"].append(pricing.cost_usd)
            updates["source"].append(pricing.source)
            updates["reason"].append(pricing.unpriced_reason)
            updates["version"].append(pricing.price_version_id)
            cost_delta = (pricing.cost_usd or Decimal(0)) - (old_cost or Decimal(0))
            unpriced_delta = int(pricing.cost_usd is None) - int(old_cost is None)
            estimated_delta = _estimated(pricing.cost_usd, pricing.source) - _estimated(
                old_cost, old_source
            )
            cost_change += cost_delta
            key = (
                env_id,
                _hour(occurred_at),
                customer_id,
                feature_id,
                model,
                provider,
                api_key_id or NO_API_KEY,
            )
            delta = deltas.setdefault(key, [Decimal(0), 0, Decimal(0)])
            delta[0] += cost_delta
            delta[1] += unpriced_delta
            delta[2] += estimated_delta
        if changed:
            cur.execute(_UPDATE_EVENTS, {"run": run.pk, **updates})
            keys = list(deltas)
            cur.execute(
                _UPSERT_ROLLUP_DELTAS,
                {
                    "env": [k[0] for k in keys],
                    "bucket": [k[1] for k in keys],
                    "customer": [k[2] for k in keys],
                    "feature": [k[3] for k in keys],
                    "model": [k[4] for k in keys],
                    "provider": [k[5] for k in keys],
                    "api_key": [k[6] for k in keys],
                    "cost": [deltas[k][0] for k in keys],
                    "unpriced": [deltas[k][1] for k in keys],
                    "estimated": [deltas[k][2] for k in keys],
                },
            )
            RecostRun.objects.filter(pk=run.pk).update(
                events_changed=run.events_changed + changed,
                events_newly_priced=run.events_newly_priced + newly_priced,
                cost_change_usd=run.cost_change_usd + cost_change,
                events_examined=run.events_examined + len(rows),
            )
        else:
            RecostRun.objects.filter(pk=run.pk).update(
                events_examined=run.events_examined + len(rows)
            )
        run.events_examined += len(rows)
        run.events_changed += changed
        run.events_newly_priced += newly_priced
        run.cost_change_usd += cost_change
        last = rows[-1]
        return len(rows), (last[1], last[0])


def events_recost(
    *,
    actor: str,
    environment_id: uuid.UUID | None = None,
    model: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    reprice_all: bool = False,
    batch_size: int = DEFAULT_BATCH,
    keep_empty_run: bool = True,
) -> RecostRun | None:
    """Re-price events matching the filter; returns the audit row.

    ``keep_empty_run=False`` (the scheduled task) deletes the audit row of a
    run that changed nothing, so an hourly sweep does not flood the audit.
    """
    filters = {
        "environmentId": str(environment_id) if environment_id else None,
        "model": model or None,
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        "all": reprice_all,
    }
    run = RecostRun.objects.create(
        environment_id=environment_id, actor=actor[:255], filters=filters
    )
    where, params = _filters_sql(
        environment_id=environment_id, model=model, start=start, end=end, reprice_all=reprice_all
    )
    params["limit"] = batch_size
    position: Any = (dt.datetime(1, 1, 1, tzinfo=dt.UTC), 0)
    try:
        while position is not None:
            params["after_at"], params["after_id"] = position
            _count, position = _recost_batch(run, where, params)
    except Exception as exc:
        RecostRun.objects.filter(pk=run.pk).update(
            status=RecostRun.Status.FAILED, error=repr(exc)[:2000], finished_at=timezone.now()
        )
        raise
    if not keep_empty_run and run.events_changed == 0:
        run.delete()
        return None
    run.status = RecostRun.Status.SUCCEEDED
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "finished_at"])
    return run


def events_recost_request(*, environment: Any, actor: Any, label: str) -> None:
    """Ask for the environment's unpriced events to be re-priced in the background
    (``tasks.recost_events`` once the transaction commits; ``label`` names the
    requester on its ``RecostRun``). The request is audited with its actor."""
    from apps.accounts.audit import audit_change
    from apps.accounts.models import AuditEntry

    from .tasks import recost_events

    audit_change(
        environment=environment,
        action=AuditEntry.Action.RECOST_REQUESTED,
        target_type="environment",
        target_id=environment.pk,
        actor=actor,
        detail={"filters": {"unpricedOnly": True}},
    )
    environment_id = str(environment.pk)
    transaction.on_commit(
        lambda: recost_events.delay(environment_id=environment_id, actor=label), robust=True
    )


def event_partitions_ensure(*, ahead: int | None = None) -> list[str]:
    """Create the monthly partitions around now (idempotent); names of those created."""
    if ahead is None:
        return ensure_partitions()
    return ensure_partitions(ahead=ahead)
