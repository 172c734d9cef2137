"""API routes of apps.accounts (the organization, members, audit log), included under /api/;
page_urls.py holds its invitation pages."""

from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("organization", api.OrganizationDetail.as_view(), name="api-organization"),
    path("members", api.MemberList.as_view(), name="api-members"),
    path("members/<str:membership_id>", api.MemberDetail.as_view(), name="api-member"),
    path("invitations", api.InvitationCreate.as_view(), name="api-invitations"),
    path(
        "invitations/<str:invitation_id>",
        api.InvitationRevoke.as_view(),
        name="api-invitation",
    ),
    path("audit-log", api.AuditLog.as_view(), name="api-audit-log"),
]
