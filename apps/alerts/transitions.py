"""The state machine: each (rule, subject, threshold) moves ok -> firing -> resolved ->
firing ... and every move is decided by ONE SQL statement.

* Fire: ``INSERT ... ON CONFLICT DO UPDATE ... WHERE status <> 'firing' RETURNING``.
  Concurrent evaluators of the same crossing queue on the row (or on the speculative
  insert); the second re-checks the ``WHERE`` against the committed row, finds it
  firing, and returns nothing. A firing state past its re-notify interval is updated
  too (``notified_at``) and returned as a re-notification, not a transition.
* Resolve: ``UPDATE ... WHERE status = 'firing' RETURNING``, the same way.

The notification row (the inbox) and its outbox rows (``Delivery``) are written in the
transaction of the statement that returned the transition, so a transition exists with
its messages or not at all.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from apps.core.tenancy import scoped

from . import payloads
from .evaluation import Observation
from .models import AlertRule, Channel, Delivery, Notification, WebhookEndpoint

_FIRE = """
INSERT INTO alerts_alertstate
    (environment_id, rule_id, subject, threshold, status, observed, changed_at,
     notified_at, transitions)
SELECT %(env)s, %(rule)s, r.subject, r.threshold, 'firing', r.observed, %(now)s, %(now)s, 1
  FROM unnest(%(subjects)s::text[], %(thresholds)s::text[], %(observed)s::numeric[])
       AS r(subject, threshold, observed)
 ORDER BY r.subject, r.threshold
ON CONFLICT (rule_id, subject, threshold) DO UPDATE
   SET status = 'firing',
       observed = EXCLUDED.observed,
       changed_at = CASE WHEN alerts_alertstate.status = 'firing'
                         THEN alerts_alertstate.changed_at ELSE EXCLUDED.changed_at END,
       notified_at = EXCLUDED.notified_at,
       transitions = alerts_alertstate.transitions
                     + CASE WHEN alerts_alertstate.status = 'firing' THEN 0 ELSE 1 END
 WHERE alerts_alertstate.environment_id = %(env)s
   AND (alerts_alertstate.status <> 'firing'
        OR (%(renotify)s::interval IS NOT NULL
            AND alerts_alertstate.notified_at <= %(now)s - %(renotify)s::interval))
RETURNING id, subject, threshold, changed_at = %(now)s AS is_transition
"""

_RESOLVE = """
UPDATE alerts_alertstate AS s
   SET status = 'resolved', observed = r.observed, changed_at = %(now)s,
       notified_at = %(now)s, transitions = s.transitions + 1
  FROM unnest(%(subjects)s::text[], %(thresholds)s::text[], %(observed)s::numeric[])
       AS r(subject, threshold, observed)
 WHERE s.environment_id = %(env)s AND s.rule_id = %(rule)s
   AND s.subject = r.subject AND s.threshold = r.threshold AND s.status = 'firing'
RETURNING s.id, s.subject, s.threshold
"""

Candidate = tuple[Observation, dict[str, str]]  # a subject's observation and a threshold


def _params(rule: AlertRule, candidates: Sequence[Candidate], now: dt.datetime) -> dict:
    ordered = sorted(candidates, key=lambda c: (c[0].subject, c[1]["value"]))
    return {
        "env": rule.environment_id,
        "rule": rule.pk,
        "now": now,
        "subjects": [obs.subject for obs, _ in ordered],
        "thresholds": [t["value"] for _, t in ordered],
        "observed": [obs.value if obs.value is not None else Decimal(0) for obs, _ in ordered],
        "renotify": dt.timedelta(minutes=rule.renotify_minutes) if rule.renotify_minutes else None,
    }


def _run(sql: str, params: dict) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def apply(
    rule: AlertRule,
    *,
    fire: Sequence[Candidate],
    clear: Sequence[Candidate],
    now: dt.datetime,
) -> list[Notification]:
    """Fire and resolve what the statements say changed; one notification per change."""
    if not fire and not clear:
        return []
    by_key = {(obs.subject, t["value"]): (obs, t) for obs, t in [*fire, *clear]}
    made: list[tuple[str, int, Candidate]] = []
    with transaction.atomic():
        if fire:
            for state_id, subject, threshold, _is_transition in _run(
                _FIRE, _params(rule, fire, now)
            ):
                made.append((Notification.Kind.TRIGGERED, state_id, by_key[subject, threshold]))
        if clear:
            for state_id, subject, threshold in _run(_RESOLVE, _params(rule, clear, now)):
                made.append((Notification.Kind.RESOLVED, state_id, by_key[subject, threshold]))
        if not made:
            return []
        names = payloads.subject_names(rule, [c[0].key for _, _, c in made])
        return [notify(rule, kind, state_id, c, names, now) for kind, state_id, c in made]


def notify(  # noqa: PLR0917 - one transition's parts
    rule: AlertRule,
    kind: str,
    state_id: int,
    candidate: Candidate,
    names: dict[str, dict[uuid.UUID, str]],
    now: dt.datetime,
) -> Notification:
    """The inbox row and its outbox rows (in the caller's transaction)."""
    obs, threshold = candidate
    notification_id = uuid.uuid4()
    payload = payloads.build(
        kind=kind,
        notification_id=notification_id,
        rule=rule,
        obs=obs,
        threshold=threshold,
        names=names,
        now=now,
    )
    notification = Notification.objects.create(
        id=notification_id,
        environment_id=rule.environment_id,
        rule=rule,
        state_id=state_id,
        kind=kind,
        severity=threshold.get("severity", "warning"),
        metric=rule.metric,
        subject=obs.subject,
        payload=payload,
        created_at=now,
    )
    enqueue(notification, rule.channels, now)
    return notification


def message_id(notification_id: uuid.UUID) -> str:
    return f"msg_{notification_id.hex}"


def enqueue(notification: Notification, channels: Sequence[str], now: dt.datetime) -> None:
    """The outbox rows of a notification: one email, one per enabled webhook endpoint."""
    rows = []
    common = {
        "environment_id": notification.environment_id,
        "notification": notification,
        "message_id": message_id(notification.pk),
        "payload": notification.payload,
        "next_attempt_at": now,
        "created_at": now,
    }
    if Channel.EMAIL in channels:
        rows.append(Delivery(channel=Channel.EMAIL, **common))
    if Channel.WEBHOOK in channels:
        endpoints = scoped(WebhookEndpoint, notification.environment_id).filter(enabled=True)
        rows.extend(
            Delivery(channel=Channel.WEBHOOK, endpoint=endpoint, **common) for endpoint in endpoints
        )
    if rows:
        Delivery.objects.bulk_create(rows)
        transaction.on_commit(lambda: kick(notification.environment_id))


def kick(environment_id: uuid.UUID) -> None:
    """Wake the outbox drainer of the environment (the minute sweep is the fallback)."""
    from .tasks import deliver_alerts

    try:
        deliver_alerts.delay(str(environment_id))
    except Exception:
        import logging

        logging.getLogger(__name__).warning("alerts: could not enqueue delivery", exc_info=True)
