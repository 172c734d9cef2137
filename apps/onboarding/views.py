"""First run after signup: name the organization, pick Observe or Platform,
see a test secret key once with a curl for the first event."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from apps.accounts.audit import Actor
from apps.accounts.middleware import SESSION_ENV, SESSION_ORG
from apps.accounts.models import Environment

from .forms import OnboardingForm
from .services import onboarding_complete


def first_event_curl(base_url: str, key: str) -> str:
    body = {
        "eventIdempotencyKey": "first-event-1",
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
    return (
        f"curl -X POST {base_url}/api/v1/client/events \\\n"
        '  -H "Content-Type: application/json" \\\n'
        f'  -H "Authorization: Bearer {key}" \\\n'
        f"  -d '{json.dumps(body, indent=2)}'"
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
            },
            status=201,
        )
        response["Cache-Control"] = "no-store"
        return response
    return render(request, "onboarding/start.html", {"form": form})
