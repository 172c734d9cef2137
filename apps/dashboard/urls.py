from __future__ import annotations

from django.urls import path

from . import views

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("switch-environment/", views.switch_environment, name="switch_environment"),
    path("switch-organization/", views.switch_organization, name="switch_organization"),
    path("members/", views.members, name="members"),
    path("members/invite/", views.member_invite, name="member_invite"),
    path("members/<uuid:membership_id>/role/", views.member_role, name="member_role"),
    path("members/<uuid:membership_id>/remove/", views.member_remove, name="member_remove"),
    path(
        "invitations/<uuid:invitation_id>/revoke/",
        views.invitation_cancel,
        name="invitation_revoke",
    ),
    path("keys/", views.keys, name="keys"),
    path("keys/new/", views.key_create, name="key_create"),
    path("keys/<uuid:key_id>/rotate/", views.key_rotate, name="key_rotate"),
    path("keys/<uuid:key_id>/revoke/", views.key_revoke, name="key_revoke"),
    path("audit/", views.audit, name="audit"),
    path("settings/", views.organization_settings, name="settings"),
]
