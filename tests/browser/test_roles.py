"""Roles and tenancy in a real browser: a viewer reads but cannot change anything (the
controls are absent and a forged form post is refused), and another organization's URLs
are 404s."""

from __future__ import annotations

import pytest

from apps.accounts.models import Role
from apps.apikeys.models import ApiKey
from tests.conftest import make_tenant
from tests.factories import make_customer

from .test_shell import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def post_from_page(page, path: str) -> int:
    """Submit a form post from the signed-in page (its session and CSRF cookie), as a
    tampered page would; returns the status code."""
    return page.evaluate(
        """async (path) => {
            const token = (document.cookie.match(/csrftoken=([^;]+)/) || [])[1] || "";
            const response = await fetch(path, {
                method: "POST",
                headers: {
                    "X-CSRFToken": token,
                    "Content-Type": "application/x-www-form-urlencoded",
                },
                body: "name=forged&kind=obs&scopes=events.write",
            });
            return response.status;
        }""",
        path,
    )


def test_a_viewer_sees_the_pages_but_changes_nothing(page):
    tenant = make_tenant("Viewer Co")
    viewer = tenant.add_member(Role.VIEWER)
    keys_before = ApiKey.objects.count()
    sign_in(page, viewer.email)

    page.goto("/dashboard/keys/")
    assert page.locator("button:has-text('Create key')").count() == 0
    assert post_from_page(page, "/dashboard/keys/new/") == 403
    for path in ("/dashboard/", "/dashboard/customers/", "/dashboard/plans/"):
        assert page.goto(path).status == 200, path
    assert ApiKey.objects.count() == keys_before


def test_an_outsiders_urls_are_404(page):
    tenant = make_tenant("Ours")
    other = make_tenant("Theirs")
    make_customer(other.test, "cus_theirs")
    other_key = ApiKey.objects.filter(environment=other.test).first()
    sign_in(page, tenant.owner.email)
    assert page.goto("/dashboard/customers/cus_theirs").status == 404
    assert post_from_page(page, f"/dashboard/keys/{other_key.pk}/revoke/") == 404
    other_key.refresh_from_db()
    assert other_key.revoked_at is None
