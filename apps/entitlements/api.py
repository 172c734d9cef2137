"""Client API for entitlement checks (``/api/v1/client/entitlements``).

* ``POST /entitlements/check`` ``{customerReferenceId, featureKey, units?, model?,
  reserve?, ttlSeconds?}``: the integrator's hot path (public page snippet).
* ``GET /entitlements/{ref}/{featureKey}?units=&model=``: the same check (404 for
  an unknown customer, as the reference).
* ``POST /entitlements``: evaluate a proposed usage ``{customerReferenceId,
  featureKey, usage|track: {usageUnits, model}}``: the check plus ``simulation``
  (projected usage against the limit) and ``creditQuote``.
* ``GET /entitlements/{ref}``: every feature of the customer's plans in force.
* ``POST /entitlements/reservations/{id}/release``: give a hold back before it
  expires (the call did not happen); the answer is the reservation.

Scopes: ``usage.read``; ``reserve`` and a release also need ``events.write`` (the
hold is settled by the event). ``ck_`` keys with ``read`` may check their own
customer, and reserve and release for it.

**Fails closed.** An error while deciding answers HTTP 200 with ``allowed: false``:
``reason.code`` ``unavailable`` when PostgreSQL (or Redis and then PostgreSQL) cannot
be reached, including the key's own verification (``_EntitlementView.handle_exception``),
``internal_error`` for anything else (logged with the request id); never a 5xx: a caller
that reads ``allowed`` (the public page's ``const { allowed } = await check.json()``) or
that treats any non-2xx as "could not check, let it through" is denied either way. Bad
input is still a 400, a bad key 401, a missing scope 403.
"""

from __future__ import annotations

import logging
import time
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response

from apps.apikeys import scopes as S
from apps.apikeys.authentication import environment_of, request_key
from apps.apikeys.idempotency import APIView
from apps.apikeys.models import ApiKey
from apps.apikeys.permissions import ensure_customer_access
from apps.apikeys.services import TOUCH_INTERVAL, apikey_used, authenticate_key, touch_redis_key
from apps.core.api.parsers import loads
from apps.core.api.renderers import dumps
from apps.core.api.schema import decimal_pattern, documented
from apps.core.errors import (
    InvalidQuery,
    NotFound,
    ScopeDenied,
    TansoError,
    ValidationFailed,
    is_outage,
)
from apps.core.redis import env_key
from apps.core.tenancy import scoped
from apps.customers.selectors import customer_get

from . import counters
from .models import Reservation
from .rendering import render_decision, render_released
from .selectors import Decision, Reason, customer_feature_keys, decide
from .services import (
    DEFAULT_TTL_SECONDS,
    MAX_TTL_SECONDS,
    entitlement_reserve,
    reservation_release,
)

logger = logging.getLogger(__name__)

MAX_REFERENCE_LENGTH = 255
MAX_FEATURE_KEY_LENGTH = 128
MAX_MODEL_LENGTH = 255
UNITS_LIMIT = Decimal(10) ** 12


# -- input (hand-written: this is the hot path) ----------------------------------------------


def _text(data: dict[str, Any], name: str, errors: dict[str, list[str]], limit: int) -> str:
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        errors[name] = ["This field is required."]
        return ""
    if not isinstance(value, str):
        errors[name] = ["Must be a string."]
        return ""
    if len(value) > limit or "\x00" in value:
        errors[name] = [f"At most {limit} characters, no NUL."]
        return ""
    return value


# Units are above 0 and below 10^12 (parse_units); null means not given.
UNITS_MINIMUM = Decimal("1e-12")
UNITS_SCHEMA = {
    "type": "string",
    "format": "decimal",
    "pattern": decimal_pattern(12, 12, minimum=UNITS_MINIMUM),
    "nullable": True,
}


def parse_units(value: Any, field: str, errors: dict[str, list[str]]) -> Decimal | None:
    """A positive number or decimal string, at most 12 decimal places (None: not given)."""
    if value is None:
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
            raise InvalidOperation
        units = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, ValueError):
        errors[field] = ["Must be a number."]
        return None
    if not units.is_finite() or units <= 0 or units >= UNITS_LIMIT:
        errors[field] = ["Must be greater than 0 and less than 1,000,000,000,000."]
        return None
    if units != units.quantize(Decimal("1e-12")):
        errors[field] = ["At most 12 decimal places."]
        return None
    return units


def _ttl(value: Any, errors: dict[str, list[str]]) -> int:
    if value is None:
        return DEFAULT_TTL_SECONDS
    if isinstance(value, bool) or not isinstance(value, int | Decimal) or value != int(value):
        errors["ttlSeconds"] = ["Must be a whole number of seconds."]
        return DEFAULT_TTL_SECONDS
    if not 1 <= int(value) <= MAX_TTL_SECONDS:
        errors["ttlSeconds"] = [f"Between 1 and {MAX_TTL_SECONDS}."]
    return int(value)


def _model(value: Any, field: str, errors: dict[str, list[str]]) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_MODEL_LENGTH:
        errors[field] = [f"A string of at most {MAX_MODEL_LENGTH} characters."]
        return ""
    return value


def _reserve_allowed(request: Request) -> None:
    key = request_key(request)
    if key.kind != ApiKey.Kind.CUSTOMER and not key.has_scope(S.EVENTS_WRITE):
        raise ScopeDenied(S.EVENTS_WRITE)


# -- deciding, closed on failure ---------------------------------------------------------------


def _failed(
    reference_id: str, feature_key: str, units: Decimal | None, exc: BaseException
) -> Decision:
    decision = Decision(reference_id, feature_key, True, requested_units=units)
    if is_outage(exc):
        logger.warning("entitlement check: data store unreachable (%r); allowed=false", exc)
        return decision.deny(
            Reason.UNAVAILABLE,
            "The check could not be completed (the service cannot reach its data); "
            "access is refused. Retry shortly.",
        )
    logger.error("entitlement check failed; answering allowed=false", exc_info=exc)
    return decision.deny(
        Reason.INTERNAL_ERROR, "The check could not be completed; access is refused."
    )


def _check(
    request: Request,
    reference_id: str,
    feature_key: str,
    units: Decimal | None,
    *,
    model: str = "",
    reserve: bool = False,
    ttl: int = DEFAULT_TTL_SECONDS,
) -> Decision:
    environment = environment_of(request)
    try:
        if reserve:
            return entitlement_reserve(
                environment,
                reference_id=reference_id,
                feature_key=feature_key,
                units=units if units is not None else Decimal(1),
                ttl_seconds=ttl,
                model=model,
            )
        (decision,) = decide(
            environment,
            reference_id=reference_id,
            feature_keys=[feature_key],
            units=units,
            model=model,
        )
        return decision
    except Exception as exc:  # fail closed, whatever went wrong
        return _failed(reference_id, feature_key, units, exc)


# -- schema documentation ----------------------------------------------------------------------


# The reservation fields a check and an evaluation both take (a comment, not a docstring:
# drf-spectacular would show it as the description of both requests).
class _ReserveDoc(serializers.Serializer):
    reserve = serializers.BooleanField(
        required=False, help_text="hold the units until an event settles them"
    )
    ttlSeconds = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_TTL_SECONDS,
        help_text=f"default {DEFAULT_TTL_SECONDS}",
    )


class CheckInputDoc(_ReserveDoc):
    customerReferenceId = serializers.CharField(max_length=MAX_REFERENCE_LENGTH)
    featureKey = serializers.CharField(max_length=MAX_FEATURE_KEY_LENGTH)
    units = documented(
        serializers.DecimalField(max_digits=24, decimal_places=12, required=False),
        {**UNITS_SCHEMA, "description": "default: any left (1 when reserving)"},
    )
    model = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, help_text="for credit weights per model"
    )


class _ReasonDoc(serializers.Serializer):
    code = serializers.ChoiceField(
        choices=[
            Reason.NO_SUBSCRIPTION,
            Reason.FEATURE_NOT_IN_PLAN,
            Reason.LIMIT_REACHED,
            Reason.CREDITS_EXHAUSTED,
            Reason.PAST_DUE,
            Reason.UNAVAILABLE,
            Reason.INTERNAL_ERROR,
        ]
    )
    message = serializers.CharField()


class _UsageDoc(serializers.Serializer):
    used = serializers.DecimalField(max_digits=38, decimal_places=12)
    limit = serializers.DecimalField(max_digits=24, decimal_places=12, allow_null=True)
    remaining = serializers.DecimalField(max_digits=38, decimal_places=12, allow_null=True)
    held = serializers.DecimalField(max_digits=38, decimal_places=12)
    unlimited = serializers.BooleanField()
    resetsAt = serializers.DateTimeField(allow_null=True)
    resetInterval = serializers.CharField()
    windowStart = serializers.DateTimeField()
    periodStart = serializers.DateTimeField()
    periodEnd = serializers.DateTimeField()
    overagePricePerUnit = serializers.DecimalField(
        max_digits=24, decimal_places=12, allow_null=True, help_text="null: a hard cap"
    )


class _CreditsDoc(serializers.Serializer):
    denomination = serializers.CharField()
    balance = serializers.DecimalField(max_digits=24, decimal_places=6)
    available = serializers.DecimalField(max_digits=24, decimal_places=6)
    held = serializers.DecimalField(max_digits=24, decimal_places=6)
    hardLimit = serializers.BooleanField()
    requiredCredits = serializers.DecimalField(max_digits=24, decimal_places=6)
    creditsPerUnit = serializers.DecimalField(max_digits=24, decimal_places=6)
    weightMatch = serializers.CharField(help_text="which published weight applied (none: default)")


class _ReservationDoc(serializers.Serializer):
    id = serializers.UUIDField()
    units = serializers.DecimalField(max_digits=38, decimal_places=12)
    credits = serializers.DecimalField(max_digits=24, decimal_places=6, allow_null=True)
    denomination = serializers.CharField(allow_null=True)
    expiresAt = serializers.DateTimeField()
    status = serializers.ChoiceField(choices=Reservation.Status.values)


class ReleasedDoc(_ReservationDoc):
    customerReferenceId = serializers.CharField()
    featureKey = serializers.CharField()
    releasedAt = serializers.DateTimeField()


class DecisionDoc(serializers.Serializer):
    customerReferenceId = serializers.CharField()
    featureKey = serializers.CharField()
    allowed = serializers.BooleanField()
    reason = _ReasonDoc(allow_null=True, help_text="null when allowed")
    requestedUnits = serializers.DecimalField(max_digits=24, decimal_places=12, allow_null=True)
    subscriptionId = serializers.UUIDField(required=False, help_text="the subscription deciding")
    subscriptionStatus = serializers.CharField(required=False)
    planKey = serializers.CharField(required=False)
    usage = _UsageDoc(required=False)
    credits = _CreditsDoc(required=False, help_text="credit-backed features")
    reservationId = serializers.UUIDField(required=False, help_text="when a hold was made")
    reservation = _ReservationDoc(required=False, help_text="when a hold was made")


class EvaluateInputDoc(_ReserveDoc):
    customerReferenceId = serializers.CharField(max_length=MAX_REFERENCE_LENGTH)
    featureKey = serializers.CharField(max_length=MAX_FEATURE_KEY_LENGTH)
    usage = inline_serializer(
        "EntitlementsEvaluateUsage",
        fields={
            "usageUnits": documented(
                serializers.DecimalField(max_digits=24, decimal_places=12, required=False),
                {**UNITS_SCHEMA, "description": "default 1"},
            ),
            "model": serializers.CharField(
                required=False, allow_blank=True, allow_null=True, max_length=MAX_MODEL_LENGTH
            ),
        },
        required=False,
        allow_null=True,
        help_text="the proposed usage (track is accepted as another name)",
    )
    track = serializers.DictField(
        required=False, allow_null=True, help_text="another name of usage"
    )
    units = documented(
        serializers.DecimalField(max_digits=24, decimal_places=12, required=False),
        {**UNITS_SCHEMA, "description": "when usage has no usageUnits"},
    )
    # Not bounded here: read (and bounded to MAX_MODEL_LENGTH) only when usage has none.
    model = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, help_text="when usage has no model"
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        # Not a class-body field: to mypy, "context" there would override Field.context.
        return {
            **super().get_fields(),
            "context": serializers.DictField(
                required=False,
                allow_null=True,
                help_text="{flowId}: echoed back (a new one when not given)",
            ),
        }


class EvaluationDoc(DecisionDoc):
    flowId = serializers.CharField()
    simulation = inline_serializer(
        "EntitlementsSimulation",
        fields={
            "requestedUsage": serializers.DecimalField(max_digits=24, decimal_places=12),
            "projectedUsage": serializers.DecimalField(max_digits=38, decimal_places=12),
            "projectedRemaining": serializers.DecimalField(max_digits=38, decimal_places=12),
            "wouldExceedLimit": serializers.BooleanField(),
        },
        required=False,
        help_text="when the feature is capped",
    )
    creditQuote = inline_serializer(
        "EntitlementsCreditQuote",
        fields={
            "denomination": serializers.CharField(),
            "weight": serializers.DecimalField(max_digits=24, decimal_places=6),
            "weightId": serializers.UUIDField(allow_null=True),
            "weightMatch": serializers.CharField(),
            "estimatedCredits": serializers.DecimalField(max_digits=24, decimal_places=6),
            "pricePerCredit": serializers.DecimalField(
                max_digits=24, decimal_places=12, required=False
            ),
            "currency": serializers.CharField(required=False),
            "estimatedCost": serializers.DecimalField(
                max_digits=38, decimal_places=12, required=False
            ),
        },
        required=False,
        help_text="when credit-backed (price fields when the denomination has a price)",
    )


# -- views -------------------------------------------------------------------------------------

FAILS_CLOSED = (
    "Fails closed, never a 5xx: a check that cannot be decided answers 200 with `allowed:"
    " false` and `reason.code` `unavailable` (PostgreSQL unreachable, including the key's"
    " verification) or `internal_error` (any other failure)."
)


class _EntitlementView(APIView):
    required_scopes = S.USAGE_READ
    customer_key_scope = S.CUSTOMER_READ

    def handle_exception(self, exc: Exception) -> Response:
        """A data store unreachable anywhere in the request (the key's verification, a
        customer look-up, a quote): the fail-closed answer, never a 5xx. Bad input is
        still a 400. ``request.auth`` is not read here: it may be what failed."""
        if is_outage(exc):
            try:
                return Response(self.closed(self.request, exc))
            except (TansoError, APIException) as error:  # the body itself is bad
                return super().handle_exception(error)
        return super().handle_exception(exc)

    def closed(self, request: Request, exc: Exception) -> dict[str, Any]:
        """The answer when the check could not be made (``allowed: false``)."""
        raise NotImplementedError

    @classmethod
    def outage_answer(
        cls, request: HttpRequest, kwargs: dict[str, Any], exc: BaseException
    ) -> HttpResponse:
        """The fail-closed answer when a middleware found the data unreachable before the
        view ran (the idempotency claim of a check sent with ``Idempotency-Key``); called by
        the 500 handler (``apps.core.api.errorpages``), which answers 503 if this raises."""
        view = cls()
        view.kwargs = kwargs
        body = view.closed(Request(request, parsers=view.get_parsers()), exc)  # type: ignore[arg-type]
        return HttpResponse(dumps(body), content_type="application/json")


def _parse_check(request: Request) -> tuple[str, str, Decimal | None, str, bool, int]:
    return parse_check_body(request.data)


def parse_check_body(data: Any) -> tuple[str, str, Decimal | None, str, bool, int]:
    if not isinstance(data, dict):
        raise ValidationFailed(fields={"_body": ["Must be a JSON object."]})
    errors: dict[str, list[str]] = {}
    reference_id = _text(data, "customerReferenceId", errors, MAX_REFERENCE_LENGTH)
    feature_key = _text(data, "featureKey", errors, MAX_FEATURE_KEY_LENGTH)
    units = parse_units(data.get("units"), "units", errors)
    model = _model(data.get("model"), "model", errors)
    reserve = data.get("reserve", False)
    if not isinstance(reserve, bool):
        errors["reserve"] = ["Must be true or false."]
    ttl = _ttl(data.get("ttlSeconds"), errors)
    if errors:
        raise ValidationFailed(fields=errors)
    return reference_id, feature_key, units, model, bool(reserve), ttl


JSON = "application/json"
# What DRF's answer carries: its ``Allow`` header (the check view's methods).
ALLOW = "GET, POST, HEAD, OPTIONS"
_ACCEPTS_JSON = frozenset({"*/*", "application/*", JSON})


def _is_json(content_type: str) -> bool:
    return content_type.partition(";")[0].strip().lower() == JSON


def _accepts_json(accept: str) -> bool:
    """Whether DRF's negotiation would pick its JSON renderer (a missing header does)."""
    if not accept:
        return True
    return any(
        part.partition(";")[0].strip().lower() in _ACCEPTS_JSON for part in accept.split(",")
    )


def lean_check(*, raw_key: str | None, content_type: str, accept: str, body: bytes) -> bytes | None:
    """The common check, without DRF: a valid key with its scope, a JSON body that is valid,
    no reservation; the answer's JSON. One Redis round trip in all (the key's use stamp
    and rate-limit hit ride along with the state token and the counter, see
    ``counters.read``); no PostgreSQL query once the customer is known to this process.

    None: anything else (no or a bad key, a missing scope, another content type or
    ``Accept``, bad input, a reservation, over the rate limit), which the DRF view then
    answers in full, with the usual error envelopes. The WSGI entry point
    (``tanso/fastpath.py``) calls it before Django.
    """
    if not raw_key or not _is_json(content_type) or not _accepts_json(accept):
        return None
    try:
        key = authenticate_key(raw_key, touch=False)
        reference_id, feature_key, units, model, reserve, _ = parse_check_body(loads(body))
    except (TansoError, ValueError, UnicodeDecodeError):
        return None
    if reserve:
        return None
    if key.kind == ApiKey.Kind.CUSTOMER:
        pinned = key.customer.reference_id if key.customer is not None else None
        if S.CUSTOMER_READ not in key.scopes or pinned != reference_id:
            return None
    elif not key.has_scope(S.USAGE_READ):
        return None
    window = int(time.time())
    gate = counters.Gate(
        touch_key=touch_redis_key(key),
        touch_ttl=TOUCH_INTERVAL,
        rate_key=f"{env_key(key.environment_id, 'rl', key.pk)}:{window}",  # ratelimit.hit's
        rate_ttl=2,
    )
    environment = key.environment
    try:
        (decision,) = decide(
            environment,
            reference_id=reference_id,
            feature_keys=[feature_key],
            units=units,
            model=model,
            gate=gate,
        )
        if not gate.tried:  # answered without Redis (unknown customer, ...): gate alone
            counters.read(state_key_of(environment), [], gate)
    except Exception as exc:  # fail closed, whatever went wrong
        decision = _failed(reference_id, feature_key, units, exc)
    if gate.count > settings.API_RATE_LIMIT_PER_SECOND:
        return None  # the DRF view answers 429
    if gate.touched:
        try:
            apikey_used(key)
        except Exception as exc:  # PostgreSQL down: the stamp waits for the next minute
            if not is_outage(exc):
                raise
    return dumps(render_decision(decision))


def state_key_of(environment: Any) -> str:
    from .state import state_key

    return state_key(environment.pk)


_CUSTOMER_ENTITLEMENTS = inline_serializer(
    "EntitlementsCustomerEntitlements",
    fields={
        "customerReferenceId": serializers.CharField(),
        "items": DecisionDoc(many=True),
        "nextCursor": serializers.CharField(allow_null=True, help_text="always null"),
        "hasMore": serializers.BooleanField(),
    },
)


class EntitlementCheck(_EntitlementView):
    @extend_schema(
        summary="May this customer use this feature now?",
        description=FAILS_CLOSED,
        request=CheckInputDoc,
        responses={200: DecisionDoc, 400: OpenApiResponse(description="validation_failed")},
    )
    def post(self, request: Request) -> Response:
        reference_id, feature_key, units, model, reserve, ttl = _parse_check(request)
        ensure_customer_access(request, reference_id)
        if reserve:
            _reserve_allowed(request)
        decision = _check(
            request, reference_id, feature_key, units, model=model, reserve=reserve, ttl=ttl
        )
        return Response(render_decision(decision))

    @extend_schema(
        summary='The entitlement list of the customer whose reference is "check"',
        description="As GET /api/v1/client/entitlements/{reference_id}: this path answers "
        "both, by method.",
        operation_id="v1_client_entitlements_check_customer_list",
        request=None,
        responses={
            200: _CUSTOMER_ENTITLEMENTS,
            404: OpenApiResponse(description='not_found: no customer "check"'),
        },
    )
    def get(self, request: Request) -> Response:
        # GET /entitlements/check is the entitlement list of a customer named "check".
        return CustomerEntitlements().get_for(request, "check")

    def closed(self, request: Request, exc: Exception) -> dict[str, Any]:
        if request.method == "GET":
            return CustomerEntitlements().closed(request, exc, reference_id="check")
        reference_id, feature_key, units, *_ = _parse_check(request)
        return render_decision(_failed(reference_id, feature_key, units, exc))


class EntitlementGet(_EntitlementView):
    @extend_schema(
        summary="Check one feature of a customer (404 for an unknown customer)",
        description=FAILS_CLOSED,
        request=None,
        parameters=[
            OpenApiParameter(
                "units",
                {"type": "string", "pattern": decimal_pattern(12, 12, minimum=UNITS_MINIMUM)},
                description="units the caller wants to use: above 0, below 10^12",
            ),
            OpenApiParameter("model", str),
        ],
        responses={200: DecisionDoc},
    )
    def get(self, request: Request, reference_id: str, feature_key: str) -> Response:
        ensure_customer_access(request, reference_id)
        customer_get(environment_of(request), reference_id)  # 404 when unknown
        errors: dict[str, list[str]] = {}
        units = parse_units(request.query_params.get("units"), "units", errors)
        model = _model(request.query_params.get("model"), "model", errors)
        if errors:
            raise InvalidQuery(fields=errors)
        decision = _check(request, reference_id, feature_key, units, model=model)
        return Response(render_decision(decision))

    def closed(self, request: Request, exc: Exception) -> dict[str, Any]:
        kwargs = self.kwargs
        units = parse_units(request.query_params.get("units"), "units", {})
        return render_decision(_failed(kwargs["reference_id"], kwargs["feature_key"], units, exc))


class EntitlementEvaluate(_EntitlementView):
    @extend_schema(
        summary="Evaluate a proposed usage: the check, projected usage and a credit quote",
        description=FAILS_CLOSED,
        request=EvaluateInputDoc,
        responses={
            200: EvaluationDoc,
            400: OpenApiResponse(description="validation_failed"),
        },
    )
    def post(self, request: Request) -> Response:
        data = request.data
        if not isinstance(data, dict):
            raise ValidationFailed(fields={"_body": ["Must be a JSON object."]})
        errors: dict[str, list[str]] = {}
        reference_id = _text(data, "customerReferenceId", errors, MAX_REFERENCE_LENGTH)
        feature_key = _text(data, "featureKey", errors, MAX_FEATURE_KEY_LENGTH)
        usage = data.get("usage") if data.get("usage") is not None else data.get("track")
        prefix = "usage" if data.get("usage") is not None else "track"
        if usage is not None and not isinstance(usage, dict):
            errors[prefix] = ["Must be an object."]
            usage = {}
        usage = usage or {}
        units = parse_units(
            usage.get("usageUnits", data.get("units")), f"{prefix}.usageUnits", errors
        )
        model = _model(usage.get("model", data.get("model")), f"{prefix}.model", errors)
        # The top-level units and model stand in for usage's: checked even when unused.
        parse_units(data.get("units"), "units", errors)
        _model(data.get("model"), "model", errors)
        reserve = data.get("reserve", False)
        if not isinstance(reserve, bool):
            errors["reserve"] = ["Must be true or false."]
        ttl = _ttl(data.get("ttlSeconds"), errors)
        for name in ("context", "track"):  # track: checked even when usage stands in
            if data.get(name) is not None and not isinstance(data[name], dict):
                errors.setdefault(name, ["Must be an object."])
        if errors:
            raise ValidationFailed(fields=errors)
        ensure_customer_access(request, reference_id)
        if reserve:
            _reserve_allowed(request)
        units = units if units is not None else Decimal(1)
        decision = _check(
            request, reference_id, feature_key, units, model=model, reserve=bool(reserve), ttl=ttl
        )
        body = render_decision(decision)
        context = data.get("context")
        flow = context.get("flowId") if isinstance(context, dict) else None
        flow = flow if isinstance(flow, str) and flow else None
        body["flowId"] = flow or str(uuid.uuid4())
        usage_view = decision.usage
        if usage_view is not None and usage_view.limit is not None:
            projected = usage_view.used + usage_view.held + units
            body["simulation"] = {
                "requestedUsage": units,
                "projectedUsage": projected,
                "projectedRemaining": max(usage_view.limit - projected, Decimal(0)),
                "wouldExceedLimit": projected > usage_view.limit,
            }
        if decision.credits is not None and decision.applied is not None:
            body["creditQuote"] = _credit_quote(request, decision, units, model)
        return Response(body)

    def closed(self, request: Request, exc: Exception) -> dict[str, Any]:
        data = request.data if isinstance(request.data, dict) else {}
        reference_id, feature_key = (data.get(n) for n in ("customerReferenceId", "featureKey"))
        decision = _failed(
            reference_id if isinstance(reference_id, str) else "",
            feature_key if isinstance(feature_key, str) else "",
            None,
            exc,
        )
        context = data.get("context")
        flow = context.get("flowId") if isinstance(context, dict) else None
        body = render_decision(decision)
        body["flowId"] = flow if isinstance(flow, str) and flow else str(uuid.uuid4())
        return body


def _credit_quote(
    request: Request, decision: Decision, units: Decimal, model: str
) -> dict[str, Any]:
    from apps.credits.models import CreditPrice

    credits = decision.credits
    assert credits is not None
    price = (
        scoped(CreditPrice, environment_of(request).pk)
        .filter(denomination=credits.denomination, effective_from__lte=timezone.now())
        .order_by("-effective_from")
        .values_list("price_per_credit", "currency")
        .first()
    )
    quote: dict[str, Any] = {
        "denomination": credits.denomination,
        "weight": credits.weight.credits_per_unit,
        "weightId": str(credits.weight.weight_id) if credits.weight.weight_id else None,
        "weightMatch": credits.weight.match,
        "estimatedCredits": credits.required,
    }
    if price is not None:
        quote.update(
            {
                "pricePerCredit": price[0],
                "currency": price[1],
                "estimatedCost": credits.required * price[0],
            }
        )
    return quote


class CustomerEntitlements(_EntitlementView):
    @extend_schema(
        summary="Every feature of a customer's plans in force, checked",
        description=FAILS_CLOSED,
        operation_id="v1_client_entitlements_list",
        request=None,
        responses={200: _CUSTOMER_ENTITLEMENTS},
    )
    def get(self, request: Request, reference_id: str) -> Response:
        return self.get_for(request, reference_id)

    def get_for(self, request: Request, reference_id: str) -> Response:
        ensure_customer_access(request, reference_id)
        environment = environment_of(request)
        customer_get(environment, reference_id)  # 404 when unknown
        now = timezone.now()
        try:
            keys = customer_feature_keys(environment, reference_id, now=now)
            decisions = (
                decide(environment, reference_id=reference_id, feature_keys=keys, now=now)
                if keys
                else []
            )
            items = [render_decision(decision) for decision in decisions]
        except Exception as exc:  # fail closed
            items = [render_decision(_failed(reference_id, "*", None, exc))]
        return Response(_entitlement_list(reference_id, items))

    def closed(
        self, request: Request, exc: Exception, *, reference_id: str | None = None
    ) -> dict[str, Any]:
        reference_id = reference_id or self.kwargs["reference_id"]
        return _entitlement_list(
            reference_id, [render_decision(_failed(reference_id, "*", None, exc))]
        )


def _entitlement_list(reference_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "customerReferenceId": reference_id,
        "items": items,
        "nextCursor": None,
        "hasMore": False,
    }


class ReservationRelease(APIView):
    required_scopes = S.EVENTS_WRITE
    customer_key_scope = S.CUSTOMER_READ

    @extend_schema(
        summary="Release a held reservation before it expires",
        description=(
            "The units and credits it held stop counting at once. Releasing a released"
            " reservation again answers it as it is."
        ),
        request=None,
        responses={
            200: ReleasedDoc,
            404: OpenApiResponse(description="not_found: no such reservation here"),
            409: OpenApiResponse(
                description="reservation_not_held: settled by an event, or expired"
            ),
        },
    )
    def post(self, request: Request, reservation_id: str) -> Response:
        key = request_key(request)
        pinned = key.customer_id if key.kind == ApiKey.Kind.CUSTOMER else None
        try:
            reservation_uuid = uuid.UUID(reservation_id)
        except ValueError:
            raise NotFound("No such reservation.") from None
        reservation = reservation_release(
            environment_of(request), reservation_uuid, customer_id=pinned
        )
        return Response(render_released(reservation))
