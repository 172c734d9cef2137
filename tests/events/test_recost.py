"""Re-costing: unpriced events become priced after a price fix, audited, rollups kept in step."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.events.models import Event, HourlyRollup, RecostRun
from apps.events.tasks import recost_events, recost_unpriced_events
from apps.pricing.services import override_create
from tests.events.conftest import rollup_mismatches

pytestmark = pytest.mark.django_db

CLIENT_EVENTS = "/api/v1/client/events"
INGEST = "/api/events/ingest"


def unknown_model_event(api, key: str, **extra) -> dict:
    body = {
        "eventIdempotencyKey": key,
        "eventName": "chat",
        "customerReferenceId": "cus_1",
        "featureKey": "ai_chat",
        "costInput": {"model": "acme-llm-7", "inputTokens": 1_000_000, "outputTokens": 500_000},
        **extra,
    }
    response = api.post(CLIENT_EVENTS, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def price_acme(environment) -> None:
    """The fix: a negotiated rate for the model the catalog does not know."""
    override_create(
        environment=environment,
        model="acme-llm-7",
        input_mtok=Decimal("0.3"),
        output_mtok=Decimal("1.1"),
    )


class TestRecostCommand:
    def test_unknown_model_is_unpriced_then_priced_by_recost_with_an_audit_row(
        self, tenant, catalog
    ):
        api = tenant.api()
        first = unknown_model_event(api, "e-1")
        unknown_model_event(api, "e-2")
        assert first["costAmount"] is None and first["costSource"] == "unpriced"
        assert HourlyRollup.objects.get().unpriced_count == 2

        price_acme(tenant.test)
        out = StringIO()
        call_command("recost", "--env", str(tenant.test.pk), stdout=out)

        # 1M input * 0.3 + 0.5M output * 1.1 = 0.85 USD each, exactly.
        costs = sorted(Event.objects.values_list("cost_usd", "cost_source"))
        assert costs == [(Decimal("0.85"), "override_rate")] * 2
        run = RecostRun.objects.get()
        assert run.status == RecostRun.Status.SUCCEEDED
        assert (run.events_changed, run.events_newly_priced) == (2, 2)
        assert run.cost_change_usd == Decimal("1.7")
        assert run.environment_id == tenant.test.pk
        assert run.actor.startswith("cli:")
        assert "cost change 1.700000000000 USD" in out.getvalue()
        rollup = HourlyRollup.objects.get()
        assert (rollup.cost_usd, rollup.unpriced_count) == (Decimal("1.7"), 0)
        assert rollup_mismatches() == []

    def test_a_second_run_changes_nothing(self, tenant, catalog):
        unknown_model_event(tenant.api(), "e-1")
        price_acme(tenant.test)
        call_command("recost", stdout=StringIO())
        call_command("recost", stdout=StringIO())
        first, second = RecostRun.objects.order_by("pk")
        assert first.events_changed == 1
        assert (second.events_changed, second.cost_change_usd) == (0, 0)
        assert rollup_mismatches() == []

    def test_still_unknown_events_stay_unpriced_never_zero(self, tenant, catalog):
        unknown_model_event(tenant.api(), "e-1")
        call_command("recost", stdout=StringIO())
        event = Event.objects.get()
        assert event.cost_usd is None and event.cost_source == "unpriced"
        assert RecostRun.objects.get().events_changed == 0

    def test_explicit_cost_is_never_repriced(self, tenant, catalog):
        unknown_model_event(tenant.api(), "e-1", costAmount="0.42")
        price_acme(tenant.test)
        call_command("recost", "--all", "--model", "acme-llm-7", stdout=StringIO())
        event = Event.objects.get()
        assert (event.cost_usd, event.cost_source) == (Decimal("0.42"), "explicit")

    def test_reprice_all_applies_a_price_fix_to_a_chosen_model_and_time_range(
        self, tenant, catalog
    ):
        api = tenant.api()
        inside = "2026-01-10T12:00:00Z"
        outside = "2026-02-10T12:00:00Z"
        for key, at in (("in", inside), ("out", outside)):
            body = {
                "eventIdempotencyKey": key,
                "eventName": "chat",
                "customerReferenceId": "cus_1",
                "featureKey": "ai_chat",
                "occurredAt": at,
                "costInput": {"model": "gpt-4o", "inputTokens": 1_000_000, "outputTokens": 0},
            }
            assert api.post(CLIENT_EVENTS, body, format="json").status_code == 201
        assert set(Event.objects.values_list("cost_usd", flat=True)) == {Decimal("2.5")}

        # A negotiated rate arrives; only January is re-priced.
        override_create(
            environment=tenant.test,
            model="gpt-4o",
            input_mtok=Decimal("2"),
            output_mtok=Decimal("10"),
        )
        call_command(
            "recost",
            "--all",
            "--model",
            "gpt-4o",
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2026-02-01T00:00:00Z",
            stdout=StringIO(),
        )
        costs = dict(Event.objects.values_list("idempotency_key", "cost_usd"))
        assert costs == {"in": Decimal("2"), "out": Decimal("2.5")}
        assert RecostRun.objects.get().cost_change_usd == Decimal("-0.5")
        assert rollup_mismatches() == []

    def test_other_environments_are_left_alone(self, tenant, outsider, catalog):
        unknown_model_event(tenant.api(), "mine")
        unknown_model_event(outsider.api(), "theirs")
        unknown_model_event(tenant.api(tenant.sk_live), "my-live")
        price_acme(tenant.test)
        price_acme(outsider.test)
        call_command("recost", "--env", str(tenant.test.pk), stdout=StringIO())
        priced = {
            (e.environment_id, e.cost_usd is not None)
            for e in Event.objects.all().only("environment_id", "cost_usd")
        }
        assert priced == {
            (tenant.test.pk, True),
            (outsider.test.pk, False),
            (tenant.live.pk, False),
        }

    @pytest.mark.parametrize(
        "args",
        [["--env", "nope"], ["--from", "last tuesday"], ["--batch-size", "0"]],
    )
    def test_bad_arguments_are_refused(self, args):
        with pytest.raises(CommandError):
            call_command("recost", *args, stdout=StringIO())

    def test_small_batches_cover_every_event(self, tenant, catalog):
        items = [
            {
                "eventName": "chat",
                "customerReferenceId": f"cus_{i % 3}",
                "featureKey": "ai_chat",
                "model": "acme-llm-7",
                "inputTokens": 1000,
                "outputTokens": 1000,
                "occurredAt": (
                    dt.datetime(2026, 3, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=37 * i)
                ).isoformat(),
            }
            for i in range(25)
        ]
        response = tenant.api().post(INGEST, {"events": items}, format="json")
        assert response.json()["accepted"] == 25
        price_acme(tenant.test)
        call_command("recost", "--batch-size", "4", stdout=StringIO())
        assert not Event.objects.filter(cost_usd__isnull=True).exists()
        # 1000 * 0.3 + 1000 * 1.1 per million = 0.0014 each.
        assert RecostRun.objects.get().cost_change_usd == Decimal("0.0014") * 25
        assert rollup_mismatches() == []


class TestRecostTasks:
    def test_scheduled_sweep_keeps_an_audit_row_only_when_it_priced(self, tenant, catalog):
        unknown_model_event(tenant.api(), "e-1")
        assert recost_unpriced_events() is None
        assert not RecostRun.objects.exists()
        price_acme(tenant.test)
        run_id = recost_unpriced_events()
        run = RecostRun.objects.get(pk=run_id)
        assert (run.actor, run.events_newly_priced) == ("schedule", 1)

    def test_manual_task_always_leaves_its_audit_row(self, tenant, catalog):
        run_id = recost_events(environment_id=str(tenant.test.pk), actor="user:ops@example.com")
        run = RecostRun.objects.get(pk=run_id)
        assert run.events_changed == 0 and run.status == RecostRun.Status.SUCCEEDED
