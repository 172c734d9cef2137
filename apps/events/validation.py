"""Hand-written validation of one incoming event (the hot path: no DRF serializers).

Both endpoints speak the same field set; the single-event endpoint nests the
model and token counts in ``costInput`` (the public pages), the batch endpoint
has them at the top level (Observe). Both spellings are accepted on both
endpoints; ``costInput`` wins when a field is in both places. Aliases:
``eventIdempotencyKey`` / ``idempotencyKey``, ``traceId`` / ``flowId``.

Rules: unknown fields are ignored; a known field of the wrong type is an error;
``null`` means "not given" for optional fields. Token counts and ``durationMs``
are JSON integers (``1.5``, ``-1``, ``true``, ``"12"`` are refused; ``100.0``
is accepted as 100). Amounts are JSON numbers or decimal strings, finite, at
most 12 integer digits, rounded once to 12 fractional digits. Every error of an
event is collected, keyed by its field path, so a caller fixes them at once.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, TypeGuard

from apps.core.money import quantize_event_amount

MAX_KEY_LENGTH = 255
MAX_NAME_LENGTH = 255
MAX_CUSTOMER_REF_LENGTH = 255
MAX_FEATURE_KEY_LENGTH = 128
MAX_MODEL_LENGTH = 255
MAX_PROVIDER_LENGTH = 64
MAX_TRACE_LENGTH = 255
MAX_META_BYTES = 16 * 1024
MAX_META_DEPTH = 32
# Column limits: numeric(24, 12) leaves 12 integer digits; bigint; integer.
AMOUNT_LIMIT = Decimal(10) ** 12
MAX_TOKENS = 10**15
MAX_DURATION_MS = 2**31 - 1
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

INVALID_TEXT = "Must be valid Unicode text (no lone surrogates)."

_DECIMAL_STRING = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")

Errors = dict[str, list[str]]


@dataclass(slots=True)
class EventInput:
    """One valid event as the pipeline needs it (amounts USD, 12 dp)."""

    idempotency_key: str | None
    event_name: str
    customer_ref: str
    feature_key: str
    occurred_at: dt.datetime
    model: str
    provider: str
    usage_units: Decimal
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None
    cache_write_tokens: int | None
    reasoning_tokens: int | None
    cost_usd: Decimal | None  # explicit costAmount
    revenue_usd: Decimal | None
    duration_ms: int | None
    trace_id: str
    meta: dict[str, Any]
    meta_json: str
    # A reservation (entitlement check with reserve) this event settles.
    reservation_id: uuid.UUID | None = None
    # usageUnits was sent (not the default 1): only then may it estimate a cost as tokens.
    units_given: bool = True

    @property
    def has_tokens(self) -> bool:
        return any(
            value is not None
            for value in (
                self.input_tokens,
                self.output_tokens,
                self.cache_read_tokens,
                self.cache_write_tokens,
                self.reasoning_tokens,
            )
        )


def _string(
    value: Any, field: str, errors: Errors, *, max_length: int, required: bool = False
) -> str | None:
    if value is None:
        if required:
            errors[field] = ["This field is required."]
        return None
    if not isinstance(value, str):
        errors[field] = ["Must be a string."]
        return None
    if not value.strip():
        if required:
            errors[field] = ["May not be blank."]
        return None
    if len(value) > max_length:
        errors[field] = [f"At most {max_length} characters."]
        return None
    if "\x00" in value:
        errors[field] = ["May not contain NUL characters."]
        return None
    if not value.isascii() and not _encodable(value):
        errors[field] = [INVALID_TEXT]
        return None
    return value


def _integral_reference(value: Any) -> Any:
    """A JSON integer customer id (``customerReferenceId: user.id`` in JavaScript) is its
    decimal text: the reference is "your customer's ID, whatever you already use".
    Floats and booleans stay errors (``1.0`` and ``true`` are not ids)."""
    if type(value) is int:
        return str(value)
    return value


def _encodable(text: str) -> bool:
    """False for text UTF-8 cannot carry (lone surrogates such as "\\ud800" in JSON)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _integer(value: Any, field: str, errors: Errors, *, maximum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        errors[field] = ["Must be a non-negative integer."]
        return None
    if isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            errors[field] = ["Must be a non-negative integer."]
            return None
        value = int(value)
    if value < 0:
        errors[field] = ["Must be a non-negative integer."]
        return None
    if value > maximum:
        errors[field] = [f"At most {maximum}."]
        return None
    return value


def _amount(value: Any, field: str, errors: Errors) -> Decimal | None:
    """A number or decimal string -> Decimal (12 dp); never a float, never NaN/Infinity."""
    if value is None:
        return None
    if isinstance(value, bool):
        errors[field] = ["Must be a number or a decimal string."]
        return None
    if isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, Decimal):
        result = value
    elif isinstance(value, str):
        text = value.strip()
        if not _DECIMAL_STRING.match(text):
            errors[field] = ["Must be a number or a decimal string."]
            return None
        try:
            result = Decimal(text)
        except InvalidOperation:
            errors[field] = ["Must be a number or a decimal string."]
            return None
    else:
        # float can only arrive if a caller bypassed the decimal JSON parser.
        errors[field] = ["Must be a number or a decimal string."]
        return None
    if not result.is_finite():
        errors[field] = ["Must be a finite number."]
        return None
    if abs(result) >= AMOUNT_LIMIT:
        errors[field] = ["Must be less than 1,000,000,000,000."]
        return None
    if result < 0:
        errors[field] = ["May not be negative."]
        return None
    return quantize_event_amount(result)


def _reservation(value: Any, field: str, errors: Errors) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str) or len(value) > 64:
            raise ValueError
        return uuid.UUID(value)
    except ValueError:
        errors[field] = ["Must be a reservation id (a UUID)."]
        return None


def _timestamp(value: Any, field: str, errors: Errors, now: dt.datetime) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        errors[field] = ["Must be an ISO 8601 timestamp."]
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        errors[field] = ["Must be an ISO 8601 timestamp."]
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)  # naive timestamps are UTC
    parsed = parsed.astimezone(dt.UTC)
    if parsed > now + FUTURE_TOLERANCE:
        errors[field] = ["May not be more than 5 minutes in the future."]
        return None
    if parsed < EARLIEST:
        errors[field] = ["May not be before 2000-01-01."]
        return None
    return parsed


def _encode_json(value: Any, depth: int = 0) -> str:
    """Exact JSON text of ``meta``: Decimals written as the number they are.

    ``json.dumps`` cannot emit a Decimal as a number, and turning it into a
    float would round it. Raises ValueError for what jsonb cannot hold.
    """
    if depth > MAX_META_DEPTH:
        raise ValueError(f"nested deeper than {MAX_META_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("strings may not contain NUL characters")
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, bool | int):
        return json.dumps(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("numbers must be finite")
        return str(value)
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            if "\x00" in key:
                raise ValueError("keys may not contain NUL characters")
            parts.append(json.dumps(key, ensure_ascii=False) + ":" + _encode_json(item, depth + 1))
        return "{" + ",".join(parts) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode_json(item, depth + 1) for item in value) + "]"
    raise ValueError(f"unsupported value of type {type(value).__name__}")


def _meta(value: Any, field: str, errors: Errors) -> tuple[dict[str, Any], str]:
    if value is None:
        return {}, "{}"
    if not isinstance(value, dict):
        errors[field] = ["Must be an object."]
        return {}, "{}"
    if not value:
        return {}, "{}"
    try:
        text = _encode_json(value)
    except ValueError as exc:
        errors[field] = [f"Not storable: {exc}."]
        return {}, "{}"
    if not text.isascii() and not _encodable(text):
        errors[field] = [INVALID_TEXT]
        return {}, "{}"
    if len(text.encode()) > MAX_META_BYTES:
        errors[field] = [f"At most {MAX_META_BYTES} bytes once serialized."]
        return {}, "{}"
    return value, text


_TOKEN_FIELDS = (
    ("inputTokens", "input_tokens"),
    ("outputTokens", "output_tokens"),
    ("cacheReadTokens", "cache_read_tokens"),
    ("cacheWriteTokens", "cache_write_tokens"),
    ("reasoningTokens", "reasoning_tokens"),
)


def parse_event(
    raw: Any, *, now: dt.datetime, idempotency_key_override: str | None = None
) -> tuple[EventInput | None, Errors]:
    """Validate one event body; ``(event, {})`` or ``(None, {field: [messages]})``."""
    if type(raw) is dict:
        event = _parse_plain(raw, now, idempotency_key_override)
        if event is not None:
            return event, {}
    return _parse_full(raw, now=now, idempotency_key_override=idempotency_key_override)


def _plain_text(value: Any, max_length: int) -> TypeGuard[str]:
    """A string ``_string`` would return unchanged (ASCII, so no encoding question)."""
    return (
        type(value) is str
        and len(value) <= max_length
        and value.isascii()
        and "\x00" not in value
        and bool(value.strip())
    )


def _plain_count(value: Any, maximum: int) -> bool:
    return value is None or (type(value) is int and 0 <= value <= maximum)


def _plain_amount(value: Any) -> Decimal | Literal[False] | None:
    """The amount when it is plainly valid, None when absent, False to defer to ``_amount``."""
    if value is None:
        return None
    if type(value) is int:
        value = Decimal(value)
    elif type(value) is str and _DECIMAL_STRING.match(value):
        try:
            value = Decimal(value)
        except InvalidOperation:
            return False
    elif type(value) is not Decimal:
        return False
    if not value.is_finite() or value < 0 or value >= AMOUNT_LIMIT:
        return False
    return quantize_event_amount(value)


def _parse_plain(
    raw: dict[str, Any], now: dt.datetime, idempotency_key_override: str | None
) -> EventInput | None:
    """The common case, fast: an event whose every field is plainly valid.

    Returns exactly what ``_parse_full`` would, or None to let it decide
    (anything unusual: errors, blanks, non-ASCII text, Decimal token counts...).
    """
    get = raw.get
    cost_input = get("costInput")
    if cost_input is not None and type(cost_input) is not dict:
        return None
    key: str | None
    if idempotency_key_override is not None:
        key = idempotency_key_override
    else:
        key = get("eventIdempotencyKey")
        if key is None:
            key = get("idempotencyKey")
    if key is not None and not _plain_text(key, MAX_KEY_LENGTH):
        return None
    event_name = get("eventName")
    customer_ref = get("customerReferenceId")
    feature_key = get("featureKey")
    if not (
        _plain_text(event_name, MAX_NAME_LENGTH)
        and _plain_text(customer_ref, MAX_CUSTOMER_REF_LENGTH)
        and _plain_text(feature_key, MAX_FEATURE_KEY_LENGTH)
    ):
        return None

    def pick(name: str) -> Any:
        if cost_input:
            value = cost_input.get(name)
            if value is not None:
                return value
        return get(name)

    model = pick("model")
    if model is not None and not _plain_text(model, MAX_MODEL_LENGTH):
        return None
    provider = pick("modelProvider")
    if provider is not None and not _plain_text(provider, MAX_PROVIDER_LENGTH):
        return None
    input_tokens = pick("inputTokens")
    output_tokens = pick("outputTokens")
    cache_read = pick("cacheReadTokens")
    cache_write = pick("cacheWriteTokens")
    reasoning = pick("reasoningTokens")
    if not (
        _plain_count(input_tokens, MAX_TOKENS)
        and _plain_count(output_tokens, MAX_TOKENS)
        and _plain_count(cache_read, MAX_TOKENS)
        and _plain_count(cache_write, MAX_TOKENS)
        and _plain_count(reasoning, MAX_TOKENS)
    ):
        return None
    if (cache_read or 0) + (cache_write or 0) > (input_tokens or 0) or (reasoning or 0) > (
        output_tokens or 0
    ):
        return None
    usage = _plain_amount(get("usageUnits"))
    cost = _plain_amount(get("costAmount"))
    revenue = _plain_amount(get("revenueAmount"))
    if usage is False or cost is False or revenue is False:
        return None
    duration = get("durationMs")
    if not _plain_count(duration, MAX_DURATION_MS):
        return None
    occurred_value = get("occurredAt")
    if occurred_value is None:
        occurred_at = now
    else:
        if type(occurred_value) is not str or len(occurred_value) > 64:
            return None
        try:
            occurred_at = dt.datetime.fromisoformat(occurred_value)
        except ValueError:
            return None
        if occurred_at.tzinfo is None:
            occurred_at = occurred_at.replace(tzinfo=dt.UTC)
        occurred_at = occurred_at.astimezone(dt.UTC)
        if occurred_at > now + FUTURE_TOLERANCE or occurred_at < EARLIEST:
            return None
    trace = get("traceId")
    if trace is None:
        trace = get("flowId")
    if trace is not None and not _plain_text(trace, MAX_TRACE_LENGTH):
        return None
    meta_value = get("meta")
    errors: Errors = {}
    if meta_value is None or (type(meta_value) is dict and not meta_value):
        meta: dict[str, Any] = {}
        meta_json = "{}"
    else:
        meta, meta_json = _meta(meta_value, "meta", errors)
        if errors:
            return None
    reservation_value = get("reservationId")
    reservation = None
    if reservation_value is not None:
        reservation = _reservation(reservation_value, "reservationId", errors)
        if errors:
            return None
    return EventInput(
        idempotency_key=key,
        event_name=event_name,
        customer_ref=customer_ref,
        feature_key=feature_key,
        occurred_at=occurred_at,
        model=model or "",
        provider=(provider or "").lower(),
        usage_units=usage if usage is not None else Decimal(1),
        units_given=usage is not None,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        cost_usd=cost,
        revenue_usd=revenue,
        duration_ms=duration,
        trace_id=trace or "",
        meta=meta,
        meta_json=meta_json,
        reservation_id=reservation,
    )


def _parse_full(
    raw: Any, *, now: dt.datetime, idempotency_key_override: str | None = None
) -> tuple[EventInput | None, Errors]:
    """Every rule, every error collected (the path for anything ``_parse_plain`` declines)."""
    errors: Errors = {}
    if not isinstance(raw, dict):
        return None, {"_event": ["Each event must be a JSON object."]}
    get = raw.get

    # The model and tokens: top level (Observe) overlaid by costInput (Platform).
    cost_input = get("costInput")
    cost_values: dict[str, Any] = {}
    if cost_input is not None:
        if isinstance(cost_input, dict):
            cost_values = cost_input
        else:
            errors["costInput"] = ["Must be an object."]

    def pick(name: str) -> tuple[Any, str]:
        if cost_values.get(name) is not None:
            return cost_values[name], f"costInput.{name}"
        return get(name), name

    key_value: Any  # validated by _string below
    if idempotency_key_override is not None:
        key_value, key_field = idempotency_key_override, "X-Idempotency-Key"
    elif get("eventIdempotencyKey") is not None:
        key_value, key_field = get("eventIdempotencyKey"), "eventIdempotencyKey"
    else:
        key_value, key_field = get("idempotencyKey"), "idempotencyKey"
    idempotency_key = _string(key_value, key_field, errors, max_length=MAX_KEY_LENGTH)

    event_name = _string(
        get("eventName"), "eventName", errors, max_length=MAX_NAME_LENGTH, required=True
    )
    customer_ref = _string(
        _integral_reference(get("customerReferenceId")),
        "customerReferenceId",
        errors,
        max_length=MAX_CUSTOMER_REF_LENGTH,
        required=True,
    )
    feature_key = _string(
        get("featureKey"), "featureKey", errors, max_length=MAX_FEATURE_KEY_LENGTH, required=True
    )
    model_value, model_field = pick("model")
    model = _string(model_value, model_field, errors, max_length=MAX_MODEL_LENGTH)
    provider_value, provider_field = pick("modelProvider")
    provider = _string(provider_value, provider_field, errors, max_length=MAX_PROVIDER_LENGTH)

    tokens: dict[str, int | None] = {}
    for name, attr in _TOKEN_FIELDS:
        value, field = pick(name)
        tokens[attr] = _integer(value, field, errors, maximum=MAX_TOKENS)
    # The pricing engine's invariants, checked here so they are field errors.
    cached = (tokens["cache_read_tokens"] or 0) + (tokens["cache_write_tokens"] or 0)
    if cached > (tokens["input_tokens"] or 0):
        errors.setdefault(
            "inputTokens",
            [
                "inputTokens is the whole prompt, cached tokens included: it may not be "
                "less than cacheReadTokens + cacheWriteTokens."
            ],
        )
    if (tokens["reasoning_tokens"] or 0) > (tokens["output_tokens"] or 0):
        errors.setdefault(
            "reasoningTokens",
            ["Reasoning tokens are part of outputTokens: they may not exceed it."],
        )

    usage_units = _amount(get("usageUnits"), "usageUnits", errors)
    cost = _amount(get("costAmount"), "costAmount", errors)
    revenue = _amount(get("revenueAmount"), "revenueAmount", errors)
    duration = _integer(get("durationMs"), "durationMs", errors, maximum=MAX_DURATION_MS)
    occurred_at = _timestamp(get("occurredAt"), "occurredAt", errors, now)

    trace_value, trace_field = get("traceId"), "traceId"
    if trace_value is None:
        trace_value, trace_field = get("flowId"), "flowId"
    trace_id = _string(trace_value, trace_field, errors, max_length=MAX_TRACE_LENGTH)
    meta, meta_json = _meta(get("meta"), "meta", errors)
    reservation = _reservation(get("reservationId"), "reservationId", errors)

    if errors:
        return None, errors
    assert event_name is not None and customer_ref is not None and feature_key is not None
    return (
        EventInput(
            idempotency_key=idempotency_key,
            event_name=event_name,
            customer_ref=customer_ref,
            feature_key=feature_key,
            occurred_at=occurred_at or now,
            model=model or "",
            provider=(provider or "").lower(),
            # One event is one unit unless the caller counts otherwise.
            usage_units=usage_units if usage_units is not None else Decimal(1),
            input_tokens=tokens["input_tokens"],
            output_tokens=tokens["output_tokens"],
            cache_read_tokens=tokens["cache_read_tokens"],
            cache_write_tokens=tokens["cache_write_tokens"],
            reasoning_tokens=tokens["reasoning_tokens"],
            cost_usd=cost,
            revenue_usd=revenue,
            duration_ms=duration,
            trace_id=trace_id or "",
            meta=meta,
            meta_json=meta_json,
            reservation_id=reservation,
            units_given=usage_units is not None,
        ),
        {},
    )
