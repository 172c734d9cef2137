"""The OpenAPI schema describes what the server does: schemathesis generates requests from
the schema served at /api/schema and sends them to a live test server.

One bounded, seeded run (the CLI's phases: examples, coverage, fuzzing) over every
operation except those that would call Stripe, split into ``SHARDS`` tests that each fuzz
every ``SHARDS``-th operation (in label order), so parallel workers share the run. Each
must end with no server error (5xx) and no schema violation: every status code
documented, every response conforming to its schema, no request the schema forbids
accepted, no request the schema allows refused.

Path parameters name real objects (a customer, a feature, a plan, a subscription, a pool,
keys, ...), made before the run, so the operations behind them are exercised, not only
their 404s.
"""

from __future__ import annotations

import collections
import datetime as dt
import fnmatch
import re
import time
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from django.utils import timezone
from schemathesis.engine import Status, events, from_schema
from schemathesis.openapi.checks import RejectedPositiveData

from apps.alerts.evaluator import rule_evaluate as alert_rule_evaluate
from apps.alerts.services import endpoint_create as alert_endpoint_create
from apps.alerts.services import rule_create as alert_rule_create
from apps.apikeys import scopes as S
from apps.apikeys.services import apikey_create
from apps.billing.models import Invoice
from apps.credits.models import CreditTransaction
from apps.credits.services import credit_grant, credit_pool_ensure, plan_allocation_set
from apps.customers.models import Customer
from apps.events.ingest import events_ingest
from apps.features.models import Feature
from apps.plans.models import Plan
from tests.billing.helpers import _small_catalog, per_unit, plan, subscribe
from tests.conftest import make_tenant
from tests.credits.conftest import make_model
from tests.plans.helpers import SYSTEM

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]

SEED = 20261206
# Examples per operation and phase: enough to reach every documented bound and format,
# few enough that the whole run takes a few minutes on two cores.
MAX_EXAMPLES = 10
# The operations can be dealt round-robin into this many tests (every operation in
# exactly one). One: several fuzz runs side by side, each with its own live server, left
# both CI workers waiting on each other's answers.
SHARDS = 1

# Routes that would call Stripe (no network beyond loopback in tests): each is tested
# against the Stripe peer in tests/stripe_sync and tests/stripe_import instead.
STRIPE_ROUTES = [
    # checks the key with Stripe and creates a webhook endpoint there
    ("POST", "/api/v1/client/stripe/connect"),
    # deletes the webhook endpoint in Stripe
    ("DELETE", "/api/v1/client/stripe"),
    # starts an import job that lists the connected account's Stripe objects
    ("POST", "/api/v1/client/stripe/import/start"),
    # pushes an invoice to Stripe for collection
    ("POST", "/api/v1/client/stripe/invoices/{invoice_id}/push"),
]


# Rules a JSON schema cannot state, so the schema-valid requests that break them are
# refused with a 400 and that is right. A refusal is let through only when every problem
# it names is one of these (field, message) pairs; None stands for any message, "*" in
# a message for any text, and the field "*" for any field.
BEYOND_THE_SCHEMA = {
    # A cursor is valid only as the server minted it: any other string is malformed.
    ("cursor", None),
    # Windows: `from` before `to`, at most so many days apart.
    ("to", "Must be later than 'from'."),
    ("from", "The window may span at most 400 days."),
    ("to", "Must be after from."),
    ("to", "At most 366 days after from."),
    # A number may carry more decimal places than the field keeps (the schema bounds it).
    ("targetMarginPct", "Ensure that there are no more than * digits*"),
    ("targetMarginPct", "Ensure that there are no more than * decimal places."),
    # A state the request cannot see: the credit model was archived by an earlier call.
    ("denomination", "This credit model is archived."),
    # A plan create's rules each name their feature; the rule component they share with the
    # PUT (where the path names the feature) leaves featureKey optional.
    ("featureKey", "Required."),
    # One parameter or field requires, or excludes, another.
    ("model", "Required with history=1."),
    ("phone", "Give phoneNumber or phone, not both."),
    ("rolloverCap", "Required with the capped policy."),
    ("rolloverCap", "Only with the capped policy."),
    ("planId", "Give one of planId, planKey."),
    ("changeToPlanId", "Give one of changeToPlanId, planId, planKey."),
    ("interval", "Disagrees with intervalMonths."),
    ("customerReferenceId", "A customer key needs a customer."),
    ("scopes", "Unknown scope: *"),  # obs_ scopes on a ck_ key, or the reverse
    ("creditModelId", "Give creditModelId or denomination."),
    ("creditPoolId", "Give creditPoolId, or customerReferenceId and denomination."),
    ("featureKey", "Give featureKey or featureId."),
    ("customerReferenceId", "Only customer keys name a customer."),
    ("outputCostPerMillion", "Required with custom rates."),
    ("inputCostPerMillion", "Required with custom rates."),
    ("creditDenomination", "Required with creditsPerUnit."),
    ("overagePricePerUnit", "An overage price needs a maxUsage cap to start from."),
    ("pricePerUnit", "Not used by the included model."),
    ("model", "Custom rates are for one model."),
    # Alert rules: a metric's scope and window, one threshold form, subjects that exist.
    ("metric", "key_budget_percent needs scope api_key, window budget_period."),
    ("window", "budget_period is for key_budget_percent."),
    ("window", "A cost spike needs a rolling window."),
    ("thresholds", "Give at least one threshold."),
    ("threshold", "Give threshold or thresholds, not both."),
    ("customerReferenceId", "No such object in this environment."),
    ("featureKey", "No such object in this environment."),
    ("apiKeyId", "No such object in this environment."),
    # Alert webhooks: https (plain http only to loopback outside production).
    ("url", "the URL must *"),
    ("url", "the URL may not carry credentials"),
    # DNS limits (253 characters, 63 a label) that the uri format does not state.
    ("url", "Enter a valid URL."),
    ("_body", "Give either custom rates or discountPercent, not both."),
    ("reasoningTokens", "Reasoning tokens are part of outputTokens: they may not exceed it."),
    ("planId", "Required (a plan id or key)."),
    ("changeToPlanId", "Required (a plan id or key)."),
    ("scopes", "Choose at least one scope."),  # obs_ keys; other kinds take none
    ("provider", "Name a provider, a model, or both."),
    (
        "_body",
        "Give custom rates (inputCostPerMillion and outputCostPerMillion) or discountPercent.",
    ),
    (
        "inputTokens",
        "inputTokens is the whole prompt, cached tokens included: it may not be less than "
        "cacheReadTokens + cacheWriteTokens.",
    ),
    # A field that repeats the path must agree with it.
    ("customerReferenceId", "A customer's reference cannot be changed."),
    ("featureKey", "Disagrees with the path."),
    # A body naming an object that does not exist.
    ("creditModelId", "No such credit model."),
    ("denomination", "No credit model has this denomination."),
    ("denomination", "No credit model has it."),
    ("featureKey", "No such feature."),
    # A currency is one the ISO 4217 table lists (the schema states its form, [A-Z]{3}).
    ("currency", "A three-letter ISO 4217 currency code, e.g. USD."),
    # Text of only whitespace is blank once trimmed (the schema states a minimum length).
    ("*", "This field may not be blank."),
    # Text holds no NUL character (PostgreSQL stores none): a 400 wherever it is.
    ("*", "Null characters are not allowed."),
    ("*", "*NUL*"),
    # Rule fields that the chosen pricing model does not use.
    ("*", "Not used by the * model."),
    ("*", "Required for the * model."),
    ("creditsPerUnit", "Required with a creditDenomination."),
    # Simulations: a window's order and length, and changes naming what the environment
    # does not have (apps/simulations/request.py, catalog.py).
    ("window.to", "Must be after window.from."),
    ("window", "At most 366 days."),
    ("*", "Out of the supported range."),
    ("*", "No plan with this key."),
    ("*", "No feature with this key."),
    ("*", "No credit model with this name or denomination."),
    ("*", "The catalog has no price for this model (set one first)."),
    # A plan rule's tiers, as the chosen pricing model needs them (a simulation's
    # pricing_rule change takes the plans API's rule body).
    ("*", "At least one tier is required."),
    ("*", "Required with creditsPerUnit."),
    ("packageSize", "Must be at least 1."),  # the rule schema allows 0
    ("*", "Only the last tier may be unbounded."),
    ("*", 'The last tier must be unbounded (upTo null or "inf").'),
    ("*", "Must be greater than the previous tier's upTo."),
    # A rule's amounts keep at most 12 integer digits (the shared decimal pattern allows more).
    ("*", "At most 12 digits before the decimal point."),
    # Relative to the clock.
    ("expiresAt", "Must be in the future."),
    ("occurredAt", "May not be more than 5 minutes in the future."),
    (
        "effectiveFrom",
        "Must be at least 60 seconds in the future: values in force are never changed.",
    ),
}


# Operations whose bodies Hypothesis cannot generate enough of within its filter budget
# (a nested array of objects whose decimal pattern needs a non-zero digit): a limit of
# the generator, not an answer of the server; their rules are tested in tests/credits.
GENERATION_LIMITED = frozenset(
    {
        "POST /api/v1/client/credits/weights/publish",
        "POST /api/v1/client/credits/prices/publish",  # the same nested shape
    }
)


def _beyond_the_schema(field: str, problem: str) -> bool:
    return any(
        name in (field, "*")
        and (message is None or message == problem or fnmatch.fnmatchcase(problem, message))
        for name, message in BEYOND_THE_SCHEMA
    )


def _refused_for_a_rule_beyond_the_schema(
    context: Any, failure: Any, case: Any, response: Any
) -> bool:
    """filter_failure hook: False drops the failure."""
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 400:
        return True
    try:
        fields = response.json()["error"].get("fields") or {}
    except (ValueError, KeyError, TypeError):
        return True
    # A field inside a list is named with its position: events.0.occurredAt; one deeper
    # in a body by its path (scenarios.0.changes.1.rule.maxUsage), its last name counts.
    explained = bool(fields) and all(
        _beyond_the_schema(re.sub(r"^\w+\.\d+\.", "", name), problem)
        or _beyond_the_schema(name.rsplit(".", 1)[-1], problem)
        for name, problems in fields.items()
        for problem in problems
    )
    return not explained


def _world() -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """A tenant with one of everything the path parameters name; returns its secret key,
    the global path-parameter values and the per-operation ones."""
    tenant = make_tenant("Fuzz")
    env = tenant.test
    _small_catalog()
    the_plan = plan(
        env,
        "fuzz_plan",
        price=10,
        timing=Plan.BillingTiming.IN_ADVANCE,
        features={"fuzz_feature": per_unit("0.002")},
    )
    subscription = subscribe(env, the_plan, at=timezone.now(), reference="cus_fuzz")
    customer = Customer.objects.get(environment=env, reference_id="cus_fuzz")
    feature = Feature.objects.get(environment=env, key="fuzz_feature")
    result = events_ingest(
        environment=env,
        api_key_id=None,  # written by the product itself, as seed data
        items=[
            {
                "eventIdempotencyKey": "fuzz-1",
                "eventName": "call",
                "customerReferenceId": customer.reference_id,
                "featureKey": feature.key,
                "model": "gpt-4o",
                "usageUnits": "3",
                "costAmount": "0.01",
                "revenueAmount": "0.05",
                "traceId": "trace_fuzz",
                "occurredAt": (timezone.now() - dt.timedelta(hours=1)).isoformat(),
            }
        ],
    )
    assert result.accepted == 1, result.errors
    model = make_model(env, "FUZZ_CREDITS")
    allocation = plan_allocation_set(
        environment=env,
        plan_key=the_plan.key,
        credit_model=model,
        credit_amount=Decimal(100),
        actor=SYSTEM,
    )
    pool = credit_pool_ensure(environment=env, customer=customer, credit_model=model)
    credit_grant(pool=pool, amount=Decimal(50), grant_type="manual", actor=SYSTEM)
    transaction = CreditTransaction.objects.filter(pool=pool).order_by("sequence").first()
    assert transaction is not None
    sdk_key = apikey_create(
        environment=env, kind="obs", actor=SYSTEM, name="fuzz", scopes=[S.USAGE_READ]
    ).key
    customer_key = apikey_create(
        environment=env, kind="ck", actor=SYSTEM, customer=customer, scopes=["read"]
    ).key
    invoice = Invoice.objects.filter(environment=env).first()
    alerts = _alerts_world(env)
    parameters = {
        "path.reference_id": customer.reference_id,
        "path.feature_key": feature.key,
        "path.plan_ref": the_plan.key,
        "path.subscription_id": str(subscription.pk),
        "path.pool_id": str(pool.pk),
        "path.transaction_id": str(transaction.pk),
        "path.allocation_id": str(getattr(allocation, "pk", allocation)),
        "path.model_id": str(model.pk),
        "path.trace_id": "trace_fuzz",
        **alerts,
    }
    if invoice is not None:
        parameters["path.invoice_id"] = str(invoice.pk)
    per_operation = [
        {"include-path-regex": "^/api/sdk-keys/", "parameters": {"path.key_id": str(sdk_key.pk)}},
        {
            "include-path-regex": "^/api/v1/client/customers/[^/]+/keys/",
            "parameters": {"path.key_id": str(customer_key.pk)},
        },
    ]
    return tenant.sk_test, parameters, per_operation


def _alerts_world(env: Any) -> dict[str, str]:
    """A fired alert, a webhook endpoint (loopback, nobody listening) and a delivery."""
    rule = alert_rule_create(
        environment=env,
        name="fuzz",
        metric="cost",
        operator="gt",
        thresholds=[{"value": "0", "severity": "info"}],
        channels=["dashboard", "webhook"],
    )
    endpoint = alert_endpoint_create(environment=env, url="http://127.0.0.1:9/fuzz").endpoint
    (fired,) = alert_rule_evaluate(rule=rule)
    delivery = fired.deliveries.get()
    return {
        "path.alert_id": str(rule.pk),
        "path.endpoint_id": str(endpoint.pk),
        "path.notification_id": str(fired.pk),
        "path.delivery_id": str(delivery.pk),
    }


def _describe(recorder: Any, case_id: str, failure: Any) -> str:
    interaction = recorder.interactions.get(case_id)
    line = f"{recorder.label}: {failure.title}: {failure.message[:300]}"
    if interaction is not None:
        request, response = interaction.request, interaction.response
        line += f"\n    {request.method} {request.uri}"
        if request.body:
            line += f"\n    body {request.body[:300]!r}"
        if response is not None:
            line += f"\n    -> {response.status_code} {response.content[:300]!r}"
    return line


def _shard(labels: list[str], shard: int) -> frozenset[str]:
    """Every ``SHARDS``-th operation label from ``shard`` on, in sorted order: the shards
    are disjoint and together hold every label."""
    return frozenset(sorted(labels)[shard::SHARDS])


def test_the_shards_deal_every_operation_once():
    labels = [f"GET /api/{n}" for n in range(SHARDS * 3 + 1)]
    shards = [_shard(labels, n) for n in range(SHARDS)]
    assert sorted(label for shard in shards for label in shard) == sorted(labels)
    assert all(shards)


# Minutes each: handed out first (tests/conftest.py), never left to the end of the run.
@pytest.mark.heavy
@pytest.mark.parametrize("shard", range(SHARDS), ids=lambda n: f"shard{n + 1}of{SHARDS}")
def test_the_server_does_what_its_schema_says(live_server, settings, shard):
    # Schemathesis sends invalid keys on purpose, many times: the per-address limit on
    # failed authentications (429, tested in tests/apikeys) would answer them instead.
    settings.API_AUTH_FAILURES_PER_MINUTE = 1_000_000
    key, parameters, per_operation = _world()
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": live_server.url,
            "headers": {"Authorization": f"Bearer {key}"},
            "parameters": parameters,
            "operations": per_operation,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            # Stateful testing needs OpenAPI links between operations; the schema has none.
            "phases": {"stateful": {"enabled": False}},
            "request-timeout": 30,
            # Deterministic: no examples carried over from an earlier run.
            "cache": {"enabled": False},
        }
    )
    # The first request builds the schema (seconds on a busy machine, with every shard's
    # worker building its own at once): more than the 10 s requests are given by default.
    schema = schemathesis.openapi.from_url(
        f"{live_server.url}/api/schema", config=config, timeout=120
    )
    schema.hook("filter_failure")(_refused_for_a_rule_beyond_the_schema)
    for method, path in STRIPE_ROUTES:
        schema = schema.exclude(method=method, path=path)
    labels = [result.ok().label for result in schema.get_all_operations()]
    mine = _shard(labels, shard)
    assert mine, "an empty shard"
    schema = schema.include(func=lambda ctx: ctx.operation.label in mine)

    started = time.monotonic()
    cases = 0
    failures: dict[str, list[str]] = collections.defaultdict(list)
    errors: list[str] = []
    finished: events.EngineFinished | None = None
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            cases += len(recorder.cases)
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failures[check.name].append(
                            _describe(recorder, case_id, check.failure_info.failure)
                        )
        elif isinstance(event, events.NonFatalError):
            if event.label in GENERATION_LIMITED and "filtered out" in event.info.message:
                print(f"  [not generated] {event.label}: {event.info.message.splitlines()[0]}")
                continue
            errors.append(f"{event.label}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            finished = event
    elapsed = time.monotonic() - started
    counts = {name: len(found) for name, found in sorted(failures.items())}
    print(
        f"schema fuzz, shard {shard + 1} of {SHARDS} ({len(mine)} of {len(labels)} operations):"
        f" {cases} cases in {elapsed:.0f} s; failures {counts}; errors {len(errors)}"
    )
    for name, found in sorted(failures.items()):
        for line in sorted(set(found)):
            print(f"  [{name}] {line}")
    for line in errors:
        print(f"  [error] {line}")
    assert finished is not None
    assert cases > 0
    assert not failures, counts
    assert not errors, errors
