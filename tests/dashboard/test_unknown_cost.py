"""Unknown is never zero: a row whose events have no price shows "unknown" cost and
margin, not $0.00 and 100 %; a row with some unpriced events shows bounds (≥ cost,
≤ margin); the models page links an unpriced model to a pre-filled price override."""

from __future__ import annotations

import re

import pytest

from .conftest import at, event, ingest
from .html import find_all

pytestmark = pytest.mark.django_db


@pytest.fixture
def unpriced(tenant, request):
    request.getfixturevalue("catalog")
    ingest(
        tenant.api(),
        # cus_u: only an unknown model, with revenue: its cost is unknown.
        event("cus_u", "chat", when=at(1), revenue="5", model="mystery-9", inputTokens=100),
        # cus_p: a priced event and an unpriced one.
        event("cus_p", "chat", when=at(1), cost="1", revenue="4", model="gpt-4o"),
        event("cus_p", "chat", when=at(1, 13), revenue="1", model="mystery-9", inputTokens=5),
    )


def row_text(content: bytes, marker: str) -> str:
    return content.split(marker.encode())[1].split(b"</tr>")[0].decode()


def test_customers_table_shows_unknown_and_bounds(web, unpriced):
    content = web.get("/dashboard/customers/").content
    only_unpriced = row_text(content, 'data-customer="cus_u"')
    assert "unknown" in only_unpriced
    assert "100.0%" not in only_unpriced
    assert 'data-band="unknown"' in only_unpriced
    partly = row_text(content, 'data-customer="cus_p"')
    # cost at least $1 (the amount in its no-wrap money span)
    assert re.search(r'\u2265\u00a0<span class="money"[^>]*>\$1\.00</span>', partly)
    assert "\u2264\u00a080.0%" in partly  # margin at most 80 %
    assert 'data-band="unknown"' in partly


def test_customer_page_never_shows_an_exact_margin_for_unknown_cost(web, unpriced):
    content = web.get("/dashboard/customers/cus_u").content
    kpis = content.split(b'data-testid="customer-totals"')[1].split(b"</section>")[0].decode()
    assert "unknown" in kpis and "100.0%" not in kpis


def test_models_page_lists_the_unpriced_model_as_unknown_with_a_prefilled_link(web, unpriced):
    content = web.get("/dashboard/models/").content
    row = row_text(content, 'data-model="mystery-9"')
    assert "unknown" in row and "100.0%" not in row
    (link,) = [a for a in find_all(row.encode(), "a") if "model=mystery-9" in a.get("href", "")]
    form = web.get(link["href"].replace("&amp;", "&")).content
    assert b'value="mystery-9"' in form
