"""First run after signup: name the organization, pick Observe or Platform,
see a test secret key once with snippets (curl, Python, JavaScript) for the
first event, and a panel that turns green when it arrives."""

from __future__ import annotations

import json
import textwrap

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from apps.accounts.audit import Actor
from apps.accounts.middleware import SESSION_ENV, SESSION_ORG
from apps.accounts.models import Environment

from .forms import OnboardingForm
from .services import onboarding_complete


def first_event_body(idempotency_key: str) -> dict[str, object]:
    """The first event the onboarding snippets send (costed from the catalog's gpt-4o)."""
    return {
        "eventIdempotencyKey": idempotency_key,
        "eventName": "chat_completion",
        "customerReferenceId": "cus_123",
        "featureKey": "ai_summarization",
        "costInput": {
            "model": "gpt-4o",
            "modelProvider": "openai",
            "inputTokens": 1200,
            "outputTokens": 300,
        },
        "usageUnits": 1500,
    }


# Each run of a snippet sends a new idempotency key (a second run records a second event
# instead of answering 409 duplicate_event): the shell, Python and JavaScript make one.
_KEY_SLOT = "__idempotency_key__"


def _with_fresh_key(body_json: str, expression: str) -> str:
    return body_json.replace(f'"{_KEY_SLOT}"', expression)


def first_event_curl(base_url: str, key: str) -> str:
    # Inside the single-quoted body, '"$(...)"' lets the shell fill in the time and a
    # random number (bash and zsh; a plain sh still gets the time).
    body = _with_fresh_key(
        json.dumps(first_event_body(_KEY_SLOT), indent=2),
        '"first-event-\'"$(date +%s)-$RANDOM"\'"',
    )
    return (
        f"curl -X POST {base_url}/api/v1/client/events \\\n"
        '  -H "Content-Type: application/json" \\\n'
        f'  -H "Authorization: Bearer {key}" \\\n'
        f"  -d '{body}'"
    )


def first_event_python(base_url: str, key: str) -> str:
    # json.dumps of the body is also a valid Python literal (ints and strings only).
    body = _with_fresh_key(json.dumps(first_event_body(_KEY_SLOT), indent=4), "str(uuid.uuid4())")
    return (
        "import uuid\n\nimport requests\n\n"
        "response = requests.post(\n"
        f'    "{base_url}/api/v1/client/events",\n'
        f'    headers={{"Authorization": "Bearer {key}"}},\n'
        f"    json={textwrap.indent(body, '    ').lstrip()},\n"
        "    timeout=10,\n"
        ")\n"
        "print(response.status_code, response.json())\n"
    )


def first_event_fetch(base_url: str, key: str) -> str:
    body = _with_fresh_key(json.dumps(first_event_body(_KEY_SLOT), indent=2), "crypto.randomUUID()")
    return (
        f'const response = await fetch("{base_url}/api/v1/client/events", {{\n'
        '  method: "POST",\n'
        "  headers: {\n"
        '    "Content-Type": "application/json",\n'
        f'    Authorization: "Bearer {key}",\n'
        "  },\n"
        f"  body: JSON.stringify({textwrap.indent(body, '  ').lstrip()}),\n"
        "});\n"
        "console.log(response.status, await response.json());\n"
    )


@login_required
def start(request: HttpRequest) -> HttpResponse:
    if (
        getattr(request, "membership", None) is not None
        and request.method == "GET"
        and not request.GET.get("new")
    ):
        return redirect("dashboard:home")
    form = OnboardingForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        result = onboarding_complete(
            user=request.user,  # type: ignore[arg-type]
            name=form.cleaned_data["name"],
            mode=form.cleaned_data["mode"],
            actor=Actor.from_request(request),
        )
        request.session[SESSION_ORG] = str(result.organization.pk)
        request.session[SESSION_ENV] = Environment.Kind.TEST
        base_url = request.build_absolute_uri("/").rstrip("/") or settings.SITE_URL
        response = render(
            request,
            "onboarding/done.html",
            {
                "organization": result.organization,
                "key": result.issued.plaintext,
                "curl": first_event_curl(base_url, result.issued.plaintext),
                "python": first_event_python(base_url, result.issued.plaintext),
                "fetch": first_event_fetch(base_url, result.issued.plaintext),
            },
            status=201,
        )
        response["Cache-Control"] = "no-store"
        return response
    return render(request, "onboarding/start.html", {"form": form})
