from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from .models import AuditEntry, Environment, Invitation, Membership, Organization, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("email",)
    list_display = ("email", "first_name", "last_name", "is_staff", "is_active", "date_joined")
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("email", "first_name", "last_name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


class EnvironmentInline(admin.TabularInline):
    model = Environment
    extra = 0
    can_delete = False
    readonly_fields = ("id", "kind", "created_at")


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "mode", "created_at")
    list_filter = ("mode",)
    search_fields = ("name", "slug", "id")
    readonly_fields = ("id", "created_at")
    inlines = (EnvironmentInline, MembershipInline)


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ("organization", "kind", "id", "created_at")
    list_filter = ("kind",)
    search_fields = ("organization__name", "id")
    list_select_related = ("organization",)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__email", "organization__name")
    list_select_related = ("user", "organization")
    autocomplete_fields = ("user", "organization")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = (
        "email",
        "organization",
        "role",
        "created_at",
        "expires_at",
        "accepted_at",
        "revoked_at",
    )
    list_filter = ("role",)
    search_fields = ("email", "organization__name")
    list_select_related = ("organization",)
    exclude = ("token_hash",)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "organization",
        "action",
        "actor_user",
        "target_type",
        "target_id",
        "ip",
    )
    list_filter = ("action",)
    search_fields = ("organization__name", "actor_user__email", "target_id", "request_id")
    list_select_related = ("organization", "actor_user")
    date_hierarchy = "created_at"

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
