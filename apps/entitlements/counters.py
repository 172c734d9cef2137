"""Usage counters: a customer's usage of a feature per window, exact, in Redis, rebuilt
from the ledger.

The truth is the event ledger (``apps.events``): a window's usage is the sum of
``usage_units`` of the customer's events of the feature whose ``occurred_at``
falls in ``[start, end)``. Reading it costs a query over the hourly rollups
(whole hours) and the raw events (the partial hours at either edge, when a
window is not hour-aligned). Checks must not pay that, so each (customer,
feature) has one Redis hash, ``tanso:{env}:ent:c:<customer>:<feature>``:

* ``u:<start>:<end>``: usage in that window (``<end>`` ``inf`` = never resets),
  in integer **micro-units** (10^-6 units), moved with ``HINCRBY``;
* ``o:<start>:<end>``: units beyond the usage cap in that billing period (only
  for tiered rules whose cap resets on another interval; see ingestion.py);
* ``g``: the generation token of the hash; ``b``: when it was built (epoch s);
* ``r``: present when reservations may be held (checks then read holds from
  PostgreSQL).

Exactness (why the numbers never drift):

* Every writer holds the PostgreSQL advisory lock of the (customer, feature)
  (``locks.py``) while it decides: ingestion reads the hash under the lock,
  stores its events, commits, and *then* adds its deltas, but only to fields
  that existed under the lock and only if ``g`` is unchanged. A rebuild reads
  the ledger under the same lock and writes a new ``g``. So a rebuild either
  ran before the event took the lock (the event then adds its delta to the
  rebuilt hash), or after the event committed (the ledger read includes the
  event, and the event's late delta is refused by the new ``g``).
* Units that are not a whole number of micro-units, or a sum beyond a signed
  64-bit integer (about 9.2 x 10^12 units), turn the field into ``x``: readers
  then go to PostgreSQL for it (the ledger keeps 12 decimal places; Redis
  integers cannot).
* When Redis refuses a read or an update while a process stores events, the
  process drops those hashes at its next successful read (before reading). A
  process that dies before that leaves the error to ``MAX_AGE``: a hash older
  than that counts as missing and is rebuilt. A flushed or restarted Redis simply
  means rebuilds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import redis
from django.db import connection

from apps.core.redis import env_key, get_redis
from apps.events import flags

logger = logging.getLogger(__name__)

SCALE = 10**6  # micro-units
MAX_INT64 = 2**63 - 1
MAX_AGE = 3600  # seconds: a hash built longer ago is rebuilt
MAX_FIELDS = 24  # window fields per hash before it is rebuilt with only what is needed
HASH_TTL = 2 * MAX_AGE
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
FAR_FUTURE = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
ZERO = Decimal(0)
INEXACT = "x"


def counter_key(environment_id: uuid.UUID, customer_id: object, feature_id: object) -> str:
    return env_key(environment_id, "ent", "c", customer_id, feature_id)


def _micros_of(at: dt.datetime) -> int:
    return (at - EPOCH) // dt.timedelta(microseconds=1)


def _instant(micros: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=micros)


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """``[start, end)`` (``end`` None: never ends); ``kind`` ``u`` usage, ``o`` overage."""

    start: dt.datetime
    end: dt.datetime | None
    kind: str = "u"
    field: str = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        end = "inf" if self.end is None else str(_micros_of(self.end))
        # The hash field's name, computed once (ingestion asks for it per event).
        object.__setattr__(self, "field", f"{self.kind}:{_micros_of(self.start)}:{end}")

    def contains(self, at: dt.datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)

    @classmethod
    def parse(cls, field: str) -> Window | None:
        try:
            kind, start, end = field.split(":")
            return cls(_instant(int(start)), None if end == "inf" else _instant(int(end)), kind)
        except ValueError:
            return None


def to_micro(units: Decimal) -> int | None:
    """``units`` as whole micro-units, or None when that would round."""
    scaled = units.scaleb(6)
    if scaled != scaled.to_integral_value():
        return None
    value = int(scaled)
    return value if abs(value) <= MAX_INT64 else None


@dataclasses.dataclass(slots=True)
class Snapshot:
    """One counter hash as read (or as just rebuilt)."""

    token: str | None = None
    built_at: int = 0
    fields: dict[str, Decimal | None] = dataclasses.field(default_factory=dict)  # None: inexact
    reservations: bool = False

    @classmethod
    def decode(cls, flat: Sequence[bytes]) -> Snapshot:
        snap = cls()
        for index in range(0, len(flat) - 1, 2):
            name, value = flat[index].decode(), flat[index + 1].decode()
            if name == "g":
                snap.token = value
            elif name == "b":
                snap.built_at = int(value)
            elif name == "r":
                snap.reservations = True
            elif value == INEXACT:
                snap.fields[name] = None
            else:
                snap.fields[name] = Decimal(int(value)).scaleb(-6)
        return snap

    def usable(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return (
            self.token is not None
            and now - self.built_at < MAX_AGE
            and len(self.fields) <= MAX_FIELDS
        )

    def value(self, window: Window) -> Decimal | None:
        """The window's usage, None when the hash does not hold it exactly."""
        return self.fields.get(window.field)

    def covers(self, windows: Iterable[Window]) -> bool:
        return self.usable() and all(self.value(w) is not None for w in windows)


# -- Redis ---------------------------------------------------------------------------------

# With a gate (ARGV[1] = 2): the API key's use stamp (SET NX EX) and the key's rate-limit
# window (INCR, EXPIRE) first, so a check makes one round trip in all. KEYS: [touch, rate,]
# state, counters...; the answer: touched (0/1), rate count, state token, then the hashes:
# whole (HGETALL), or only the fields a check needs (ARGV[5..]: per hash a count, then names).
_READ = """
local gate = tonumber(ARGV[1])
local out = {0, 0}
local first = 1
if gate == 2 then
  out[1] = redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) and 1 or 0
  out[2] = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  first = 3
end
local token = redis.call('GET', KEYS[first])
if not token then
  redis.call('SET', KEYS[first], ARGV[4], 'NX')
  token = redis.call('GET', KEYS[first])
end
out[3] = token
local a = 5
for i = first + 1, #KEYS do
  local n = tonumber(ARGV[a] or '0')
  a = a + 1
  if n == 0 then
    out[#out + 1] = redis.call('HGETALL', KEYS[i])
  else
    local names = {'g', 'b', 'r'}
    for j = 1, n do
      names[#names + 1] = ARGV[a]
      a = a + 1
    end
    local values = redis.call('HMGET', KEYS[i], unpack(names))
    local flat = {}
    for j = 1, #names do
      if values[j] then
        flat[#flat + 1] = names[j]
        flat[#flat + 1] = values[j]
      end
    end
    out[#out + 1] = flat
  end
end
return out
"""

_WRITE = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

_APPLY = """
local a = 1
for i = 1, #KEYS do
  local token = ARGV[a]
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  local same = redis.call('HGET', KEYS[i], 'g') == token
  for j = 1, n do
    local f, d = ARGV[a], ARGV[a + 1]
    a = a + 2
    if same and redis.call('HEXISTS', KEYS[i], f) == 1 then
      if d == 'x' then
        redis.call('HSET', KEYS[i], f, 'x')
      else
        local r = redis.pcall('HINCRBY', KEYS[i], f, d)
        if type(r) == 'table' and r.err then
          redis.call('HSET', KEYS[i], f, 'x')
        end
      end
    end
  end
end
return 1
"""

_MARK = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'r', '1')
end
return 1
"""

_scripts: dict[str, Any] = {}


def _script(name: str, source: str) -> Any:
    client = get_redis()
    cached = _scripts.get(name)
    if cached is None or cached[0] is not client:
        cached = (client, client.register_script(source))
        _scripts[name] = cached
    return cached[1]


@dataclasses.dataclass(slots=True)
class Gate:
    """The API key's bookkeeping, done in the check's own round trip: the use stamp
    (``apps.apikeys``: SET NX EX, then a ``last_used_at`` write when it was set) and the
    per-key rate-limit window (``apps.core.ratelimit``'s keys: INCR + EXPIRE)."""

    touch_key: str
    touch_ttl: int
    rate_key: str
    rate_ttl: int
    tried: bool = False  # a round trip was attempted (it may have failed: Redis down)
    ran: bool = False
    touched: bool = False
    count: int = 0


def read(
    state_key: str,
    keys: Sequence[str],
    gate: Gate | None = None,
    fields: Sequence[Sequence[str]] | None = None,
) -> tuple[bytes | None, list[Snapshot]] | None:
    """The environment's state token and each counter hash, in one round trip (with the
    ``gate`` commands first when given). ``fields``: per hash, only these window fields
    (with ``g``, ``b``, ``r``; empty: all), which keeps a check's answer small.

    None when Redis cannot be reached (callers then read PostgreSQL).
    """
    all_keys = [state_key, *keys]
    args: list[Any] = [0, 0, 0, uuid.uuid4().hex]
    if gate is not None:
        gate.tried = True
        all_keys = [gate.touch_key, gate.rate_key, *all_keys]
        args = [2, gate.touch_ttl, gate.rate_ttl, args[3]]
    for names in fields or [[] for _ in keys]:
        args += [len(names), *names]
    try:
        if _missed:
            _drop_missed()
        out = _script("read", _READ)(keys=all_keys, args=args)
    except redis.RedisError:
        logger.warning("entitlements: Redis unavailable; reading usage from PostgreSQL")
        missed(keys)
        return None
    if gate is not None:
        gate.ran, gate.touched, gate.count = True, bool(out[0]), int(out[1])
    return out[2], [Snapshot.decode(flat) for flat in out[3:]]


def write(key: str, snapshot: Snapshot) -> bool:
    """Replace the hash with ``snapshot`` (call under the pair's advisory lock)."""
    args: list[Any] = [HASH_TTL, "g", snapshot.token, "b", snapshot.built_at]
    for name, value in snapshot.fields.items():
        micro = None if value is None else to_micro(value)
        args += [name, INEXACT if micro is None else micro]
    if snapshot.reservations:
        args += ["r", "1"]
    try:
        _script("write", _WRITE)(keys=[key], args=args)
    except redis.RedisError:
        logger.warning("entitlements: cannot write counter %s", key)
        return False
    return True


@dataclasses.dataclass(slots=True)
class Deltas:
    """Increments for one hash, valid only under the token it was read with."""

    key: str
    token: str
    amounts: dict[str, Decimal] = dataclasses.field(default_factory=dict)

    def add(self, field: str, units: Decimal) -> None:
        self.amounts[field] = self.amounts.get(field, ZERO) + units


def apply(deltas: Sequence[Deltas]) -> bool:
    """Add committed usage to the counters (after the commit). False if Redis refused;
    the hashes then catch up when they are rebuilt (at the latest after ``MAX_AGE``)."""
    keys: list[str] = []
    args: list[Any] = []
    for item in deltas:
        if not item.amounts:
            continue
        keys.append(item.key)
        args += [item.token, len(item.amounts)]
        for name, units in item.amounts.items():
            micro = to_micro(units)
            args += [name, INEXACT if micro is None else micro]
    if not keys:
        return True
    try:
        _script("apply", _APPLY)(keys=keys, args=args)
    except redis.RedisError:
        logger.warning("entitlements: counters not updated (Redis unavailable): %s", keys)
        missed(keys)
        return False
    return True


# Counters this process may have left behind (Redis refused a read or an update while
# events were stored): dropped at the next read that reaches Redis, before it reads.
_missed: set[str] = set()


def missed(keys: Iterable[str]) -> None:
    _missed.update(keys)
    if len(_missed) > 100_000:
        _missed.clear()  # an outage that long: the hashes' MAX_AGE bounds it anyway


def _drop_missed() -> None:
    keys = list(_missed)
    get_redis().delete(*keys)
    _missed.difference_update(keys)


def mark_reservations(key: str) -> None:
    """Note on an existing hash that holds may exist (before the reservation commits: a
    rolled-back reservation only costs checks a query)."""
    try:
        _script("mark", _MARK)(keys=[key], args=[])
    except redis.RedisError:
        logger.warning("entitlements: cannot flag reservations on %s", key)


# -- PostgreSQL ----------------------------------------------------------------------------


def _hour_floor(at: dt.datetime) -> dt.datetime:
    return at.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def _hour_ceil(at: dt.datetime) -> dt.datetime:
    floor = _hour_floor(at)
    return floor if floor == at else floor + dt.timedelta(hours=1)


def _segments(
    window: Window,
) -> tuple[tuple[dt.datetime, dt.datetime] | None, list[tuple[dt.datetime, dt.datetime]]]:
    """Whole hours (read from the hourly rollups) and the partial edges (raw events)."""
    end = window.end or FAR_FUTURE
    first, last = _hour_ceil(window.start), _hour_floor(end)
    if first >= last:
        return None, [(window.start, end)]
    raw = []
    if window.start < first:
        raw.append((window.start, first))
    if last < end:
        raw.append((last, end))
    return (first, last), raw


_HOURLY = (
    "SELECT %s, sum(usage_units) FROM events_hourlyrollup WHERE environment_id = %s"
    " AND customer_id = %s AND feature_id = %s AND bucket_start >= %s AND bucket_start < %s"
)
_RAW = (
    "SELECT %s, sum(usage_units) FROM events_event WHERE environment_id = %s"
    " AND customer_id = %s AND feature_id = %s AND occurred_at >= %s AND occurred_at < %s"
)
_OVERAGE = (
    f"SELECT %s, sum({flags.sql_decimal(flags.OVERAGE_UNITS)}) FROM events_event"  # noqa: S608
    " WHERE environment_id = %s AND customer_id = %s AND feature_id = %s"
    f" AND occurred_at >= %s AND occurred_at < %s AND {flags.sql_has(flags.OVERAGE_UNITS)}"
)
_HOLDS = (
    "SELECT %s, count(*)::numeric FROM entitlements_reservation WHERE environment_id = %s"
    " AND customer_id = %s AND feature_id = %s AND status = 'held' AND expires_at > %s"
)

HOLDS_MARK = "holds"


def ledger_sums(
    environment_id: uuid.UUID,
    requests: Sequence[tuple[uuid.UUID, uuid.UUID, Sequence[Window]]],
    *,
    now: dt.datetime,
) -> list[dict[str, Decimal]]:
    """Per (customer, feature, windows) request: each window's usage from the ledger, and
    under ``HOLDS_MARK`` how many reservations are held. One statement."""
    parts: list[str] = []
    params: list[Any] = []
    labels: list[tuple[int, str]] = []

    def add(sql: str, request: int, label: str, *values: Any) -> None:
        labels.append((request, label))
        parts.append(sql)
        params.extend([len(labels) - 1, environment_id, *values])

    for index, (customer_id, feature_id, windows) in enumerate(requests):
        for window in windows:
            if window.kind == "o":
                end = window.end or FAR_FUTURE
                add(_OVERAGE, index, window.field, customer_id, feature_id, window.start, end)
                continue
            hours, raw = _segments(window)
            if hours is not None:
                add(_HOURLY, index, window.field, customer_id, feature_id, *hours)
            for segment in raw:
                add(_RAW, index, window.field, customer_id, feature_id, *segment)
        add(_HOLDS, index, HOLDS_MARK, customer_id, feature_id, now)
    out: list[dict[str, Decimal]] = [
        {w.field: ZERO for w in windows} for _c, _f, windows in requests
    ]
    if not parts:
        return out
    with connection.cursor() as cur:
        cur.execute(" UNION ALL ".join(f"({part})" for part in parts), params)
        for label_index, total in cur.fetchall():
            request, label = labels[label_index]
            out[request][label] = out[request].get(label, ZERO) + (total or ZERO)
    return out


def snapshot_from(sums: dict[str, Decimal]) -> Snapshot:
    """A fresh hash holding ``sums`` (from :func:`ledger_sums`)."""
    fields: dict[str, Decimal | None] = {
        name: value for name, value in sums.items() if name != HOLDS_MARK
    }
    return Snapshot(
        token=uuid.uuid4().hex,
        built_at=int(time.time()),
        fields=fields,
        reservations=sums.get(HOLDS_MARK, ZERO) > 0,
    )
