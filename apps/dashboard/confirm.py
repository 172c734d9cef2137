"""Irreversible actions ask first: one mechanism for every such button.

An irreversible action is a POST view that calls :func:`needs_confirmation` before it
acts. Without ``confirm=yes`` in the POST the view answers with a confirmation that
names the consequence (a page of its own without JavaScript; with htmx, the same
confirmation as a ``<dialog>`` appended to the page) and nothing changes. The
confirmation's form posts the same fields again with ``confirm=yes``, so the view then
acts. A GET on the same URL shows the confirmation page too (a link can lead to it).

The button side is an ordinary ``<form method="post">`` with, for htmx,
``hx-post="<same url>" hx-target="body" hx-swap="beforeend"``: the dialog lands at the
end of the page; without JavaScript the form posts and the page is the confirmation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

CONFIRM_FIELD = "confirm"
CONFIRM_VALUE = "yes"
# Fields of the original POST not carried into the confirmation's form.
_NOT_CARRIED = {"csrfmiddlewaretoken", CONFIRM_FIELD}


@dataclass
class Confirmation:
    """What the person is asked: ``title`` (a question), ``consequence`` (what happens and
    that it cannot be undone), the button's ``label``, where "Keep it" leads back to."""

    title: str
    consequence: str
    label: str
    back_url: str
    details: list[tuple[str, str]] = field(default_factory=list)
    # A template rendered inside the confirmation (e.g. the proration lines of a plan change).
    extra_template: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def is_confirmed(request: HttpRequest) -> bool:
    return request.method == "POST" and request.POST.get(CONFIRM_FIELD) == CONFIRM_VALUE


def needs_confirmation(request: HttpRequest, confirmation: Confirmation) -> HttpResponse | None:
    """``None`` when the request carries the confirmation (the view goes on and acts);
    otherwise the confirmation to answer with (nothing has changed)."""
    if is_confirmed(request):
        return None
    return render_confirmation(request, confirmation)


def render_confirmation(request: HttpRequest, confirmation: Confirmation) -> HttpResponse:
    source = request.POST if request.method == "POST" else request.GET
    carried = [
        (name, value)
        for name in source
        if name not in _NOT_CARRIED
        for value in source.getlist(name)
    ]
    context = {
        "confirmation": confirmation,
        "action_url": request.path,
        "carried": carried,
        **confirmation.extra,
    }
    htmx = getattr(request, "htmx", None)
    template = "dashboard/confirm/page.html"
    if htmx and not htmx.boosted:
        template += "#dialog"
    return render(request, template, context)
