"""Invitations travel through a real Celery worker and Redis broker."""

from __future__ import annotations

import re
import time

import pytest
from django.core import mail

from apps.accounts.models import AuditEntry, Membership, Role
from tests.conftest import make_tenant, web_as
from tests.factories import UserFactory

pytestmark = [pytest.mark.celery]


def wait_for_mail(count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while len(mail.outbox) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(mail.outbox) >= count, "the worker did not send the email"


def test_invite_email_is_sent_by_the_worker_and_accept_flow(celery_worker):
    tenant = make_tenant("Acme")
    owner = web_as(tenant.owner)
    response = owner.post("/dashboard/members/invite/", {"email": "new@acme.io", "role": "viewer"})
    assert response.status_code == 302
    wait_for_mail(1)
    message = mail.outbox[0]
    assert message.to == ["new@acme.io"]
    path = re.search(r"https?://[^/\s]+(/invitations/\S+)", message.body).group(1)

    invitee = UserFactory(email="new@acme.io")
    someone_else = web_as(UserFactory(email="intruder@evil.io"))
    assert someone_else.post(path).status_code == 403

    browser = web_as(invitee)
    assert browser.get(path).status_code == 200
    assert browser.post(path).status_code == 302
    membership = Membership.objects.get(organization=tenant.org, user=invitee)
    assert membership.role == Role.VIEWER
    assert AuditEntry.objects.filter(action="member.invited").exists()
    assert AuditEntry.objects.filter(action="member.joined").exists()
    # The link works once.
    assert browser.get(path).status_code == 404


def test_duplicate_open_invitation_is_refused(celery_worker):
    tenant = make_tenant("Acme")
    owner = web_as(tenant.owner)
    owner.post("/dashboard/members/invite/", {"email": "twice@acme.io", "role": "member"})
    owner.post("/dashboard/members/invite/", {"email": "TWICE@acme.io", "role": "member"})
    wait_for_mail(1)
    time.sleep(0.3)
    assert len(mail.outbox) == 1
