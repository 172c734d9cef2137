"""The organization, members, invitations and audit log through the API (admin scope):
the same services as the dashboard's shell pages; outsiders see and change nothing."""

from __future__ import annotations

import base64
import json

import pytest

from apps.accounts.models import AuditEntry, Invitation, Membership, Organization, Role
from apps.apikeys import scopes as S
from tests.factories import make_key

pytestmark = pytest.mark.django_db


def test_organization_read_and_mode_switch_is_audited(tenant, outsider):
    api = tenant.api()
    body = api.get("/api/organization").json()
    assert (body["id"], body["name"]) == (str(tenant.org.pk), "Acme")
    before = body["mode"]
    after = "observe" if before == "platform" else "platform"
    response = api.patch("/api/organization", {"mode": after}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["mode"] == after
    tenant.org.refresh_from_db()
    assert tenant.org.mode == after
    entry = AuditEntry.objects.get(organization=tenant.org, action="settings.changed")
    assert entry.detail == {"mode": [before, after]}
    assert entry.actor_key_id is not None
    # The outsider's organization is untouched, and its key reads its own.
    assert outsider.api().get("/api/organization").json()["id"] == str(outsider.org.pk)
    assert Organization.objects.get(pk=outsider.org.pk).mode == before


@pytest.mark.parametrize(
    "body",
    [{"mode": "enterprise"}, {"name": "   "}, {"name": "x" * 151}, {"mode": None}, {"name": 0}],
)
def test_bad_organization_changes_are_400(tenant, body):
    response = tenant.api().patch("/api/organization", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_failed"


def test_an_obs_key_needs_the_admin_scope(tenant):
    without = make_key(tenant.test, "obs", scopes=[S.USAGE_READ, S.USAGE_WRITE]).plaintext
    response = tenant.api(without).get("/api/members")
    assert response.status_code == 403
    assert response.json()["error"]["requiredScope"] == "admin"
    admin = make_key(tenant.test, "obs", scopes=[S.ADMIN]).plaintext
    assert tenant.api(admin).get("/api/members").status_code == 200


def test_invite_change_role_and_remove(
    tenant, outsider, mailoutbox, django_capture_on_commit_callbacks
):
    api = tenant.api()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/invitations", {"email": "New@Example.com", "role": "viewer"}, format="json"
        )
    assert response.status_code == 201, response.content
    invitation = response.json()
    assert (invitation["email"], invitation["role"]) == ("new@example.com", "viewer")
    assert Invitation.objects.get(pk=invitation["id"]).organization_id == tenant.org.pk

    again = api.post("/api/invitations", {"email": "new@example.com"}, format="json")
    assert again.status_code == 409
    listed = api.get("/api/members").json()
    assert [i["email"] for i in listed["invitations"]] == ["new@example.com"]
    assert [m["role"] for m in listed["items"]] == ["owner"]

    member = tenant.add_member(Role.MEMBER)
    membership = Membership.objects.get(user=member, organization=tenant.org)
    response = api.patch(f"/api/members/{membership.pk}", {"role": "admin"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["role"] == "admin"
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN

    # The outsider can neither see nor touch the tenant's people.
    other = outsider.api()
    assert [m["email"] for m in other.get("/api/members").json()["items"]] == [outsider.owner.email]
    assert other.get("/api/members").json()["invitations"] == []
    assert (
        other.patch(f"/api/members/{membership.pk}", {"role": "viewer"}, format="json").status_code
        == 404
    )
    assert other.delete(f"/api/members/{membership.pk}").status_code == 404
    assert other.delete(f"/api/invitations/{invitation['id']}").status_code == 404
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN

    assert api.delete(f"/api/invitations/{invitation['id']}").status_code == 204
    assert api.get("/api/members").json()["invitations"] == []
    assert api.delete(f"/api/members/{membership.pk}").status_code == 204
    assert not Membership.objects.filter(pk=membership.pk).exists()
    actions = set(
        AuditEntry.objects.filter(organization=tenant.org).values_list("action", flat=True)
    )
    assert {
        "member.invited",
        "member.role_changed",
        "invitation.revoked",
        "member.removed",
    } <= actions
    assert not AuditEntry.objects.filter(
        organization=outsider.org, action__startswith="member."
    ).exists()


def test_a_key_cannot_make_or_touch_an_owner(tenant):
    api = tenant.api()
    owner = Membership.objects.get(user=tenant.owner, organization=tenant.org)
    member = Membership.objects.get(user=tenant.add_member(Role.MEMBER), organization=tenant.org)
    made_owner = api.patch(f"/api/members/{member.pk}", {"role": "owner"}, format="json")
    assert made_owner.status_code == 400
    assert "role" in made_owner.json()["error"]["fields"]
    assert (
        api.post(
            "/api/invitations", {"email": "o@example.com", "role": "owner"}, format="json"
        ).status_code
        == 400
    )
    demoted = api.patch(f"/api/members/{owner.pk}", {"role": "viewer"}, format="json")
    assert demoted.status_code == 403
    assert demoted.json()["error"]["code"] == "forbidden"
    assert api.delete(f"/api/members/{owner.pk}").status_code == 403
    owner.refresh_from_db()
    member.refresh_from_db()
    assert (owner.role, member.role) == (Role.OWNER, Role.MEMBER)


@pytest.mark.parametrize("ident", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_unknown_members_and_invitations_are_404(tenant, ident):
    api = tenant.api()
    assert api.patch(f"/api/members/{ident}", {"role": "viewer"}, format="json").status_code == 404
    assert api.delete(f"/api/members/{ident}").status_code == 404
    assert api.delete(f"/api/invitations/{ident}").status_code == 404


def test_audit_log_pages_filters_and_keeps_environments_apart(tenant, outsider):
    api = tenant.api()
    for name in ("One", "Two", "Three"):
        assert api.patch("/api/organization", {"name": name}, format="json").status_code == 200
    # An entry of the live environment, one of another organization: never listed here.
    tenant.api(tenant.sk_live).post("/api/events/recost")
    outsider.api().patch("/api/organization", {"name": "Theirs"}, format="json")

    first = api.get("/api/audit-log", {"limit": 2, "action": "settings."}).json()
    assert [e["detail"]["name"][1] for e in first["items"]] == ["Three", "Two"]
    assert first["hasMore"] is True
    assert first["items"][0]["actor"]["type"] == "key"
    assert first["items"][0]["environment"] is None
    second = api.get(
        "/api/audit-log", {"limit": 2, "action": "settings.", "cursor": first["nextCursor"]}
    ).json()
    assert [e["detail"]["name"][1] for e in second["items"]] == ["One"]
    assert second["hasMore"] is False and second["nextCursor"] is None

    everything = api.get("/api/audit-log", {"limit": 200}).json()["items"]
    assert all(e["action"] != "events.recost_requested" for e in everything)
    assert all("Theirs" not in json.dumps(e["detail"]) for e in everything)
    # The live key sees its own re-cost request.
    live = tenant.api(tenant.sk_live).get("/api/audit-log", {"action": "events."}).json()["items"]
    assert [(e["action"], e["environment"]) for e in live] == [("events.recost_requested", "live")]
    target = api.get("/api/audit-log", {"target": str(tenant.org.pk)}).json()["items"]
    assert target and all(e["targetId"] == str(tenant.org.pk) for e in target)


@pytest.mark.parametrize(
    "query",
    [
        {"cursor": "garbage"},
        {"cursor": base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", "abc"]').decode()},
        {"limit": "201"},
        {"action": "x" * 41},
    ],
)
def test_bad_audit_log_parameters_are_400(tenant, query):
    response = tenant.api().get("/api/audit-log", query)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_failed"
