"""Celery tasks of accounts: they take ids, load, and call a service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from .models import Invitation
from .services import expire_open_invitations


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_invitation_email(invitation_id: str, token: str) -> bool:
    invitation = (
        Invitation.objects.select_related("organization", "invited_by")
        .filter(pk=invitation_id, accepted_at__isnull=True, revoked_at__isnull=True)
        .first()
    )
    if invitation is None:
        return False
    link = settings.SITE_URL + reverse("accounts:invitation_accept", args=[token])
    inviter = invitation.invited_by.email if invitation.invited_by else "A teammate"
    send_mail(
        subject=f"[Tanso] {inviter} invited you to {invitation.organization.name}",
        message=(
            f"{inviter} invited you to join {invitation.organization.name} on Tanso "
            f"as {invitation.get_role_display().lower()}.\n\nAccept: {link}\n\n"
            "The link works for 7 days."
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[invitation.email],
    )
    return True


@shared_task
def expire_invitations() -> int:
    return expire_open_invitations()
