"""The WSGI entry point (the Procfile's web: granian --interface wsgi tanso.wsgi:application).

``POST /api/v1/client/entitlements/check`` is the integrators' hot path: its common
case is answered before Django (``tanso/fastpath.py``), everything else by Django.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tanso.settings")
django_application = get_wsgi_application()

from tanso.fastpath import LeanCheck  # noqa: E402 -- needs the apps loaded

application = LeanCheck(django_application)
