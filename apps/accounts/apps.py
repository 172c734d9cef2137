from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig
from django.db.models.signals import post_migrate

PRODUCT_NAME = "Tanso"


def site_from_settings(**kwargs: Any) -> None:
    """Name the Site (django.contrib.sites, read by allauth's emails: "Hello from ...",
    links, the subject) after the product and ``SITE_URL``'s domain, instead of
    Django's "example.com". Runs after every migrate (``make run`` migrates at start),
    so a changed ``SITE_URL`` takes effect on the next start."""
    from django.conf import settings
    from django.contrib.sites.models import Site

    using = kwargs.get("using", "default")
    domain = urlsplit(settings.SITE_URL).netloc or "localhost:8080"
    Site.objects.using(using).update_or_create(
        pk=settings.SITE_ID, defaults={"domain": domain, "name": PRODUCT_NAME}
    )
    Site.objects.clear_cache()


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Accounts and tenancy"

    def ready(self) -> None:
        # Sent per app in INSTALLED_APPS order: this app's comes after
        # django.contrib.sites' own handler has created "example.com".
        post_migrate.connect(
            site_from_settings, sender=self, dispatch_uid="tanso-site-from-settings"
        )
