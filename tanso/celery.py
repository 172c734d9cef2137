"""The Celery app. The one beat schedule lives in settings.CELERY_BEAT_SCHEDULE."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tanso.settings")

app = Celery("tanso")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
