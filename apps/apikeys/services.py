"""Writes for API keys: create, rotate, revoke; and the key check on every request."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from decimal import Decimal

import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from apps.accounts.audit import Actor, audit_record
from apps.accounts.models import AuditEntry, Environment
from apps.core.errors import Conflict, Unauthorized, ValidationFailed
from apps.core.memo import LocalCache
from apps.core.redis import env_key, get_redis
from apps.customers.models import Customer

from . import scopes as S
from .models import ApiKey, ApiKeySpend

logger = logging.getLogger(__name__)

_KIND_PREFIX: dict[str, str] = {ApiKey.Kind.SECRET: "sk", ApiKey.Kind.CUSTOMER: "ck"}


def hash_key(raw: str) -> str:
    """Keys carry 128 random bits, so an unsalted SHA-256 is a safe lookup digest."""
    return hashlib.sha256(raw.encode()).hexdigest()


def _mint(kind: str, environment: Environment) -> str:
    body = secrets.token_hex(16)
    if kind == ApiKey.Kind.OBSERVE:
        return f"obs_{body}"
    return f"{_KIND_PREFIX[kind]}_{environment.kind}_{body}"


def _display_prefix(raw: str) -> str:
    # Everything before the random part plus its first 8 characters.
    head, _, body = raw.rpartition("_")
    return f"{head}_{body[:8]}"


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    plaintext: str  # shown once, never stored


def _validate_scopes(kind: str, scopes: list[str] | None) -> list[str]:
    if kind == ApiKey.Kind.SECRET:
        return []  # secret keys hold every client scope
    allowed = S.CUSTOMER_SCOPES if kind == ApiKey.Kind.CUSTOMER else S.ALL_SCOPES
    chosen = list(
        dict.fromkeys(scopes or ([S.CUSTOMER_READ] if kind == ApiKey.Kind.CUSTOMER else []))
    )
    unknown = [s for s in chosen if s not in allowed]
    if unknown:
        raise ValidationFailed(fields={"scopes": [f"Unknown scope: {', '.join(unknown)}."]})
    if not chosen:
        raise ValidationFailed(fields={"scopes": ["Choose at least one scope."]})
    return chosen


@transaction.atomic
def apikey_create(
    *,
    environment: Environment,
    kind: str,
    actor: Actor,
    name: str = "",
    scopes: list[str] | None = None,
    customer: Customer | None = None,
    budget_cents: int | None = None,
    budget_period: str | None = None,
    expires_at: dt.datetime | None = None,
    rotated_from: ApiKey | None = None,
    plaintext: str | None = None,
) -> IssuedKey:
    """Issue a key. ``plaintext`` is for the demo data only (a key the docs can name);
    everything else lets the key be minted from 128 random bits."""
    if kind not in ApiKey.Kind.values:
        raise ValidationFailed(fields={"kind": ["Choose sk, obs or ck."]})
    chosen = _validate_scopes(kind, scopes)
    if kind == ApiKey.Kind.CUSTOMER:
        if customer is None:
            raise ValidationFailed(
                fields={"customerReferenceId": ["A customer key needs a customer."]}
            )
        if customer.environment_id != environment.pk:
            raise ValidationFailed(fields={"customerReferenceId": ["Unknown customer."]})
    elif customer is not None:
        raise ValidationFailed(
            fields={"customerReferenceId": ["Only customer keys name a customer."]}
        )
    if budget_cents is not None and (not isinstance(budget_cents, int) or budget_cents < 0):
        raise ValidationFailed(fields={"budget_cents": ["A whole, non-negative number of cents."]})
    if budget_period not in (None, *ApiKey.BudgetPeriod.values):
        raise ValidationFailed(
            fields={"budget_period": ["Use 'day', 'month', or null (lifetime)."]}
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed(fields={"expiresAt": ["Must be in the future."]})
    plaintext = plaintext or _mint(kind, environment)
    _forget_missing(hash_key(plaintext))  # a chosen plaintext may have been tried before
    key = ApiKey.objects.create(
        environment=environment,
        kind=kind,
        name=name.strip()[:100],
        prefix=_display_prefix(plaintext),
        secret_hash=hash_key(plaintext),
        hint=plaintext[-4:],
        scopes=chosen,
        customer=customer,
        budget_cents=budget_cents,
        budget_period=budget_period,
        expires_at=expires_at,
        created_by=actor.user,
        rotated_from=rotated_from,
    )
    audit_record(
        organization=environment.organization,
        environment=environment,
        action=AuditEntry.Action.KEY_ROTATED if rotated_from else AuditEntry.Action.KEY_CREATED,
        target_type="api_key",
        target_id=key.pk,
        actor=actor,
        detail={
            "kind": kind,
            "prefix": key.prefix,
            "scopes": chosen,
            **({"rotatedFrom": str(rotated_from.pk)} if rotated_from else {}),
        },
    )
    return IssuedKey(key=key, plaintext=plaintext)


def apikey_rotate(*, key: ApiKey, actor: Actor) -> IssuedKey:
    """A new key with the same powers. The old one keeps working until revoked."""
    if key.status != "active":
        # The key's state, not the request, is wrong: a conflict, as for any revoked object.
        raise Conflict("Only an active key can be rotated.", code="key_inactive")
    return apikey_create(
        environment=key.environment,
        kind=key.kind,
        actor=actor,
        name=key.name,
        scopes=list(key.scopes) or None,
        customer=key.customer,
        budget_cents=key.budget_cents,
        budget_period=key.budget_period,
        expires_at=key.expires_at,
        rotated_from=key,
    )


@transaction.atomic
def apikey_revoke(*, key: ApiKey, actor: Actor) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit_record(
            organization=key.environment.organization,
            environment=key.environment,
            action=AuditEntry.Action.KEY_REVOKED,
            target_type="api_key",
            target_id=key.pk,
            actor=actor,
            detail={"prefix": key.prefix},
        )
        forget_cached_key(key.secret_hash)
    return key


# --- Checking a key on each request ------------------------------------------------

# Verified keys by digest, for APIKEY_CACHE_SECONDS (set per entry: settings may change).
_keys: LocalCache[str, ApiKey] = LocalCache("apikeys.keys", max_entries=10_000)
# Digests no key has: a repeated invalid key costs no query. Safe because a new key's
# secret is random (a chosen one is forgotten here when created); bounded so a flood of
# random keys cannot grow it.
_missing: LocalCache[str, bool] = LocalCache("apikeys.missing", max_entries=10_000)
# Digests that matched a key in the last _KNOWN_SECONDS: while an address is refused for
# sending bad keys, these are still looked up (a client sharing the address keeps
# working); anything else is refused without a query.
_KNOWN_SECONDS = 600
_known: LocalCache[str, bool] = LocalCache("apikeys.known", ttl=_KNOWN_SECONDS, max_entries=10_000)
_TOUCH_INTERVAL = 60  # seconds between last_used_at writes per key


def forget_cached_key(secret_hash: str) -> None:
    _keys.pop(secret_hash)


def _forget_missing(secret_hash: str) -> None:
    _missing.pop(secret_hash)


def known_recently(raw: str) -> bool:
    """Whether ``raw`` matched a key in this process in the last ten minutes."""
    return _known.get(hash_key(raw)) is not None


def _load(secret_hash: str) -> ApiKey | None:
    now = time.monotonic()
    ttl = settings.APIKEY_CACHE_SECONDS
    hit = _keys.entry(secret_hash) if ttl > 0 else None
    if hit is not None and hit[1] > now:
        return hit[0]
    if _missing.get(secret_hash) is not None:
        return None
    try:
        key = (
            ApiKey.objects.select_related("environment__organization", "customer")
            .filter(secret_hash=secret_hash)
            .first()
        )
    except (OperationalError, InterfaceError):
        # PostgreSQL unreachable: a key this process verified less than
        # APIKEY_STALE_SECONDS ago is still trusted (revocations need PostgreSQL too, so
        # none can be missed but one made in the last APIKEY_CACHE_SECONDS before the
        # outage); any other key cannot be verified, and the caller says so.
        if hit is not None and now - hit[1] < settings.APIKEY_STALE_SECONDS:
            return hit[0]
        raise
    negative_ttl = settings.APIKEY_NEGATIVE_CACHE_SECONDS
    if key is not None:
        _known.set(secret_hash, True)
        if ttl > 0:
            _keys.set(secret_hash, key, ttl=ttl)
    elif negative_ttl > 0:
        _missing.set(secret_hash, True, ttl=negative_ttl)
    return key


def authenticate_key(raw: str, *, touch: bool = True) -> ApiKey:
    """The key for ``raw``, or Unauthorized if unknown, revoked or expired.

    ``touch=False``: the caller records the use itself, in a Redis round trip it makes
    anyway (``touch_redis_key`` / ``TOUCH_INTERVAL``, then ``apikey_used`` when it won
    the gate): the entitlement check does, on its hot path.
    """
    if not raw or len(raw) > 128:
        raise Unauthorized("Invalid API key.", code="invalid_key")
    key = _load(hash_key(raw))
    if key is None:
        raise Unauthorized("Invalid API key.", code="invalid_key")
    status = key.status
    if status == "revoked":
        raise Unauthorized("This API key has been revoked.", code="key_revoked")
    if status == "expired":
        raise Unauthorized("This API key has expired.", code="key_expired")
    if touch:
        _touch(key)
    return key


TOUCH_INTERVAL = _TOUCH_INTERVAL


def touch_redis_key(key: ApiKey) -> str:
    """The Redis key whose ``SET NX EX TOUCH_INTERVAL`` gates the ``last_used_at`` write."""
    return env_key(key.environment_id, "key-touch", key.pk)


def apikey_used(key: ApiKey) -> None:
    """Write ``last_used_at`` (call when the once-a-minute gate let you through)."""
    now = timezone.now()
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    key.last_used_at = now


# Keys (by pk) this process asked Redis about in the last minute: not asked again.
_touch_checked: LocalCache[object, bool] = LocalCache(
    "apikeys.touch_checked", ttl=_TOUCH_INTERVAL, max_entries=10_000
)


def _touch(key: ApiKey) -> None:
    """Record use at most once a minute per key (a Redis SET NX gates the write).

    Each process asks Redis at most once a minute per key, not on every request
    (a round trip, ~0.2 ms of a single-event request's CPU).
    """
    if _touch_checked.get(key.pk) is not None:
        return
    try:
        first = get_redis().set(touch_redis_key(key), 1, nx=True, ex=_TOUCH_INTERVAL)
    except redis.RedisError:
        return
    _touch_checked.set(key.pk, True)
    if first:
        apikey_used(key)


# --- Budgets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetState:
    limit_cents: int | None
    spent_usd: Decimal
    period: str | None
    window_start: dt.datetime
    resets_at: dt.datetime | None

    @property
    def remaining_cents(self) -> Decimal | None:
        if self.limit_cents is None:
            return None
        return max(Decimal(self.limit_cents) - self.spent_usd * 100, Decimal(0))


def budget_window(period: str | None, now: dt.datetime) -> tuple[dt.datetime, dt.datetime | None]:
    now = now.astimezone(dt.UTC)
    if period == ApiKey.BudgetPeriod.DAY:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + dt.timedelta(days=1)
    if period == ApiKey.BudgetPeriod.MONTH:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = (start + dt.timedelta(days=32)).replace(day=1)
        return start, nxt
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC), None


def apikey_budget(key: ApiKey, *, now: dt.datetime | None = None) -> BudgetState:
    start, resets = budget_window(key.budget_period, now or timezone.now())
    prefetched = getattr(key, "_prefetched_objects_cache", {}).get("spend_windows")
    if prefetched is not None:  # lists prefetch the current windows in one query
        spent = next((w.spent_usd for w in prefetched if w.window_start == start), None)
    else:
        spent = (
            ApiKeySpend.objects.filter(api_key=key, window_start=start)
            .values_list("spent_usd", flat=True)
            .first()
        )
    return BudgetState(
        limit_cents=key.budget_cents,
        spent_usd=spent if spent is not None else Decimal(0),
        period=key.budget_period,
        window_start=start,
        resets_at=resets if key.budget_period else None,
    )


def current_window_starts(now: dt.datetime | None = None) -> list[dt.datetime]:
    """The start of today's, this month's and the lifetime window."""
    now = now or timezone.now()
    return [budget_window(period, now)[0] for period in (*ApiKey.BudgetPeriod.values, None)]


def apikey_record_spend(
    *, key: ApiKey, amount_usd: Decimal, now: dt.datetime | None = None
) -> None:
    """Add metered spend to the key's current budget window (one atomic upsert)."""
    from django.db import connection

    start, _ = budget_window(key.budget_period, now or timezone.now())
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO apikeys_apikeyspend (api_key_id, window_start, spent_usd)
            VALUES (%s, %s, %s)
            ON CONFLICT (api_key_id, window_start)
            DO UPDATE SET spent_usd = apikeys_apikeyspend.spent_usd + EXCLUDED.spent_usd
            """,
            [key.pk, start, amount_usd],
        )
