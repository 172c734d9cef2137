"""One view, two renderings: an htmx request gets only the partial it swaps in;
a normal request (or a boosted link) gets the whole page."""

from __future__ import annotations

import pytest

from .html import find_all

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}

# page -> (a marker of the partial, a marker outside it on the full page)
PARTIALS = {
    "/dashboard/?range=7": (b'data-testid="overview"', b'<div id="overview">'),
    "/dashboard/customers/?q=cus": (b'data-testid="customers-table"', b'<div id="table"'),
    "/dashboard/features/?sort=margin": (b'data-testid="features-table"', b'<div id="table"'),
    "/dashboard/models/?page=1": (b'data-testid="models-table"', b'<div id="table"'),
    "/dashboard/heatmap/?n=5": (b'data-testid="heatmap"', b'<div id="heatmap">'),
    "/dashboard/customers/cus_a": (b'data-testid="customer-totals"', b'<div id="customer">'),
    "/dashboard/events/?customer=cus_a": (b'data-testid="events-table"', b'<div id="results">'),
}


@pytest.mark.parametrize("url", list(PARTIALS))
def test_htmx_gets_only_the_partial(web, dataset, url):
    inside, outside = PARTIALS[url]
    full = web.get(url).content
    assert b"<html" in full and inside in full and outside in full
    partial = web.get(url, **HTMX)
    assert partial.status_code == 200
    body = partial.content
    assert inside in body
    assert b"<html" not in body and b'<nav aria-label="Sections"' not in body
    assert outside not in body


def test_a_boosted_request_gets_the_page(web, dataset):
    response = web.get("/dashboard/customers/", HTTP_HX_REQUEST="true", HTTP_HX_BOOSTED="true")
    assert b"<html" in response.content


def test_htmx_partial_keeps_the_figures(web, dataset):
    full = find_all(web.get("/dashboard/customers/").content, "tr", data_customer=None)
    partial = find_all(web.get("/dashboard/customers/", **HTMX).content, "tr", data_customer=None)
    assert full == partial and len(full) == 4


def test_event_detail_expands_as_a_row_and_collapses(web, dataset):
    url = f"/dashboard/events/{dataset.e3}/"
    page = web.get(url).content
    assert b"<html" in page and b'data-testid="provenance-' in page
    row = web.get(url, **HTMX).content.decode()
    assert row.lstrip().startswith(f'<tr id="detail-{dataset.e3}"')
    assert "catalog" in row and "Price version" in row and "<html" not in row
    collapsed = web.get(url + "?collapsed=1", **HTMX).content.decode().strip()
    assert collapsed == f'<tr id="detail-{dataset.e3}" class="event-detail" hidden></tr>'


def test_recost_status_is_a_partial_for_htmx_and_the_page_without(web, dataset):
    partial = web.get("/dashboard/settings/model-prices/recost/status/", **HTMX)
    assert partial.status_code == 200
    assert b'data-testid="recost-status"' in partial.content and b"<html" not in partial.content
    plain = web.get("/dashboard/settings/model-prices/recost/status/")
    assert plain.status_code == 302
    assert plain["Location"].startswith("/dashboard/settings/model-prices/")
