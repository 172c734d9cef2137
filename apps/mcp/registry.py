"""The tools, each with the scope it needs (the same rule as the REST route it mirrors).

* ``scope``: what an ``sk_`` / ``obs_`` key needs (an ``sk_`` key holds every scope);
  ``None``: any valid key.
* ``customer_scope``: what a ``ck_`` key needs (``read`` or ``purchase``); ``None``: customer
  keys do not see the tool. A customer key's tools are pinned to its own customer.
* ``kind``: ``read`` (read-only), ``write`` (changes something, nothing irreversible) or
  ``destructive`` (moves money or ends something). Write and destructive tools take an
  optional ``idempotencyKey``; money-moving and destructive ones take ``confirm`` and
  without ``confirm: true`` answer a dry-run preview and change nothing.

``tools/list`` shows a key only the tools :func:`allowed` lets it call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from mcp_types import ToolAnnotations

from apps.apikeys.models import ApiKey


@dataclasses.dataclass
class ToolSpec:
    name: str
    title: str
    scope: str | None
    customer_scope: str | None = None
    kind: str = "read"  # read | write | destructive
    idempotent: bool = True
    confirms: bool = False  # answers a preview without confirm: true
    fn: Callable[..., Any] | None = None

    @property
    def writes(self) -> bool:
        return self.kind != "read"

    def annotations(self) -> ToolAnnotations:
        return ToolAnnotations(
            title=self.title,
            read_only_hint=self.kind == "read",
            destructive_hint=self.kind == "destructive",
            idempotent_hint=self.idempotent,
            open_world_hint=False,
        )


REGISTRY: dict[str, ToolSpec] = {}


def allowed(spec: ToolSpec, key: ApiKey) -> bool:
    """May ``key`` call (and see) ``spec``?"""
    if key.kind == ApiKey.Kind.CUSTOMER:
        return spec.customer_scope is not None and spec.customer_scope in key.scopes
    return spec.scope is None or key.has_scope(spec.scope)


def visible_names(key: ApiKey) -> set[str]:
    return {name for name, spec in REGISTRY.items() if allowed(spec, key)}
