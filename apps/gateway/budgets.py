"""Hard per-key budgets: reserve a call's worst case before forwarding, settle once after.

Amounts in Redis are integers of nano-dollars (1e-9 USD; costs are rounded up to
one, so Redis never holds less than the truth). One hash per key and window holds
``spent`` and ``reserved``; each reservation is a field of a second hash with its
deadline in a sorted set, so that the reserve script itself reaps the reservations
of calls that died (``RESERVATION_TTL``) in the same atomic step.

PostgreSQL stays the truth: the key's ``ApiKeySpend`` row of the window is added to in
the transaction that records the call's event. Redis is rebuilt from it when its hash
is missing (a flush, an eviction, a restart without persistence), with this process's
reservations still in flight added back. While Redis is unreachable the same rules run
in PostgreSQL (``BudgetReservation`` rows under a lock of the key's spend row), and the
windows touched are rebuilt from PostgreSQL once Redis answers again.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import uuid
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

import redis
from django.db import connection, transaction
from django.utils import timezone

from apps.apikeys.models import ApiKey, ApiKeySpend
from apps.apikeys.services import budget_window
from apps.core.redis import env_key, get_redis, warn_unavailable

from .models import BudgetReservation

logger = logging.getLogger(__name__)

NANO = Decimal("1e-9")
RESERVATION_TTL = dt.timedelta(minutes=15)

_RESERVE = """
local now = tonumber(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0, 0} end
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(dead) do
  local held = redis.call('HGET', KEYS[3], id)
  if held then
    redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(held))
    redis.call('HDEL', KEYS[3], id)
  end
  redis.call('ZREM', KEYS[2], id)
end
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local headroom = tonumber(ARGV[2]) - spent - reserved
local want, least = tonumber(ARGV[3]), tonumber(ARGV[4])
local grant = want
if headroom < want then
  if headroom < least then return {0, 0, headroom} end
  grant = headroom
end
redis.call('HINCRBY', KEYS[1], 'reserved', grant)
redis.call('HSET', KEYS[3], ARGV[5], grant)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[6]), ARGV[5])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], tonumber(ARGV[7])) end
return {1, grant, headroom - grant}
"""

_SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('SET', KEYS[4], '1', 'NX', 'EX', tonumber(ARGV[3])) == false then return 0 end
local held = redis.call('HGET', KEYS[3], ARGV[1])
if held then
  redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(held))
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
redis.call('HINCRBY', KEYS[1], 'spent', tonumber(ARGV[2]))
return 1
"""

# Rebuild: the window's spend from PostgreSQL, then this process's live reservations.
_REBUILD = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'spent', ARGV[1], 'reserved', 0)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
local i = 3
while i < #ARGV do
  if redis.call('HSETNX', KEYS[3], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('HINCRBY', KEYS[1], 'reserved', tonumber(ARGV[i + 1]))
    redis.call('ZADD', KEYS[2], tonumber(ARGV[i + 2]), ARGV[i])
  end
  i = i + 3
end
return 1
"""


class BudgetRefused(Exception):
    """Too little of the budget is left for even the smallest answer."""

    def __init__(self, remaining_usd: Decimal, resets_at: dt.datetime | None) -> None:
        super().__init__("budget exceeded")
        self.remaining_usd = remaining_usd
        self.resets_at = resets_at


@dataclass
class Reservation:
    id: str
    key_id: uuid.UUID
    environment_id: uuid.UUID
    window_start: dt.datetime
    amount_usd: Decimal
    remaining_usd: Decimal  # the budget left beside this reservation when it was made
    in_database: bool = False
    settled: bool = False


@dataclass(frozen=True)
class _Ask:
    key: ApiKey
    start: dt.datetime
    resets: dt.datetime | None
    limit: Decimal
    worst: Decimal
    least: Decimal
    res_id: str
    now: dt.datetime


# This process's reservations in flight (re-added to Redis after a flush).
_live: dict[str, tuple[Reservation, float]] = {}
_live_lock = threading.Lock()
# (key id, window start) whose spend moved in PostgreSQL while Redis was down.
_stale: set[tuple[uuid.UUID, dt.datetime]] = set()


def to_nano(amount: Decimal) -> int:
    return int((amount / NANO).to_integral_value(rounding=ROUND_CEILING))


def _keys(key: ApiKey, window_start: dt.datetime) -> list[str]:
    stamp = int(window_start.timestamp())
    base = env_key(key.environment_id, "gw-budget", key.pk, stamp)
    return [base, base + ":deadlines", base + ":held", ""]


def _ttl_seconds(resets_at: dt.datetime | None, now: dt.datetime) -> int:
    if resets_at is None:
        return 7 * 86400
    return max(int((resets_at - now).total_seconds()) + 3600, 60)


def _rebuild(key: ApiKey, window_start: dt.datetime, keys: list[str], ttl: int) -> None:
    spent = (
        ApiKeySpend.objects.filter(api_key=key, window_start=window_start)
        .values_list("spent_usd", flat=True)
        .first()
    ) or Decimal(0)
    args: list[str | int] = [to_nano(spent), ttl]
    with _live_lock:
        mine = [
            (r, deadline)
            for r, deadline in _live.values()
            if r.key_id == key.pk and r.window_start == window_start and not r.in_database
        ]
    for reservation, deadline in mine:
        args += [reservation.id, to_nano(reservation.amount_usd), int(deadline * 1000)]
    get_redis().eval(_REBUILD, 3, *keys[:3], *args)


def reserve(
    *, key: ApiKey, worst_usd: Decimal, least_usd: Decimal, now: dt.datetime | None = None
) -> Reservation:
    """Hold ``worst_usd`` of the key's budget, or as much as is left if that is at least
    ``least_usd`` (the caller then lowers the call's max tokens to fit the grant);
    BudgetRefused when not even ``least_usd`` fits."""
    assert key.budget_cents is not None
    now = now or timezone.now()
    start, resets = budget_window(key.budget_period, now)
    limit = Decimal(key.budget_cents) / 100
    ask = _Ask(key, start, resets, limit, worst_usd, least_usd, uuid.uuid4().hex, now)
    try:
        return _reserve_redis(ask)
    except redis.RedisError:
        warn_unavailable(logger, "gateway budgets in PostgreSQL")
        return _reserve_db(ask)


def _reserve_redis(ask: _Ask) -> Reservation:
    key, start, resets, now = ask.key, ask.start, ask.resets, ask.now
    keys, ttl = _keys(key, start), _ttl_seconds(resets, now)
    client = get_redis()
    if (key.pk, start) in _stale:
        client.delete(*keys[:3])
        _stale.discard((key.pk, start))
    now_ms = int(now.timestamp() * 1000)
    res_id = ask.res_id
    args: list[str | int] = [now_ms, to_nano(ask.limit), to_nano(ask.worst), to_nano(ask.least)]
    args += [res_id, int(RESERVATION_TTL.total_seconds() * 1000), ttl]
    for _ in range(3):
        status, grant, headroom = client.eval(_RESERVE, 3, *keys[:3], *args)
        if status != -1:
            break
        _rebuild(key, start, keys, ttl)
    if status != 1:
        raise BudgetRefused(max(Decimal(headroom), Decimal(0)) * NANO, resets)
    reservation = Reservation(
        res_id, key.pk, key.environment_id, start, Decimal(grant) * NANO, Decimal(headroom) * NANO
    )
    with _live_lock:
        _live[res_id] = (reservation, now_ms / 1000 + RESERVATION_TTL.total_seconds())
    return reservation


def _reserve_db(ask: _Ask) -> Reservation:
    key, start, now = ask.key, ask.start, ask.now
    with transaction.atomic():
        spent = _locked_spend(key, start)
        held = _held_in_db(key, start, now)
        headroom = ask.limit - spent - held
        grant = ask.worst if headroom >= ask.worst else headroom
        if grant < ask.least:
            raise BudgetRefused(max(headroom, Decimal(0)), ask.resets)
        BudgetReservation.objects.create(
            id=uuid.UUID(ask.res_id),
            api_key=key,
            window_start=start,
            amount_usd=grant,
            expires_at=now + RESERVATION_TTL,
        )
    _stale.add((key.pk, start))
    return Reservation(
        ask.res_id, key.pk, key.environment_id, start, grant, headroom - grant, in_database=True
    )


def _locked_spend(key: ApiKey, start: dt.datetime) -> Decimal:
    """The window's spend, its row locked until the transaction ends (made if missing)."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO apikeys_apikeyspend (api_key_id, window_start, spent_usd)"
            " VALUES (%s, %s, 0) ON CONFLICT (api_key_id, window_start) DO NOTHING",
            [key.pk, start],
        )
        cur.execute(
            "SELECT spent_usd FROM apikeys_apikeyspend"
            " WHERE api_key_id = %s AND window_start = %s FOR UPDATE",
            [key.pk, start],
        )
        row = cur.fetchone()
    return Decimal(row[0]) if row else Decimal(0)


def _held_in_db(key: ApiKey, start: dt.datetime, now: dt.datetime) -> Decimal:
    BudgetReservation.objects.filter(api_key=key, expires_at__lte=now).delete()
    amounts = BudgetReservation.objects.filter(api_key=key, window_start=start).values_list(
        "amount_usd", flat=True
    )
    return sum(amounts, Decimal(0))


def settle_in_database(reservation: Reservation) -> None:
    """Within the transaction that adds the call's cost to ``ApiKeySpend``: drop a
    PostgreSQL reservation (the Redis one is settled after commit, ``settle_redis``)."""
    if reservation.in_database:
        BudgetReservation.objects.filter(pk=uuid.UUID(reservation.id)).delete()


def settle_redis(reservation: Reservation, key: ApiKey, cost_usd: Decimal) -> None:
    """Release the reservation and add the call's cost, exactly once (a marker key)."""
    with _live_lock:
        _live.pop(reservation.id, None)
    if reservation.settled:
        return
    reservation.settled = True
    if reservation.in_database:
        return
    keys = _keys(key, reservation.window_start)
    keys[3] = keys[0] + ":settled:" + reservation.id
    ttl = int(RESERVATION_TTL.total_seconds()) * 2
    try:
        get_redis().eval(_SETTLE, 4, *keys, reservation.id, to_nano(cost_usd), ttl)
    except redis.RedisError:
        # PostgreSQL has the spend; Redis is rebuilt from it for this window.
        warn_unavailable(logger, "gateway budget settlement")
        _stale.add((key.pk, reservation.window_start))


def remaining_after(reservation: Reservation, cost_usd: Decimal) -> Decimal:
    """The budget left once this call settles at ``cost_usd`` (others' holds unchanged)."""
    return max(reservation.remaining_usd + reservation.amount_usd - cost_usd, Decimal(0))


def reap_database(now: dt.datetime | None = None) -> int:
    """Delete the PostgreSQL reservations of calls that died; how many."""
    deleted, _ = BudgetReservation.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted


def fits(headroom_usd: Decimal, per_token_usd: Decimal) -> int:
    """How many output tokens ``headroom_usd`` pays for."""
    if per_token_usd <= 0:
        return 2**31 - 1
    return max(math.floor(headroom_usd / per_token_usd), 0)
