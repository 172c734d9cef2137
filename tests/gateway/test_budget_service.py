"""The budget script itself: grant, lower, refuse; settle exactly once; reap dead holds."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.apikeys import scopes as S
from apps.apikeys.models import ApiKey
from apps.gateway import budgets
from apps.gateway.models import BudgetReservation
from apps.gateway.tasks import reap_budget_reservations
from tests.conftest import Tenant
from tests.factories import make_key
from tests.redis_outage import app_redis, dead_url

D = Decimal


@pytest.fixture
def key(tenant: Tenant) -> ApiKey:
    issued = make_key(tenant.test, "obs", scopes=[S.PROXY_CHAT], budget_cents=100)
    return issued.key


def test_grants_the_worst_case_then_what_is_left_then_refuses(key: ApiKey) -> None:
    first = budgets.reserve(key=key, worst_usd=D("0.70"), least_usd=D("0.10"))
    assert first.amount_usd == D("0.70") and first.remaining_usd == D("0.30")
    second = budgets.reserve(key=key, worst_usd=D("0.70"), least_usd=D("0.10"))
    assert second.amount_usd == D("0.30")  # lowered to the headroom
    with pytest.raises(budgets.BudgetRefused) as refused:
        budgets.reserve(key=key, worst_usd=D("0.70"), least_usd=D("0.10"))
    assert refused.value.remaining_usd == 0 and refused.value.resets_at is None


def test_a_settlement_counts_once_and_frees_the_rest(key: ApiKey) -> None:
    held = budgets.reserve(key=key, worst_usd=D("0.70"), least_usd=D("0.10"))
    budgets.settle_redis(held, key, D("0.25"))
    held.settled = False  # even a second settlement of the same call is ignored
    budgets.settle_redis(held, key, D("0.25"))
    again = budgets.reserve(key=key, worst_usd=D("0.80"), least_usd=D("0.10"))
    assert again.amount_usd == D("0.75")


def test_a_dead_calls_hold_is_reaped(key: ApiKey) -> None:
    long_ago = timezone.now() - budgets.RESERVATION_TTL - dt.timedelta(seconds=1)
    budgets.reserve(key=key, worst_usd=D("1.00"), least_usd=D("0.10"), now=long_ago)
    again = budgets.reserve(key=key, worst_usd=D("1.00"), least_usd=D("0.10"))
    assert again.amount_usd == D("1.00")


def test_with_redis_down_postgresql_holds_and_the_reaper_releases(key: ApiKey) -> None:
    with app_redis(dead_url()):
        held = budgets.reserve(key=key, worst_usd=D("0.60"), least_usd=D("0.10"))
        assert held.in_database
        second = budgets.reserve(key=key, worst_usd=D("0.60"), least_usd=D("0.10"))
        assert second.amount_usd == D("0.40")
        with pytest.raises(budgets.BudgetRefused):
            budgets.reserve(key=key, worst_usd=D("0.60"), least_usd=D("0.10"))
    BudgetReservation.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert reap_budget_reservations() == 2
    assert not BudgetReservation.objects.exists()
