from __future__ import annotations

from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [path("<str:token>/", views.accept_invitation, name="invitation_accept")]
