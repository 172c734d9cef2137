from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail

from apps.accounts.models import User

from .services import set_password_link


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def send_set_password_email(user_id: str) -> bool:
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None or user.has_usable_password():
        return False
    send_mail(
        subject="[Tanso] Set your password",
        message=(
            f"An API key was created for {user.email} on Tanso.\n\n"
            f"To use the dashboard, choose a password:\n{set_password_link(user)}\n\n"
            "If this was not you, ignore this email."
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[user.email],
    )
    return True
