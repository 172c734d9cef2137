"""Dashboard shell: pages per persona, environment switch, keys, members, audit,
and outsiders getting 404 on every object URL."""

from __future__ import annotations

import re

import pytest

from apps.accounts.models import AuditEntry, Invitation, Membership, Role
from apps.apikeys.models import ApiKey
from tests.conftest import web_as
from tests.factories import make_key

pytestmark = pytest.mark.django_db

PAGES = ["/dashboard/", "/dashboard/keys/", "/dashboard/members/"]


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.MEMBER, Role.VIEWER])
def test_every_role_can_read_the_pages(tenant, role):
    user = tenant.owner if role == Role.OWNER else tenant.add_member(role)
    browser = web_as(user)
    for page in PAGES:
        response = browser.get(page)
        assert response.status_code == 200, page
        assert tenant.org.name in response.content.decode()


def test_signed_out_visitors_are_sent_to_login(db):
    from django.test import Client

    for page in PAGES:
        response = Client().get(page)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_environment_switch_changes_what_keys_page_shows(tenant, web):
    test_key = make_key(tenant.test, "obs", scopes=["usage.read"], name="only-in-test")
    assert test_key.key.prefix in web.get("/dashboard/keys/").content.decode()
    response = web.post(
        "/dashboard/switch-environment/", {"env": "live", "next": "/dashboard/keys/"}
    )
    assert response["Location"] == "/dashboard/keys/"
    page = web.get("/dashboard/keys/").content.decode()
    assert test_key.key.prefix not in page
    assert 'data-testid="current-env">Live' in page


def test_create_key_shows_it_once_then_revoke(tenant, web):
    response = web.post(
        "/dashboard/keys/new/",
        {
            "kind": "obs",
            "name": "ci",
            "scopes": ["events.write"],
            "budget_dollars": "40",
            "budget_period": "month",
        },
    )
    assert response.status_code == 201
    plaintext = re.search(r"obs_[0-9a-f]{32}", response.content.decode()).group(0)
    key = ApiKey.objects.get(name="ci")
    assert key.budget_cents == 4000 and key.scopes == ["events.write"]
    assert plaintext not in web.get("/dashboard/keys/").content.decode()
    assert tenant.api(plaintext).get("/api/sdk-keys/me").status_code == 200

    web.post(f"/dashboard/keys/{key.pk}/revoke/", {"confirm": "yes"})
    assert tenant.api(plaintext).get("/api/sdk-keys/me").status_code == 401
    assert AuditEntry.objects.filter(action="key.revoked", target_id=str(key.pk)).exists()


def test_rotate_from_dashboard_shows_new_key(tenant, web):
    issued = make_key(tenant.test, "obs", scopes=["usage.read"])
    response = web.post(f"/dashboard/keys/{issued.key.pk}/rotate/")
    assert response.status_code == 201
    new_plain = re.search(r"obs_[0-9a-f]{32}", response.content.decode()).group(0)
    assert new_plain != issued.plaintext
    assert tenant.api(new_plain).get("/api/sdk-keys/me").status_code == 200


def test_bad_key_form_is_400_not_500(tenant, web):
    response = web.post("/dashboard/keys/new/", {"kind": "ck", "customer_reference_id": "nobody"})
    assert response.status_code == 400


def test_viewer_cannot_change_anything(tenant):
    viewer = web_as(tenant.add_member(Role.VIEWER))
    issued = make_key(tenant.test, "obs", scopes=["usage.read"])
    other = Membership.objects.get(organization=tenant.org, user=tenant.owner)
    attempts = [
        ("/dashboard/keys/new/", {"kind": "obs", "scopes": ["usage.read"]}),
        (f"/dashboard/keys/{issued.key.pk}/revoke/", {}),
        (f"/dashboard/keys/{issued.key.pk}/rotate/", {}),
        ("/dashboard/members/invite/", {"email": "new@x.io", "role": "member"}),
        (f"/dashboard/members/{other.pk}/role/", {"role": "viewer"}),
        (f"/dashboard/members/{other.pk}/remove/", {}),
    ]
    for url, data in attempts:
        assert viewer.post(url, data).status_code == 403, url
    assert ApiKey.objects.get(pk=issued.key.pk).revoked_at is None
    assert ApiKey.objects.filter(environment=tenant.test).count() == 2
    assert viewer.get("/dashboard/audit/").status_code == 403


def test_outsider_gets_404_on_every_object_url(tenant, outsider):
    spy = web_as(outsider.owner)
    issued = make_key(tenant.test, "obs", scopes=["usage.read"])
    membership = Membership.objects.get(organization=tenant.org, user=tenant.owner)
    invitation = Invitation.objects.create(
        organization=tenant.org,
        email="z@z.io",
        token_hash="0" * 64,
        expires_at="2999-01-01T00:00:00Z",
    )
    for url in (
        f"/dashboard/keys/{issued.key.pk}/revoke/",
        f"/dashboard/keys/{issued.key.pk}/rotate/",
        f"/dashboard/members/{membership.pk}/role/",
        f"/dashboard/members/{membership.pk}/remove/",
        f"/dashboard/invitations/{invitation.pk}/revoke/",
    ):
        assert spy.post(url, {"role": "viewer"}).status_code == 404, url
    assert ApiKey.objects.get(pk=issued.key.pk).revoked_at is None
    assert Membership.objects.filter(pk=membership.pk, role=Role.OWNER).exists()
    # Their own pages show only their own org.
    page = spy.get("/dashboard/members/").content.decode()
    assert tenant.owner.email not in page
    # Switching to an org you are not in is ignored.
    spy.post("/dashboard/switch-organization/", {"org": str(tenant.org.pk)})
    assert tenant.org.name not in spy.get("/dashboard/").content.decode()


def test_last_owner_cannot_be_demoted_or_removed(tenant, web):
    membership = Membership.objects.get(organization=tenant.org, user=tenant.owner)
    web.post(f"/dashboard/members/{membership.pk}/role/", {"role": "viewer"})
    web.post(f"/dashboard/members/{membership.pk}/remove/", {"confirm": "yes"})
    membership.refresh_from_db()
    assert membership.role == Role.OWNER


def test_admin_changes_role_and_it_is_audited(tenant, web):
    member = tenant.add_member(Role.MEMBER)
    membership = Membership.objects.get(organization=tenant.org, user=member)
    web.post(f"/dashboard/members/{membership.pk}/role/", {"role": "admin"})
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN
    entry = AuditEntry.objects.get(action="member.role_changed")
    assert entry.actor_user == tenant.owner
    assert entry.detail == {"email": member.email, "from": "member", "to": "admin"}
    assert entry.ip == "127.0.0.1"
    audit_page = web.get("/dashboard/audit/").content.decode()
    assert "member.role_changed" in audit_page


def test_admin_cannot_make_owners(tenant):
    admin_user = tenant.add_member(Role.ADMIN)
    member = tenant.add_member(Role.MEMBER)
    membership = Membership.objects.get(organization=tenant.org, user=member)
    web_as(admin_user).post(f"/dashboard/members/{membership.pk}/role/", {"role": "owner"})
    membership.refresh_from_db()
    assert membership.role == Role.MEMBER


def test_audit_log_shows_only_own_organization(tenant, outsider):
    make_key(outsider.test, "obs", scopes=["usage.read"], name="outsider-secret-name")
    page = web_as(tenant.owner).get("/dashboard/audit/").content.decode()
    assert "organization.created" in page
    assert outsider.org.name not in page


def test_admin_changes_settings_and_it_is_audited(tenant, web):
    response = web.post("/dashboard/settings/", {"name": "Acme Labs", "mode": "observe"})
    assert response.status_code == 302
    tenant.org.refresh_from_db()
    assert (tenant.org.name, tenant.org.mode) == ("Acme Labs", "observe")
    entry = AuditEntry.objects.get(action="settings.changed")
    assert entry.detail == {"name": ["Acme", "Acme Labs"], "mode": ["platform", "observe"]}


def test_member_cannot_change_settings(tenant):
    member = web_as(tenant.add_member(Role.MEMBER))
    assert member.get("/dashboard/settings/").status_code == 200
    assert (
        member.post("/dashboard/settings/", {"name": "Hacked", "mode": "observe"}).status_code
        == 403
    )
    tenant.org.refresh_from_db()
    assert tenant.org.name == "Acme"


def test_blank_settings_name_is_400(tenant, web):
    assert web.post("/dashboard/settings/", {"name": "", "mode": "observe"}).status_code == 400


def test_switching_to_a_malformed_or_foreign_organization_changes_nothing(tenant, outsider, web):
    for org in ("not-a-uuid", "", str(outsider.org.pk)):
        response = web.post("/dashboard/switch-organization/", {"org": org})
        assert response.status_code == 302
        assert tenant.org.name in web.get("/dashboard/").content.decode()
