"""The credit pools page reads every customer of its page in the same few queries (it made
three per customer), and shows for each pool what the pool's own API answer says."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.credits.selectors import credit_usage_by_customer, customer_credit_usage
from apps.customers.models import Customer
from tests.credits.conftest import grant, make_pool

from .html import find_all

pytestmark = pytest.mark.django_db

URL = "/dashboard/credits/"
CREDITS = "/api/v1/client/credits"


def deduct(api, reference: str, amount: str) -> None:
    body = {"customerReferenceId": reference, "denomination": "AI_CREDITS", "amount": amount}
    assert api.post(f"{CREDITS}/deductions", body, format="json").status_code == 201


def queries(web, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert web.get(url).status_code == 200
    return len(captured)


def pools(tenant, references: list[str]) -> None:
    for n, reference in enumerate(references):
        pool = make_pool(tenant.test, reference)
        grant(pool, str(100 + n))
        make_pool(tenant.test, reference, denomination="TOKENS")


def test_queries_do_not_grow_with_customers(tenant, web):
    pools(tenant, ["cus_1"])
    queries(web, URL)
    before = queries(web, URL)
    pools(tenant, [f"cus_{n}" for n in range(2, 12)])
    after = queries(web, URL)
    assert after == before, (before, after)
    rows = find_all(web.get(URL).content, "tr", data_pool=None)
    assert len(rows) == 22


def test_rows_equal_the_pools_api(tenant, web):
    pools(tenant, ["cus_1", "cus_2", "cus_3"])
    api = tenant.api()
    deduct(api, "cus_2", "7")
    rows = {r["data-pool"]: r for r in find_all(web.get(URL).content, "tr", data_pool=None)}
    assert len(rows) == 6
    for reference in ("cus_1", "cus_2", "cus_3"):
        answer = api.get(f"/api/v1/client/customers/{reference}/usage").json()
        assert len(answer["creditPools"]) == 2
        for item in answer["creditPools"]:
            row = rows[item["poolId"]]
            assert Decimal(row["data-balance"]) == Decimal(str(item["balance"]))
            assert Decimal(row["data-burn"]) == Decimal(str(item["averageDailyBurn"]))
            assert row["data-depletion"] == (item["projectedDepletionDate"] or "")
    burning = [r for r in rows.values() if Decimal(r["data-burn"]) > 0]
    assert len(burning) == 1 and Decimal(burning[0]["data-balance"]) == Decimal(94)


def test_batch_equals_one_by_one(tenant):
    pools(tenant, ["cus_1", "cus_2"])
    customers = list(Customer.objects.filter(environment=tenant.test).order_by("reference_id"))
    customers.append(Customer.objects.create(environment=tenant.test, reference_id="no_pool"))
    batch = credit_usage_by_customer(tenant.test, customers)
    for customer in customers:
        one = customer_credit_usage(tenant.test, customer)
        assert [(u.pool.pk, u.average_daily_burn) for u in batch.get(customer.pk, [])] == [
            (u.pool.pk, u.average_daily_burn) for u in one
        ]
    assert "no_pool" not in {c.reference_id for c in customers if c.pk in batch}
    # Another environment's customers are not read through this one.
    assert credit_usage_by_customer(tenant.live, customers) == {}
