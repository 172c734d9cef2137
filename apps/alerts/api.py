"""API: alert rules (``GET/POST /api/alerts``, ``GET/PATCH/DELETE /api/alerts/{id}``),
fired alerts and their acknowledgement, webhook endpoints (create, list, rotate, test,
deliveries, replay). Scopes ``alerts.read`` / ``alerts.write``; the environment is the
key's."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.apikeys import scopes as S
from apps.apikeys.authentication import request_key
from apps.apikeys.idempotency import APIView
from apps.apikeys.models import ApiKey
from apps.core.api.fields import StrictCharField
from apps.core.api.pagination import paginate_newest_first
from apps.core.api.query import query_bool, query_choice
from apps.core.api.schema import PAGE_PARAMETERS, decimal, page
from apps.core.errors import ValidationFailed
from apps.core.money import decimal_str
from apps.core.tenancy import scoped
from apps.customers.models import Customer
from apps.features.models import Feature

from . import outbound, selectors, services
from .models import (
    AlertRule,
    Channel,
    Delivery,
    DeliveryAttempt,
    Metric,
    Notification,
    Operator,
    Scope,
    Severity,
    WebhookEndpoint,
    Window,
)

READ_WRITE = {
    "GET": S.ALERTS_READ,
    "POST": S.ALERTS_WRITE,
    "PATCH": S.ALERTS_WRITE,
    "DELETE": S.ALERTS_WRITE,
}
SPIKE_WINDOWS = {Window.HOUR, Window.DAY, Window.WEEK, Window.MONTH}
MAX_VALUE = Decimal("1e15")


# -- Rules ------------------------------------------------------------------------------


def render_rule(rule: AlertRule) -> dict[str, Any]:
    return {
        "id": rule.pk,
        "name": rule.name,
        "metric": rule.metric,
        "scope": rule.scope,
        "window": rule.window,
        "operator": rule.operator,
        "thresholds": rule.thresholds,
        "channels": rule.channels,
        "enabled": rule.enabled,
        "recoveryMargin": decimal_str(rule.recovery_margin),
        "renotifyMinutes": rule.renotify_minutes,
        "customerReferenceId": rule.customer.reference_id if rule.customer else None,
        "featureKey": rule.feature.key if rule.feature else None,
        "model": rule.model or None,
        "apiKeyId": rule.api_key_id,
        "spikeFloor": decimal_str(rule.spike_floor_usd),
        "spikeMinWindows": rule.spike_min_windows,
        "isDefault": bool(rule.default_key),
        "createdAt": rule.created_at,
        "updatedAt": rule.updated_at,
    }


_THRESHOLD = inline_serializer(
    "AlertThreshold",
    fields={
        "value": serializers.CharField(help_text="decimal string, in the metric's unit"),
        "severity": serializers.ChoiceField(choices=Severity.choices),
    },
)
_RULE = inline_serializer(
    "AlertRule",
    fields={
        "id": serializers.UUIDField(),
        "name": serializers.CharField(),
        "metric": serializers.ChoiceField(choices=Metric.choices),
        "scope": serializers.ChoiceField(choices=Scope.choices),
        "window": serializers.ChoiceField(choices=Window.choices),
        "operator": serializers.ChoiceField(choices=Operator.choices),
        "thresholds": serializers.ListField(child=_THRESHOLD),
        "channels": serializers.ListField(child=serializers.ChoiceField(choices=Channel.choices)),
        "enabled": serializers.BooleanField(),
        "recoveryMargin": decimal(),
        "renotifyMinutes": serializers.IntegerField(allow_null=True),
        "customerReferenceId": serializers.CharField(allow_null=True),
        "featureKey": serializers.CharField(allow_null=True),
        "model": serializers.CharField(allow_null=True),
        "apiKeyId": serializers.UUIDField(allow_null=True),
        "spikeFloor": decimal(help_text="USD"),
        "spikeMinWindows": serializers.IntegerField(),
        "isDefault": serializers.BooleanField(),
        "createdAt": serializers.DateTimeField(),
        "updatedAt": serializers.DateTimeField(),
    },
)
_RULE_LIST = page("AlertRuleList", _RULE)


def _value(**kwargs: Any) -> serializers.DecimalField:
    # 16 whole digits: MAX_VALUE itself fits.
    return serializers.DecimalField(
        max_digits=28, decimal_places=12, min_value=-MAX_VALUE, max_value=MAX_VALUE, **kwargs
    )


def _stored_amount() -> serializers.DecimalField:
    """An amount kept in a numeric(24, 12) column: at most 12 whole digits."""
    return serializers.DecimalField(
        max_digits=24, decimal_places=12, min_value=Decimal(0), required=False
    )


class StrictBooleanField(serializers.BooleanField):
    """Only JSON ``true``/``false`` (DRF's own also takes 1, "yes", "on"...)."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class ThresholdInput(serializers.Serializer):
    value = _value()
    severity = serializers.ChoiceField(choices=Severity.choices, default=Severity.WARNING)


class RuleInput(serializers.Serializer):
    name = StrictCharField(max_length=200)
    metric = serializers.ChoiceField(choices=Metric.choices)
    scope = serializers.ChoiceField(choices=Scope.choices, required=False)
    window = serializers.ChoiceField(choices=Window.choices, required=False)
    operator = serializers.ChoiceField(choices=Operator.choices, required=False)
    thresholds = serializers.ListField(
        child=ThresholdInput(), min_length=1, max_length=10, required=False
    )
    threshold = _value(required=False, help_text="one threshold (instead of thresholds)")
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=Channel.choices), required=False, max_length=3
    )
    enabled = StrictBooleanField(required=False)
    recoveryMargin = _stored_amount()
    renotifyMinutes = serializers.IntegerField(
        min_value=1, max_value=525600, required=False, allow_null=True
    )
    customerReferenceId = StrictCharField(max_length=255, required=False, allow_null=True)
    featureKey = StrictCharField(max_length=128, required=False, allow_null=True)
    model = StrictCharField(max_length=200, required=False, allow_null=True)
    apiKeyId = serializers.UUIDField(required=False, allow_null=True)
    spikeFloor = _stored_amount()
    spikeMinWindows = serializers.IntegerField(min_value=1, max_value=28, required=False)


_PLAIN = {
    "name": "name",
    "metric": "metric",
    "scope": "scope",
    "window": "window",
    "operator": "operator",
    "channels": "channels",
    "enabled": "enabled",
    "recoveryMargin": "recovery_margin",
    "renotifyMinutes": "renotify_minutes",
    "spikeFloor": "spike_floor_usd",
    "spikeMinWindows": "spike_min_windows",
}


def _subject_fields(env: Any, data: dict[str, Any]) -> dict[str, Any]:
    """The body's subject restriction, looked up in the key's environment (400 if absent)."""
    out: dict[str, Any] = {}
    lookups = [
        ("customerReferenceId", "customer", Customer, "reference_id"),
        ("featureKey", "feature", Feature, "key"),
        ("apiKeyId", "api_key", ApiKey, "pk"),
    ]
    for name, field, model, column in lookups:
        if name not in data:
            continue
        if data[name] is None:
            out[field] = None
            continue
        found = scoped(model, env).filter(**{column: data[name]}).first()
        if found is None:
            raise ValidationFailed(fields={name: ["No such object in this environment."]})
        out[field] = found
    if "model" in data:
        out["model"] = data["model"] or ""
    return out


def _check_rule(rule: dict[str, Any]) -> None:
    metric, scope, window = rule["metric"], rule["scope"], rule["window"]
    if metric == Metric.KEY_BUDGET_PERCENT:
        if scope != Scope.API_KEY or window != Window.BUDGET_PERIOD:
            raise ValidationFailed(
                fields={"metric": ["key_budget_percent needs scope api_key, window budget_period."]}
            )
    elif window == Window.BUDGET_PERIOD:
        raise ValidationFailed(fields={"window": ["budget_period is for key_budget_percent."]})
    if metric == Metric.COST_SPIKE and window not in SPIKE_WINDOWS:
        raise ValidationFailed(fields={"window": ["A cost spike needs a rolling window."]})
    if not rule["thresholds"]:
        raise ValidationFailed(fields={"thresholds": ["Give at least one threshold."]})


def rule_fields(env: Any, data: dict[str, Any], base: AlertRule | None) -> dict[str, Any]:
    """Model fields from a validated body (a PATCH's are merged onto ``base``)."""
    if "threshold" in data and "thresholds" in data:
        raise ValidationFailed(fields={"threshold": ["Give threshold or thresholds, not both."]})
    fields = {_PLAIN[name]: value for name, value in data.items() if name in _PLAIN}
    if "threshold" in data:
        fields["thresholds"] = services.threshold_list([{"value": data["threshold"]}])
    elif "thresholds" in data:
        fields["thresholds"] = services.threshold_list(data["thresholds"])
    if "channels" in fields:
        fields["channels"] = sorted(set(fields["channels"]))
    fields.update(_subject_fields(env, data))
    merged = {
        "metric": fields.get("metric", base.metric if base else None),
        "scope": fields.get("scope", base.scope if base else Scope.ENVIRONMENT),
        "window": fields.get("window", base.window if base else Window.DAY),
        "thresholds": fields.get("thresholds", base.thresholds if base else []),
    }
    if base is None and merged["metric"] == Metric.KEY_BUDGET_PERCENT:
        merged["scope"] = fields.setdefault("scope", Scope.API_KEY)
        merged["window"] = fields.setdefault("window", Window.BUDGET_PERIOD)
    _check_rule(merged)
    return fields


class AlertList(APIView):
    required_scopes = READ_WRITE

    @extend_schema(
        summary="List alert rules (the environment's defaults are created on first use)",
        operation_id="alerts_list",
        request=None,
        parameters=PAGE_PARAMETERS,
        responses={200: _RULE_LIST},
    )
    def get(self, request: Request) -> Response:
        env = request_key(request).environment
        services.defaults_ensure(environment=env)
        return Response(paginate_newest_first(selectors.rules_of(env), request, render_rule))

    @extend_schema(summary="Create an alert rule", request=RuleInput, responses={201: _RULE})
    def post(self, request: Request) -> Response:
        env = request_key(request).environment
        body = RuleInput(data=request.data)
        body.is_valid(raise_exception=True)
        rule = services.rule_create(environment=env, **rule_fields(env, body.validated_data, None))
        return Response(render_rule(rule), status=status.HTTP_201_CREATED)


class AlertDetail(APIView):
    required_scopes = READ_WRITE

    @extend_schema(summary="Get an alert rule", request=None, responses={200: _RULE})
    def get(self, request: Request, alert_id: str) -> Response:
        env = request_key(request).environment
        return Response(render_rule(selectors.rule_get(env, alert_id)))

    @extend_schema(
        summary="Change an alert rule (enabled: false turns it off)",
        request=RuleInput(partial=True),
        responses={200: _RULE},
    )
    def patch(self, request: Request, alert_id: str) -> Response:
        env = request_key(request).environment
        rule = selectors.rule_get(env, alert_id)
        body = RuleInput(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        changes = rule_fields(env, body.validated_data, rule)
        return Response(render_rule(services.rule_update(rule=rule, changes=changes)))

    @extend_schema(summary="Delete an alert rule", request=None, responses={204: None})
    def delete(self, request: Request, alert_id: str) -> Response:
        env = request_key(request).environment
        services.rule_delete(rule=selectors.rule_get(env, alert_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# -- Fired alerts -----------------------------------------------------------------------


def render_notification(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.pk,
        "type": notification.kind,
        "severity": notification.severity,
        "metric": notification.metric,
        "ruleId": notification.rule_id,
        "payload": notification.payload,
        "createdAt": notification.created_at,
        "acknowledgedAt": notification.acknowledged_at,
        "acknowledgedBy": notification.acknowledged_by or None,
    }


_NOTIFICATION = inline_serializer(
    "FiredAlert",
    fields={
        "id": serializers.UUIDField(),
        "type": serializers.ChoiceField(choices=Notification.Kind.choices),
        "severity": serializers.ChoiceField(choices=Severity.choices),
        "metric": serializers.ChoiceField(choices=Metric.choices),
        "ruleId": serializers.UUIDField(allow_null=True),
        "payload": serializers.JSONField(help_text="the message every channel delivered"),
        "createdAt": serializers.DateTimeField(),
        "acknowledgedAt": serializers.DateTimeField(allow_null=True),
        "acknowledgedBy": serializers.CharField(allow_null=True),
    },
)


class FiredAlertList(APIView):
    required_scopes = READ_WRITE

    @extend_schema(
        summary="Fired alerts, newest first (the dashboard inbox)",
        request=None,
        parameters=[
            OpenApiParameter("unacknowledged", bool, description="only those not acknowledged"),
            OpenApiParameter("type", str, enum=Notification.Kind.values),
            OpenApiParameter("severity", str, enum=Severity.values),
            *PAGE_PARAMETERS,
        ],
        responses={200: page("FiredAlertList", _NOTIFICATION)},
    )
    def get(self, request: Request) -> Response:
        env = request_key(request).environment
        rows = selectors.notifications_of(
            env,
            unacknowledged=bool(query_bool(request.query_params, "unacknowledged")),
            kind=query_choice(request.query_params, "type", Notification.Kind.values),
            severity=query_choice(request.query_params, "severity", Severity.values),
        )
        return Response(paginate_newest_first(rows, request, render_notification))


class FiredAlertAcknowledge(APIView):
    required_scopes = READ_WRITE

    @extend_schema(
        summary="Acknowledge a fired alert (idempotent)",
        request=None,
        responses={200: _NOTIFICATION},
    )
    def post(self, request: Request, notification_id: str) -> Response:
        key = request_key(request)
        notification = selectors.notification_get(key.environment, notification_id)
        notification = services.notification_acknowledge(
            notification=notification, by=f"key:{key.pk}"
        )
        return Response(render_notification(notification))


# -- Webhook endpoints ------------------------------------------------------------------


def render_endpoint(endpoint: WebhookEndpoint, secret: str | None = None) -> dict[str, Any]:
    out = {
        "id": endpoint.pk,
        "url": endpoint.url,
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "disabledReason": endpoint.disabled_reason or None,
        "secretHint": endpoint.secret_hint,
        "previousSecretExpiresAt": endpoint.previous_expires_at
        if endpoint.previous_secret_encrypted
        else None,
        "consecutiveFailures": endpoint.consecutive_failures,
        "createdAt": endpoint.created_at,
    }
    if secret is not None:
        out["secret"] = secret
    return out


_ENDPOINT_FIELDS: dict[str, serializers.Field] = {
    "id": serializers.UUIDField(),
    "url": serializers.URLField(),
    "description": serializers.CharField(),
    "enabled": serializers.BooleanField(),
    "disabledReason": serializers.CharField(allow_null=True),
    "secretHint": serializers.CharField(help_text="the secret's last characters"),
    "previousSecretExpiresAt": serializers.DateTimeField(
        allow_null=True, help_text="until then the previous secret signs too"
    ),
    "consecutiveFailures": serializers.IntegerField(),
    "createdAt": serializers.DateTimeField(),
}
_ENDPOINT = inline_serializer("AlertWebhookEndpoint", fields=_ENDPOINT_FIELDS)
_ENDPOINT_WITH_SECRET = inline_serializer(
    "AlertWebhookEndpointWithSecret",
    fields={
        **_ENDPOINT_FIELDS,
        "secret": serializers.CharField(help_text="whsec_...: shown once, keep it"),
    },
)


class EndpointInput(serializers.Serializer):
    url = serializers.URLField(max_length=2000)
    description = StrictCharField(max_length=200, required=False, allow_blank=True)
    enabled = StrictBooleanField(required=False)

    def validate_url(self, value: str) -> str:
        try:
            outbound.check_syntax(value)
        except outbound.UnsafeUrl as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value


class EndpointList(APIView):
    required_scopes = READ_WRITE

    @extend_schema(
        summary="List alert webhook endpoints",
        operation_id="alert_webhooks_list",
        request=None,
        parameters=PAGE_PARAMETERS,
        responses={200: page("AlertWebhookEndpointList", _ENDPOINT)},
    )
    def get(self, request: Request) -> Response:
        env = request_key(request).environment
        return Response(
            paginate_newest_first(selectors.endpoints_of(env), request, render_endpoint)
        )

    @extend_schema(
        summary="Add a webhook endpoint (its signing secret is in this answer only)",
        request=EndpointInput,
        responses={201: _ENDPOINT_WITH_SECRET},
    )
    def post(self, request: Request) -> Response:
        body = EndpointInput(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        made = services.endpoint_create(
            environment=request_key(request).environment,
            url=data["url"],
            description=data.get("description", ""),
        )
        return Response(render_endpoint(made.endpoint, made.secret), status=status.HTTP_201_CREATED)


class EndpointDetail(APIView):
    required_scopes = READ_WRITE

    @extend_schema(summary="Get a webhook endpoint", request=None, responses={200: _ENDPOINT})
    def get(self, request: Request, endpoint_id: str) -> Response:
        env = request_key(request).environment
        return Response(render_endpoint(selectors.endpoint_get(env, endpoint_id)))

    @extend_schema(
        summary="Change a webhook endpoint (enabled: true re-enables a disabled one)",
        request=EndpointInput(partial=True),
        responses={200: _ENDPOINT},
    )
    def patch(self, request: Request, endpoint_id: str) -> Response:
        env = request_key(request).environment
        endpoint = selectors.endpoint_get(env, endpoint_id)
        body = EndpointInput(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        endpoint = services.endpoint_update(endpoint=endpoint, changes=dict(body.validated_data))
        return Response(render_endpoint(endpoint))

    @extend_schema(summary="Delete a webhook endpoint", request=None, responses={204: None})
    def delete(self, request: Request, endpoint_id: str) -> Response:
        env = request_key(request).environment
        services.endpoint_delete(endpoint=selectors.endpoint_get(env, endpoint_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointRotate(APIView):
    required_scopes = READ_WRITE

    @extend_schema(
        summary="Rotate the signing secret (the old one also signs for 24 hours)",
        request=None,
        responses={200: _ENDPOINT_WITH_SECRET},
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        env = request_key(request).environment
        made = services.endpoint_rotate(endpoint=selectors.endpoint_get(env, endpoint_id))
        return Response(render_endpoint(made.endpoint, made.secret))


def render_delivery(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.pk,
        "endpointId": delivery.endpoint_id,
        "firedAlertId": delivery.notification_id,
        "webhookId": delivery.message_id,
        "type": delivery.payload.get("type"),
        "status": delivery.status,
        "attempts": delivery.attempts,
        "nextAttemptAt": delivery.next_attempt_at
        if delivery.status == Delivery.Status.PENDING
        else None,
        "lastError": delivery.last_error or None,
        "createdAt": delivery.created_at,
        "deliveredAt": delivery.delivered_at,
        "log": [render_attempt(a) for a in delivery.log.all()],
    }


def render_attempt(attempt: DeliveryAttempt) -> dict[str, Any]:
    return {
        "attemptedAt": attempt.attempted_at,
        "statusCode": attempt.status_code,
        "latencyMs": attempt.latency_ms,
        "responseSnippet": attempt.response_snippet or None,
        "error": attempt.error or None,
        "succeeded": attempt.succeeded,
    }


_ATTEMPT = inline_serializer(
    "AlertDeliveryAttempt",
    fields={
        "attemptedAt": serializers.DateTimeField(),
        "statusCode": serializers.IntegerField(allow_null=True),
        "latencyMs": serializers.IntegerField(),
        "responseSnippet": serializers.CharField(allow_null=True),
        "error": serializers.CharField(allow_null=True),
        "succeeded": serializers.BooleanField(),
    },
)
_DELIVERY = inline_serializer(
    "AlertDelivery",
    fields={
        "id": serializers.UUIDField(),
        "endpointId": serializers.UUIDField(allow_null=True),
        "firedAlertId": serializers.UUIDField(allow_null=True),
        "webhookId": serializers.CharField(help_text="the webhook-id header, stable on retries"),
        "type": serializers.CharField(),
        "status": serializers.ChoiceField(choices=Delivery.Status.choices),
        "attempts": serializers.IntegerField(),
        "nextAttemptAt": serializers.DateTimeField(allow_null=True),
        "lastError": serializers.CharField(allow_null=True),
        "createdAt": serializers.DateTimeField(),
        "deliveredAt": serializers.DateTimeField(allow_null=True),
        "log": serializers.ListField(child=_ATTEMPT),
    },
)


class EndpointTest(APIView):
    required_scopes = READ_WRITE

    @extend_schema(
        summary="Send an alert.test message to the endpoint (queued; see its deliveries)",
        request=None,
        responses={202: _DELIVERY},
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        env = request_key(request).environment
        delivery = services.endpoint_test(endpoint=selectors.endpoint_get(env, endpoint_id))
        return Response(render_delivery(delivery), status=status.HTTP_202_ACCEPTED)


class EndpointDeliveries(APIView):
    required_scopes = READ_WRITE

    @extend_schema(
        summary="The endpoint's deliveries with every attempt, newest first",
        request=None,
        parameters=PAGE_PARAMETERS,
        responses={200: page("AlertDeliveryList", _DELIVERY)},
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        env = request_key(request).environment
        endpoint = selectors.endpoint_get(env, endpoint_id)
        rows = selectors.deliveries_of(env, endpoint)
        return Response(paginate_newest_first(rows, request, render_delivery))


class DeliveryReplay(APIView):
    required_scopes = READ_WRITE

    @extend_schema(
        summary="Send a delivered or failed webhook message again (same webhook-id)",
        request=None,
        responses={202: _DELIVERY},
    )
    def post(self, request: Request, delivery_id: str) -> Response:
        env = request_key(request).environment
        delivery = services.delivery_replay(delivery=selectors.delivery_get(env, delivery_id))
        return Response(render_delivery(delivery), status=status.HTTP_202_ACCEPTED)
