"""Reads for customers; every function takes the environment first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Q, QuerySet

from apps.core.errors import NotFound, ValidationFailed
from apps.core.tenancy import get_scoped_or_404, scoped

from .models import Customer
from .services import REFERENCE_MAX_LENGTH

if TYPE_CHECKING:
    from apps.accounts.models import Environment

SEARCH_MAX_LENGTH = 255
SEARCH_MAX_TERMS = 5
SEARCH_FIELDS = ("reference_id", "email", "first_name", "last_name")


def customers_for(environment: Environment) -> QuerySet[Customer]:
    return scoped(Customer, environment)


def customer_get(environment: Environment, reference_id: str) -> Customer:
    """The environment's customer with this reference, else 404.

    A reference that cannot exist (too long, NUL) is a 404 too, never a database error.
    """
    if not reference_id or len(reference_id) > REFERENCE_MAX_LENGTH or "\x00" in reference_id:
        raise NotFound("No such customer.")
    try:
        return get_scoped_or_404(Customer, environment, reference_id=reference_id)
    except NotFound:
        raise NotFound("No such customer.") from None


def customers_search(environment: Environment, search: str = "") -> QuerySet[Customer]:
    """Customers whose reference, email, first or last name contain every word of ``search``.

    Case-insensitive. Each word is an OR over the four columns, served by the
    trigram indexes on ``UPPER(column)`` (see the model), so "jane smith" finds
    Jane Smith without a sequential scan.
    """
    queryset = customers_for(environment)
    search = search.strip()
    if not search:
        return queryset
    if len(search) > SEARCH_MAX_LENGTH or "\x00" in search:
        raise ValidationFailed(
            fields={"search": [f"At most {SEARCH_MAX_LENGTH} characters, no NUL."]}
        )
    terms = search.split()
    if len(terms) > SEARCH_MAX_TERMS:
        raise ValidationFailed(fields={"search": [f"At most {SEARCH_MAX_TERMS} words."]})
    for term in terms:
        any_field = Q()
        for name in SEARCH_FIELDS:
            any_field |= Q(**{f"{name}__icontains": term})
        queryset = queryset.filter(any_field)
    return queryset
