"""Keep dj-stripe's admin pages working.

dj-stripe 2.11 moved most Stripe fields into ``stripe_data`` (JSON), but some of its
model admins still search columns that no longer exist (``Account.settings``,
``Customer.email``, ``Invoice.number``...): a search on those lists raised
``FieldError`` (a 500). Each dj-stripe admin keeps the search fields that resolve and
otherwise searches by Stripe id. This module loads after dj-stripe's admin
(``djstripe`` comes before this app in ``INSTALLED_APPS``).
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import FieldDoesNotExist
from django.db.models import Model


def _resolves(model: type[Model], search_field: str) -> bool:
    path = search_field.lstrip("^=@").split("__")
    for name in path:
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:
            return False
        if field.is_relation and field.related_model is not None:
            model = field.related_model
    return True


for _model, _model_admin in list(admin.site._registry.items()):
    if _model._meta.app_label != "djstripe" or not _model_admin.search_fields:
        continue
    _kept = tuple(f for f in _model_admin.search_fields if _resolves(_model, f))
    # django-stubs declare search_fields a ClassVar; ModelAdmin reads self.search_fields, and
    # the instance (this registration only, not a class dj-stripe may share) is what we mean.
    _model_admin.search_fields = _kept or ("id",)  # type: ignore[misc]  # see above
