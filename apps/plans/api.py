"""Client and management API for plans: ``/api/v1/client/plans``.

Reads need ``usage.read``; every write (create, change, activate, archive,
delete, link or unlink a feature) needs ``usage.write``. A plan is addressed by
its id or its key in the path; a feature by its ``featureKey``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.audit import Actor
from apps.apikeys import scopes as S
from apps.apikeys.authentication import environment_of
from apps.apikeys.idempotency import APIView
from apps.core.api.fields import MetadataField, StrictCharField
from apps.core.api.pagination import paginate_newest_first
from apps.core.api.schema import PAGE_PARAMETERS, decimal, decimal_pattern, documented, many, page
from apps.core.errors import NotFound, ValidationFailed
from apps.core.money import parse_decimal
from apps.features.models import Feature
from apps.features.selectors import feature_get, features_for

from . import errors as plan_errors
from . import pricing
from .models import Plan, PlanFeatureRule
from .rendering import render_plan, render_rule
from .selectors import plan_get, plan_rules, plans_list
from .services import (
    KEY_MAX_LENGTH,
    RuleSpec,
    plan_activate,
    plan_archive,
    plan_create,
    plan_delete,
    plan_feature_remove,
    plan_feature_set,
    plan_update,
)

INTERVALS = {"monthly": Plan.Interval.MONTHLY, "annual": Plan.Interval.ANNUAL}
MODEL_ALIASES = {"usage": pricing.PricingModel.PER_UNIT}  # the reference's name for per-unit
RULE_FIELDS = frozenset(
    {
        "featureKey",
        "model",
        "pricePerUnit",
        "packageSize",
        "tiers",
        "maxUsage",
        "resetInterval",
        "overagePricePerUnit",
        "creditDenomination",
        "creditsPerUnit",
        "isEnabled",
    }
)
TIER_FIELDS = frozenset({"upTo", "pricePerUnit", "flatFee"})
# Likely misspellings, so a 400 says what to send instead.
FIELD_HINTS = {
    "unitPrice": "pricePerUnit",
    "price": "pricePerUnit",
    "up_to": "upTo",
    "flat_fee": "flatFee",
    "price_per_unit": "pricePerUnit",
    "max_usage": "maxUsage",
    "pricingModel": "model",
    "overagePrice": "overagePricePerUnit",
    "resetMode": "resetInterval",
}


# -- parsing a rule -----------------------------------------------------------------------


class _Errors:
    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        self.fields.setdefault(field, []).append(message)

    def unknown(self, data: dict[str, Any], allowed: frozenset[str], prefix: str) -> None:
        for name in data:
            if name not in allowed:
                hint = FIELD_HINTS.get(name)
                self.add(f"{prefix}{name}", f"Unknown field{f'; use {hint}' if hint else ''}.")

    def decimal(self, data: dict[str, Any], name: str, field: str) -> Decimal | None:
        value = data.get(name)
        if value is None:
            return None
        try:
            return parse_decimal(value)
        except ValueError:
            self.add(field, "Must be a number (or a decimal string).")
            return None


def _parse_tiers(raw: Any, errors: _Errors, prefix: str) -> tuple[pricing.Tier, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        errors.add(f"{prefix}tiers", "Must be a list of tiers.")
        return ()
    tiers = []
    for index, item in enumerate(raw):
        field = f"{prefix}tiers.{index}"
        if not isinstance(item, dict):
            errors.add(field, "Must be an object with upTo, pricePerUnit and flatFee.")
            continue
        errors.unknown(item, TIER_FIELDS, f"{field}.")
        up_to: Decimal | None = None
        raw_up_to = item.get("upTo")
        if isinstance(raw_up_to, str) and raw_up_to.strip().lower() in {"inf", "infinity"}:
            up_to = None
        else:
            up_to = errors.decimal(item, "upTo", f"{field}.upTo")
        price = errors.decimal(item, "pricePerUnit", f"{field}.pricePerUnit")
        if "pricePerUnit" not in item:
            errors.add(f"{field}.pricePerUnit", "Required.")
        flat = errors.decimal(item, "flatFee", f"{field}.flatFee")
        tiers.append(
            pricing.Tier(
                up_to=up_to,
                unit_price=price if price is not None else Decimal(0),
                flat_fee=flat if flat is not None else Decimal(0),
            )
        )
    return tuple(tiers)


def parse_rule(data: Any, *, prefix: str = "", errors: _Errors | None = None) -> RuleSpec:
    """A rule from its JSON (see docs/platform.md); 400 with every problem at once."""
    own = errors is None
    errors = errors or _Errors()
    if not isinstance(data, dict):
        errors.add(prefix.rstrip(".") or "_body", "Must be an object.")
        if own:
            raise ValidationFailed(fields=errors.fields)
        return RuleSpec()
    errors.unknown(data, RULE_FIELDS, prefix)

    raw_model = data.get("model") or pricing.PricingModel.INCLUDED.value
    model: Any = raw_model
    if isinstance(raw_model, str):
        model = MODEL_ALIASES.get(raw_model.lower(), raw_model.lower())
    if model not in pricing.PricingModel._value2member_map_:
        errors.add(f"{prefix}model", f"One of {', '.join(m.value for m in pricing.PricingModel)}.")
        model = pricing.PricingModel.INCLUDED
    package_size = data.get("packageSize")
    if package_size is not None:
        try:
            size = parse_decimal(package_size)
        except ValueError:
            size = None
        if size is None or size != size.to_integral_value():
            errors.add(f"{prefix}packageSize", "Must be a whole number.")
            package_size = None
        else:
            package_size = int(size)
    is_enabled = data.get("isEnabled", True)
    if not isinstance(is_enabled, bool):
        errors.add(f"{prefix}isEnabled", "Must be true or false.")
        is_enabled = True
    reset = data.get("resetInterval") or PlanFeatureRule.ResetInterval.BILLING_PERIOD
    if not isinstance(reset, str):
        errors.add(f"{prefix}resetInterval", "Must be a string.")
        reset = PlanFeatureRule.ResetInterval.BILLING_PERIOD
    denomination = data.get("creditDenomination") or ""
    if not isinstance(denomination, str):
        errors.add(f"{prefix}creditDenomination", "Must be a string.")
        denomination = ""

    rule = pricing.Rule(
        model=pricing.PricingModel(model),
        unit_price=errors.decimal(data, "pricePerUnit", f"{prefix}pricePerUnit"),
        package_size=package_size,
        tiers=_parse_tiers(data.get("tiers"), errors, prefix),
        max_usage=errors.decimal(data, "maxUsage", f"{prefix}maxUsage"),
        overage_unit_price=errors.decimal(
            data, "overagePricePerUnit", f"{prefix}overagePricePerUnit"
        ),
    )
    spec = RuleSpec(
        rule=rule,
        reset_interval=reset.lower(),
        is_enabled=is_enabled,
        credit_denomination=denomination,
        credits_per_unit=errors.decimal(data, "creditsPerUnit", f"{prefix}creditsPerUnit"),
    )
    if own and errors.fields:
        raise ValidationFailed(fields=errors.fields)
    return spec


# -- plan input ---------------------------------------------------------------------------


# These JSONFields are read by hand (validate_* and parse_rule). DRF checks that their
# value dumps as JSON; the exact parser hands numbers over as Decimals, which only
# Django's encoder dumps.
class PlanFieldsInput(serializers.Serializer):
    key = StrictCharField(max_length=KEY_MAX_LENGTH, trim_whitespace=False, required=False)
    name = StrictCharField(max_length=150, required=False)
    description = StrictCharField(
        max_length=10_000, required=False, allow_blank=True, allow_null=True
    )
    priceAmount = documented(
        serializers.JSONField(required=False, encoder=DjangoJSONEncoder),
        {"type": "string", "format": "decimal", "pattern": decimal_pattern(12, 12, minimum=0)},
    )
    currency = documented(
        StrictCharField(max_length=3, min_length=3, required=False),
        {"type": "string", "pattern": "^[A-Za-z]{3}$", "description": "ISO 4217, any case"},
    )
    interval = documented(
        StrictCharField(required=False),
        {"type": "string", "enum": list(INTERVALS), "description": "any case"},
    )
    intervalMonths = documented(
        serializers.JSONField(required=False, encoder=DjangoJSONEncoder),
        {"type": "integer", "enum": Plan.Interval.values},
    )
    billingTiming = documented(
        StrictCharField(required=False),
        {"type": "string", "enum": ["IN_ADVANCE", "IN_ARREARS"], "description": "any case"},
    )
    metadata = MetadataField(required=False)

    def validate_priceAmount(self, value: Any) -> Decimal:
        try:
            return parse_decimal(value)
        except ValueError:
            raise serializers.ValidationError("Must be a number (or a decimal string).") from None

    def validate_interval(self, value: str) -> int:
        if value.lower() not in INTERVALS:
            raise serializers.ValidationError("monthly or annual.")
        return INTERVALS[value.lower()]

    def validate_intervalMonths(self, value: Any) -> int:
        if isinstance(value, bool) or value not in Plan.Interval.values:
            raise serializers.ValidationError("1 (monthly) or 12 (annual).")
        return int(value)

    def validate_billingTiming(self, value: str) -> str:
        if value.lower() not in Plan.BillingTiming.values:
            raise serializers.ValidationError("IN_ADVANCE or IN_ARREARS.")
        return value.lower()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if (
            "interval" in attrs
            and "intervalMonths" in attrs
            and attrs["interval"] != attrs["intervalMonths"]
        ):
            raise serializers.ValidationError({"interval": ["Disagrees with intervalMonths."]})
        return attrs

    def service_fields(self) -> dict[str, Any]:
        data = self.validated_data
        out: dict[str, Any] = {}
        for api, field in (
            ("key", "key"),
            ("name", "name"),
            ("description", "description"),
            ("priceAmount", "price_amount"),
            ("currency", "currency"),
            ("billingTiming", "billing_timing"),
            ("metadata", "metadata"),
        ):
            if api in data:
                out[field] = data[api]
        if out.get("description", "") is None:
            out["description"] = ""
        interval = data.get("intervalMonths", data.get("interval"))
        if interval is not None:
            out["interval_months"] = interval
        return out


class PlanCreateInput(PlanFieldsInput):
    key = StrictCharField(max_length=KEY_MAX_LENGTH, trim_whitespace=False)
    name = StrictCharField(max_length=150)
    features = documented(
        serializers.JSONField(required=False, encoder=DjangoJSONEncoder),
        {
            "type": "array",
            "items": {"$ref": "#/components/schemas/PlansRuleInputRequest"},
            "description": "one rule per feature, each naming its featureKey",
        },
    )


def _features_of(environment: Any, raw: Any) -> list[tuple[Feature, RuleSpec]]:
    """The ``features`` list of a create body, resolved and parsed (400 with every problem)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValidationFailed(fields={"features": ["Must be a list of feature rules."]})
    errors = _Errors()
    keys = [item.get("featureKey") for item in raw if isinstance(item, dict)]
    known = {
        feature.key: feature
        for feature in features_for(environment).filter(
            key__in=[key for key in keys if isinstance(key, str)]
        )
    }
    out = []
    for index, item in enumerate(raw):
        prefix = f"features.{index}."
        spec = parse_rule(item, prefix=prefix, errors=errors)
        key = item.get("featureKey") if isinstance(item, dict) else None
        feature = known.get(key) if isinstance(key, str) else None
        if feature is None and isinstance(item, dict):
            errors.add(f"{prefix}featureKey", "No such feature." if key else "Required.")
        if feature is not None:
            out.append((feature, spec))
    if errors.fields:
        raise ValidationFailed(fields=errors.fields)
    return out


# -- schema (what the views return; see rendering.py) -------------------------------------


_PRICING = inline_serializer(
    "PlansPricing",
    fields={
        "model": serializers.CharField(
            help_text="included, per_unit, graduated, volume or package"
        ),
        "pricePerUnit": decimal(allow_null=True),
        "packageSize": serializers.IntegerField(allow_null=True),
        "tiers": serializers.ListField(
            child=serializers.DictField(),
            help_text="[{upTo (null: unbounded), pricePerUnit, flatFee}], decimal strings",
        ),
        "unitLabel": serializers.CharField(help_text="The feature's unit label"),
        "maxUsage": decimal(allow_null=True),
        "resetInterval": serializers.ChoiceField(choices=PlanFeatureRule.ResetInterval.values),
        "resetMode": serializers.ChoiceField(
            choices=["reset", "accumulate"], help_text="accumulate: resetInterval never"
        ),
        "overagePricePerUnit": decimal(allow_null=True),
        "creditDenomination": serializers.CharField(allow_null=True),
        "creditsPerUnit": decimal(allow_null=True),
    },
)
_RULE = inline_serializer(
    "PlansFeatureRule",
    fields={
        "id": serializers.UUIDField(help_text="The feature's id"),
        "key": serializers.CharField(),
        "featureKey": serializers.CharField(),
        "name": serializers.CharField(),
        "description": serializers.CharField(),
        "isEnabled": serializers.BooleanField(),
        "pricingType": serializers.CharField(
            help_text="included, usage_based, graduated, volume or package"
        ),
        "pricing": _PRICING,
        "summary": serializers.CharField(help_text='Readable, e.g. "$0.002 per token"'),
        "ruleId": serializers.UUIDField(),
        "modifiedAt": serializers.DateTimeField(),
    },
)
_PLAN = inline_serializer(
    "PlansPlan",
    fields={
        "id": serializers.UUIDField(),
        "key": serializers.CharField(),
        "name": serializers.CharField(),
        "description": serializers.CharField(),
        "priceAmount": decimal(help_text="Base fee per period, in currency major units"),
        "currency": serializers.CharField(),
        "interval": serializers.ChoiceField(choices=[i.name.lower() for i in Plan.Interval]),
        "intervalMonths": serializers.IntegerField(help_text="1 or 12"),
        "billingTiming": serializers.ChoiceField(
            choices=[t.upper() for t in Plan.BillingTiming.values]
        ),
        "status": serializers.ChoiceField(choices=[s.upper() for s in Plan.Status.values]),
        "metadata": serializers.DictField(),
        "summary": serializers.CharField(help_text='Readable price, e.g. "$49.00 per month"'),
        "features": many(_RULE),
        "creditAllocations": serializers.ListField(
            child=serializers.DictField(), help_text="Empty until the credits app fills it"
        ),
        "activatedAt": serializers.DateTimeField(allow_null=True),
        "archivedAt": serializers.DateTimeField(allow_null=True),
        "createdAt": serializers.DateTimeField(),
        "modifiedAt": serializers.DateTimeField(),
    },
)


_NUMBER = "A number or a decimal string"
_AMOUNT_PATTERN = decimal_pattern(12, 12, minimum=0)
_RULE_INPUT = inline_serializer(
    "PlansRuleInput",
    fields={
        "featureKey": serializers.CharField(required=False, help_text="Must match the path"),
        "model": serializers.ChoiceField(
            choices=[*pricing.PricingModel, *MODEL_ALIASES],
            required=False,
            help_text="included (default), per_unit (alias usage), graduated, volume, package",
        ),
        "pricePerUnit": decimal(
            required=False, allow_null=True, min_value=Decimal(0), help_text=_NUMBER
        ),
        "packageSize": serializers.IntegerField(required=False),
        "tiers": documented(
            serializers.ListField(child=serializers.DictField(), required=False),
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "upTo": {
                            "type": "string",
                            "pattern": f"^(?:{_AMOUNT_PATTERN[1:-1]}|inf)$",
                            "nullable": True,
                        },
                        "pricePerUnit": {"type": "string", "pattern": _AMOUNT_PATTERN},
                        "flatFee": {"type": "string", "pattern": _AMOUNT_PATTERN},
                    },
                    "required": ["pricePerUnit"],
                    "additionalProperties": False,
                },
                "description": '[{upTo (null or "inf" for the last), pricePerUnit, flatFee?}]',
            },
        ),
        "maxUsage": decimal(
            required=False, allow_null=True, min_value=Decimal("1e-12"), help_text=_NUMBER
        ),
        "resetInterval": serializers.ChoiceField(
            choices=PlanFeatureRule.ResetInterval.values,
            required=False,
            help_text="billing_period (default), day, week, month or never",
        ),
        "overagePricePerUnit": decimal(
            required=False, allow_null=True, min_value=Decimal(0), help_text=_NUMBER
        ),
        "creditDenomination": serializers.CharField(
            required=False, allow_blank=True, allow_null=True
        ),
        "creditsPerUnit": decimal(
            required=False, allow_null=True, min_value=Decimal("1e-12"), help_text=_NUMBER
        ),
        "isEnabled": serializers.BooleanField(required=False, default=True),
    },
)
# parse_rule refuses fields it does not know (with a hint for likely misspellings).
type(_RULE_INPUT).refuses_unknown_fields = True  # type: ignore[attr-defined]
_PLAN_REF = OpenApiParameter("plan_ref", str, OpenApiParameter.PATH, description="A plan id or key")
_FEATURE_KEY = OpenApiParameter("feature_key", str, OpenApiParameter.PATH)


# -- views --------------------------------------------------------------------------------


def _plan(request: Request, plan_ref: str) -> Plan:
    return plan_get(environment_of(request), plan_ref, rules=True)


def _fresh(request: Request, plan: Plan) -> dict[str, Any]:
    return render_plan(plan_get(environment_of(request), str(plan.pk), rules=True))


class PlanListCreate(APIView):
    required_scopes = {"GET": S.USAGE_READ, "HEAD": S.USAGE_READ, "POST": S.USAGE_WRITE}

    @extend_schema(
        summary="List plans with their pricing (active ones unless ?status= says otherwise)",
        operation_id="plans_list",
        request=None,
        responses={200: page("PlansPlanPage", _PLAN)},
        parameters=[
            OpenApiParameter("status", str, enum=["ACTIVE", "DRAFT", "ARCHIVED", "ALL"]),
            *PAGE_PARAMETERS,
        ],
    )
    def get(self, request: Request) -> Response:
        plans = plans_list(environment_of(request), request.query_params.get("status"))
        return Response(paginate_newest_first(plans, request, render_plan))

    @extend_schema(
        summary="Create a draft plan, optionally with its features",
        description="`features` is a list of pricing rules, each with its `featureKey`.",
        request=PlanCreateInput,
        responses={201: _PLAN},
    )
    def post(self, request: Request) -> Response:
        body = PlanCreateInput(data=request.data)
        body.is_valid(raise_exception=True)
        environment = environment_of(request)
        plan = plan_create(
            environment=environment,
            features=_features_of(environment, body.validated_data.get("features")),
            actor=Actor.from_request(request),
            **body.service_fields(),
        )
        return Response(_fresh(request, plan), status=status.HTTP_201_CREATED)


class PlanDetail(APIView):
    required_scopes = {
        "GET": S.USAGE_READ,
        "HEAD": S.USAGE_READ,
        "PATCH": S.USAGE_WRITE,
        "DELETE": S.USAGE_WRITE,
    }

    @extend_schema(
        summary="Get one plan by id or key",
        request=None,
        responses={200: _PLAN},
        parameters=[_PLAN_REF],
    )
    def get(self, request: Request, plan_ref: str) -> Response:
        return Response(render_plan(_plan(request, plan_ref)))

    @extend_schema(
        summary="Change a plan (commercial terms only while it is a draft)",
        request=PlanFieldsInput,
        responses={200: _PLAN},
        parameters=[_PLAN_REF],
    )
    def patch(self, request: Request, plan_ref: str) -> Response:
        plan = _plan(request, plan_ref)
        body = PlanFieldsInput(data=request.data)
        body.is_valid(raise_exception=True)
        plan = plan_update(plan=plan, actor=Actor.from_request(request), **body.service_fields())
        return Response(_fresh(request, plan))

    @extend_schema(
        summary="Delete a draft plan", request=None, responses={204: None}, parameters=[_PLAN_REF]
    )
    def delete(self, request: Request, plan_ref: str) -> Response:
        plan_delete(plan=_plan(request, plan_ref), actor=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class PlanActivate(APIView):
    required_scopes = S.USAGE_WRITE

    @extend_schema(
        summary="Activate a draft plan (needs at least one feature)",
        request=None,
        responses={200: _PLAN},
        parameters=[_PLAN_REF],
    )
    def post(self, request: Request, plan_ref: str) -> Response:
        plan = plan_activate(plan=_plan(request, plan_ref), actor=Actor.from_request(request))
        return Response(_fresh(request, plan))


class PlanArchive(APIView):
    required_scopes = S.USAGE_WRITE

    @extend_schema(
        summary="Archive a plan: no new subscriptions",
        request=None,
        responses={200: _PLAN},
        parameters=[_PLAN_REF],
    )
    def post(self, request: Request, plan_ref: str) -> Response:
        plan = plan_archive(plan=_plan(request, plan_ref), actor=Actor.from_request(request))
        return Response(_fresh(request, plan))


class PlanFeatures(APIView):
    required_scopes = S.USAGE_READ

    @extend_schema(
        summary="The plan's features and their pricing rules",
        operation_id="plan_features_list",
        request=None,
        responses={200: page("PlansFeatureRulePage", _RULE)},
        parameters=[_PLAN_REF],
    )
    def get(self, request: Request, plan_ref: str) -> Response:
        plan = _plan(request, plan_ref)
        items = [render_rule(rule, plan.currency) for rule in plan_rules(plan)]
        return Response({"items": items, "nextCursor": None, "hasMore": False})


class PlanFeatureDetail(APIView):
    required_scopes = {
        "GET": S.USAGE_READ,
        "HEAD": S.USAGE_READ,
        "PUT": S.USAGE_WRITE,
        "DELETE": S.USAGE_WRITE,
    }

    @extend_schema(
        summary="One feature's rule on a plan",
        request=None,
        responses={200: _RULE},
        parameters=[_PLAN_REF, _FEATURE_KEY],
    )
    def get(self, request: Request, plan_ref: str, feature_key: str) -> Response:
        plan = _plan(request, plan_ref)
        for rule in plan_rules(plan):
            if rule.feature.key == feature_key:
                return Response(render_rule(rule, plan.currency))
        raise NotFound("This feature is not on the plan.", code=plan_errors.FEATURE_NOT_ON_PLAN)

    @extend_schema(
        summary="Link a feature to a draft plan with its rule (or replace it)",
        request=_RULE_INPUT,
        responses={200: _RULE},
        parameters=[_PLAN_REF, _FEATURE_KEY],
    )
    def put(self, request: Request, plan_ref: str, feature_key: str) -> Response:
        environment = environment_of(request)
        plan = plan_get(environment, plan_ref)
        feature = feature_get(environment, feature_key)
        data = request.data
        if isinstance(data, dict) and data.get("featureKey") not in (None, feature_key):
            raise ValidationFailed(fields={"featureKey": ["Disagrees with the path."]})
        rule = plan_feature_set(
            plan=plan, feature=feature, spec=parse_rule(data), actor=Actor.from_request(request)
        )
        rule.feature = feature
        return Response(render_rule(rule, plan.currency))

    @extend_schema(
        summary="Unlink a feature from a draft plan",
        request=None,
        responses={204: None},
        parameters=[_PLAN_REF, _FEATURE_KEY],
    )
    def delete(self, request: Request, plan_ref: str, feature_key: str) -> Response:
        environment = environment_of(request)
        plan = plan_get(environment, plan_ref)
        feature = feature_get(environment, feature_key)
        plan_feature_remove(plan=plan, feature=feature, actor=Actor.from_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
