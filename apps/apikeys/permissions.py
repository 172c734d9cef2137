"""Scope checks. A view names what it needs:

* ``required_scopes = {"GET": "usage.read", "POST": "usage.write"}`` (or one
  string for every method); ``None`` means any valid key;
* ``customer_key_scope = {"GET": "read"}`` (or one string for every method) lets
  customer keys (ck_) in with that scope for those methods; ``None`` or a method
  it does not name refuses them (403 ``forbidden``). The view then pins them to
  their own customer (``pinned_customer_reference``).

A ck_ key belongs to an end customer: ``read`` reads that customer's own
records, ``purchase`` buys for it; neither writes the company's books (events,
catalog, billing). docs/api.md's scope table lists every route's rule, and
``tests/apikeys/test_scope_table.py`` holds every route to it.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.core.errors import Forbidden, ScopeDenied

from .authentication import request_key_or_none
from .models import ApiKey


def _scope_for(scopes: str | dict[str, str] | None, method: str) -> str | None:
    if isinstance(scopes, dict):
        return scopes.get(method) or scopes.get("*")
    return scopes


def required_scope_for(view: Any, method: str) -> str | None:
    """The scope an sk_/obs_ key needs for ``method`` (None: any valid key)."""
    return _scope_for(getattr(view, "required_scopes", None), method)


def customer_scope_for(view: Any, method: str) -> str | None:
    """The scope a ck_ key needs for ``method`` (None: ck_ keys are refused)."""
    return _scope_for(getattr(view, "customer_key_scope", None), method)


class HasScope(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        if getattr(view, "public", False):
            return True
        key = request_key_or_none(request)
        if key is None:
            raise NotAuthenticated("An API key is required (Authorization: Bearer <key>).")
        if key.kind == ApiKey.Kind.CUSTOMER:
            needed = customer_scope_for(view, request.method or "GET")
            if needed is None:
                raise Forbidden("Customer keys cannot call this endpoint.")
            if needed not in key.scopes:
                raise ScopeDenied(needed)
            return True
        scope = required_scope_for(view, request.method or "GET")
        if scope is not None and not key.has_scope(scope):
            raise ScopeDenied(scope)
        return True


def pinned_customer_reference(request: Request) -> str | None:
    """The customer a ck_ key is pinned to, else None."""
    key = request_key_or_none(request)
    if key is not None and key.kind == ApiKey.Kind.CUSTOMER and key.customer is not None:
        return key.customer.reference_id
    return None


def ensure_customer_access(request: Request, reference_id: str) -> None:
    """A ck_ key may only reach its own customer (403 otherwise)."""
    pinned = pinned_customer_reference(request)
    if pinned is not None and pinned != reference_id:
        raise Forbidden("This key is pinned to another customer.", code="customer_mismatch")
