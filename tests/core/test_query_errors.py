"""A bad query parameter is a 400 that says so: the query string, not the body."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/client/customers?limit=0", "limit"),
        ("/api/v1/client/customers?limit=x", "limit"),
        ("/api/v1/client/customers?cursor=!!", "cursor"),
        ("/api/v1/client/customers?source=nowhere", "source"),
        ("/api/customers?limit=201", "limit"),
        ("/api/customers?from=yesterday", "from"),
        ("/api/v1/client/billing/invoices?limit=-1", "limit"),
        ("/api/v1/client/subscriptions?status=asleep", "status"),
        # These were read as their default instead of refused.
        ("/api/v1/client/customers?limit=", "limit"),
        ("/api/v1/client/credits/weights?scheduled=maybe", "scheduled"),
        ("/api/sdk-keys?status=AAA", "status"),
        ("/api/model-prices?history=AAA", "history"),
        ("/api/v1/client/credits/weights?scheduled=true&at=noon", "at"),
        # An unknown customer's empty page is answered only after the other parameters
        # were checked.
        ("/api/v1/client/subscriptions?customerReferenceId=cus_nobody&limit=-1", "limit"),
        ("/api/v1/client/subscriptions?customerReferenceId=cus_nobody&cursor=!!", "cursor"),
        (
            "/api/v1/client/stripe/import/subscriptions?customerReferenceId=cus_nobody&limit=-999",
            "limit",
        ),
    ],
)
def test_a_bad_query_parameter_is_named_as_one(tenant, url, field):
    response = tenant.api().get(url)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["message"] == "A query parameter is not valid."
    assert field in error["fields"]
