"""The dashboard's import panel: what it says before an import is possible, the start
button (admins only), the htmx progress bar that polls a running job, and tenancy."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.template import Context, Template
from django.test import RequestFactory

from apps.accounts.models import Role
from apps.stripe_import.models import ImportJob
from tests.conftest import Tenant, web_as
from tests.stripe_peer.fixtures import StripePeer, connect_environment

from .conftest import set_mode

pytestmark = pytest.mark.django_db

PAGE = "/dashboard/stripe/import/"
PANEL = "/dashboard/stripe/import/panel/"
START = "/dashboard/stripe/import/start/"
HTMX = {"HTTP_HX_REQUEST": "true"}


def test_the_panel_says_what_is_missing(web: Any, tenant: Tenant, peer: StripePeer) -> None:
    page = web.get(PAGE).content.decode()
    assert "Connect a Stripe key first." in page
    assert re.search(r'data-testid="stripe-import-start"\s+disabled', page)
    connect_environment(tenant.test, peer)
    page = web.get(PAGE).content.decode()
    assert "is not <strong>Import</strong>" in page
    set_mode(tenant, "IMPORT")
    page = web.get(PAGE).content.decode()
    assert 'data-testid="stripe-import-blocked"' not in page
    assert not re.search(r'data-testid="stripe-import-start"\s+disabled', page)


def test_start_with_htmx_shows_the_progress_bar_polling(web: Any, ready: Tenant) -> None:
    tenant = ready
    response = web.post(START, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    job = ImportJob.objects.get(environment=tenant.test)
    assert f'hx-get="{PANEL}?job={job.pk}"' in html and 'hx-trigger="every 2s"' in html
    assert 'data-testid="stripe-import-progress"' in html and 'value="0"' in html
    assert "<html" not in html  # the partial only

    # The poll: the job moved on; then it finished, and the polling stops.
    ImportJob.objects.filter(pk=job.pk).update(
        status="running",
        phase="subscriptions",
        total=10,
        processed=8,
        counts={"subscriptions": {"read": 4, "earning": 2}},
    )
    polled = web.get(f"{PANEL}?job={job.pk}", **HTMX).content.decode()
    assert 'value="87"' in polled  # three phases done, half of the fourth: 3.5 / 4
    assert "8 of 10 objects recorded" in polled
    ImportJob.objects.filter(pk=job.pk).update(status="completed", phase="done")
    done = web.get(f"{PANEL}?job={job.pk}", **HTMX).content.decode()
    assert 'value="100"' in done and "hx-get" not in done


def test_a_refused_start_is_shown_in_the_panel(web: Any, tenant: Tenant) -> None:
    set_mode(tenant, "IMPORT")  # but no Stripe key
    response = web.post(START, **HTMX)
    assert response.status_code == 200  # htmx swaps 2xx only
    assert "Stripe is not connected" in response.content.decode()
    assert not ImportJob.objects.exists()
    plain = web.post(START)  # without JavaScript: back to the page with a message
    assert plain.status_code == 302
    assert "Stripe is not connected" in web.get(plain["Location"]).content.decode()


def test_only_admins_start(tenant: Tenant) -> None:
    viewer = web_as(tenant.add_member(Role.VIEWER))
    assert viewer.get(PAGE).status_code == 200
    assert 'data-testid="stripe-import-start"' not in viewer.get(PAGE).content.decode()
    assert viewer.post(START).status_code == 403
    member = web_as(tenant.add_member(Role.MEMBER))
    assert member.post(START).status_code == 403


def test_another_tenants_job_is_404(web: Any, outsider: Tenant) -> None:
    theirs = ImportJob.objects.create(environment=outsider.test)
    assert web.get(f"{PANEL}?job={theirs.pk}", **HTMX).status_code == 404
    assert web.get(f"{PANEL}?job=nonsense", **HTMX).status_code == 404


def test_the_settings_page_can_include_it(tenant: Tenant, web: Any) -> None:
    """``{% load stripe_import %}{% stripe_import_panel %}`` renders the panel."""
    request = RequestFactory().get("/dashboard/settings/")
    request.user = tenant.owner
    request.environment = tenant.test
    request.membership = tenant.org.memberships.get(user=tenant.owner)
    html = Template("{% load stripe_import %}{% stripe_import_panel %}").render(
        Context({"request": request})
    )
    assert 'id="stripe-import"' in html and 'data-testid="stripe-import-start"' in html
