"""The platform admin's view: every registered model's list and search pages load,
and key secrets are never shown."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from apps.accounts.models import User
from tests.factories import make_customer, make_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(tenant) -> Client:
    superuser = User.objects.create_superuser(
        email="root@tanso.io", password="x-very-long-password-1"
    )
    client = Client()
    client.force_login(superuser)
    return client


# About 170 pages (dj-stripe registers most of the models): handed out first.
@pytest.mark.heavy
def test_every_model_list_and_search_page_loads(staff, tenant):
    make_key(tenant.test, "ck", customer=make_customer(tenant.test, "cus_admin"))
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        assert staff.get(url).status_code == 200, url
        if model_admin.search_fields:
            assert staff.get(url, {"q": "acme"}).status_code == 200, url


def test_key_detail_never_shows_the_secret_hash(staff, tenant):
    issued = make_key(tenant.test, "obs", scopes=["usage.read"])
    page = staff.get(reverse("admin:apikeys_apikey_change", args=[issued.key.pk])).content.decode()
    assert issued.key.secret_hash not in page
    assert issued.plaintext not in page
    assert issued.key.prefix in page


def test_non_staff_cannot_enter(tenant):
    client = Client()
    client.force_login(tenant.owner)
    assert client.get("/admin/").status_code == 302
