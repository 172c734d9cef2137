"""The onboarding done page: snippets pre-filled with the shown key (each runs as
written against a live server), and the panel that turns green on the first event."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys

import pytest
from django.test import Client

from apps.events.models import Event
from apps.onboarding.views import first_event_curl, first_event_fetch, first_event_python
from tests.conftest import web_as
from tests.factories import UserFactory

from .conftest import at, event, ingest
from .html import find_one

HTMX = {"HTTP_HX_REQUEST": "true"}


def onboard(client: Client) -> tuple[str, str]:
    response = client.post("/onboarding/", {"name": "Startup", "mode": "observe"})
    assert response.status_code == 201
    content = response.content.decode()
    return content, re.search(r"sk_test_[0-9a-f]{32}", content).group(0)


@pytest.mark.django_db
def test_done_page_has_three_snippets_with_the_key_and_a_polling_panel(catalog):
    client = web_as(UserFactory())
    content, key = onboard(client)
    text = html.unescape(content)
    assert first_event_curl("http://testserver", key) in text
    assert first_event_python("http://testserver", key) in text
    assert first_event_fetch("http://testserver", key) in text
    panel = find_one(content, data_testid="first-event")
    assert panel["data-state"] == "waiting"
    assert panel["hx-get"] == "/dashboard/first-event/?env=test"
    assert panel["hx-trigger"] == "load"


@pytest.mark.django_db
def test_panel_waits_then_turns_green_when_the_first_event_arrives(catalog):
    client = web_as(UserFactory())
    _content, key = onboard(client)
    waiting = find_one(
        client.get("/dashboard/first-event/?env=test", **HTMX).content, data_testid="first-event"
    )
    assert waiting["data-state"] == "waiting"
    assert waiting["hx-trigger"] == "every 2s"  # keeps polling

    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    ingest(api, event("cus_123", "ai_summarization", when=at(1), cost="0.01"))
    answer = client.get("/dashboard/first-event/?env=test", **HTMX).content
    received = find_one(answer, data_testid="first-event")
    assert received["data-state"] == "received"
    assert "hx-get" not in received and "hx-trigger" not in received  # polling stops
    assert b"cus_123" in answer
    # The live environment has none yet; a bad ?env= is the current environment.
    live = find_one(
        client.get("/dashboard/first-event/?env=live").content, data_testid="first-event"
    )
    assert live["data-state"] == "waiting"
    bogus = find_one(
        client.get("/dashboard/first-event/?env=prod").content, data_testid="first-event"
    )
    assert bogus["data-state"] == "received"


@pytest.mark.django_db
def test_panel_never_shows_another_organizations_event(tenant, outsider, catalog):
    ingest(outsider.api(), event("cus_outsider", "chat", when=at(1), cost="1"))
    panel = find_one(
        web_as(tenant.owner).get("/dashboard/first-event/?env=test").content,
        data_testid="first-event",
    )
    assert panel["data-state"] == "waiting"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("language", ["curl", "python", "javascript"])
def test_snippets_run_as_written_against_a_live_server(tenant, catalog, live_server, language):
    key = tenant.sk_test
    if language == "curl":
        if shutil.which("curl") is None:
            pytest.fail("curl is not installed")
        command = ["bash", "-c", first_event_curl(live_server.url, key)]
    elif language == "python":
        command = [sys.executable, "-c", first_event_python(live_server.url, key)]
    else:
        if shutil.which("node") is None:
            pytest.fail("node is not installed")
        command = ["node", "--input-type=module", "-e", first_event_fetch(live_server.url, key)]
    # Run twice, as a person trying it again would: each run sends its own idempotency
    # key, so the second is a second event, not a 409 duplicate.
    for _ in range(2):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert "201" in result.stdout or '"id"' in result.stdout, result.stdout
        assert "duplicate" not in result.stdout, result.stdout
    stored = list(Event.objects.filter(environment=tenant.test))
    assert len(stored) == 2
    assert len({event.idempotency_key for event in stored}) == 2
    assert all(e.cost_source == "catalog" and e.model == "gpt-4o" for e in stored)
