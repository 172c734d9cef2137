"""List pages run a fixed number of queries, whatever the number of rows."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from .conftest import at, event, ingest

pytestmark = pytest.mark.django_db

PAGES = [
    "/dashboard/",
    "/dashboard/customers/",
    "/dashboard/features/",
    "/dashboard/models/",
    "/dashboard/heatmap/",
    "/dashboard/events/",
    "/dashboard/customers/cus_a",
    "/dashboard/traces/t-1",
]


def queries(web, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert web.get(url).status_code == 200
    return len(captured)


def more_rows(tenant, n: int) -> None:
    ingest(
        tenant.api(),
        *(
            event(
                f"cus_more_{i}",
                f"feature_{i}",
                when=at(1 + i % 3, 8),
                cost="0.01",
                revenue="0.02",
                model=("gpt-4o", "gpt-4o-mini", "claude-sonnet-4")[i % 3],
                inputTokens=10,
                outputTokens=5,
                durationMs=10 * i,
                traceId="t-1",
            )
            for i in range(n)
        ),
    )


@pytest.mark.parametrize("url", PAGES)
def test_query_count_does_not_grow_with_rows(tenant, web, dataset, url):
    queries(web, url)  # warm the process caches (price catalog, overrides)
    before = queries(web, url)
    more_rows(tenant, 12)
    after = queries(web, url)
    assert after == before, (url, before, after)
    assert before <= 20, (url, before)
