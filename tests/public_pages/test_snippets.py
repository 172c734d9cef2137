"""The code on the public pages runs as written against our server.

Each file in ``snippets/`` is copied verbatim from ``reference/public-pages``
(the JavaScript with ``fetch``, the shell with ``curl``). Only the base URL and
the key placeholders are swapped, as a reader would. JavaScript runs in Node
with the few variables its page assumes (``response``, ``user``, ``openai``,
``app``) defined beforehand; every HTTP answer is recorded by wrapping
``fetch``. curl runs unchanged; a ``.curlrc`` makes it print the status code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from apps.customers.models import Customer
from apps.demo.services import DEMO_KEYS, demo_load
from apps.events.models import Event

SNIPPETS = Path(__file__).parent / "snippets"
BASE_URLS = ("https://api.tansohq.com", "https://observe.tansohq.com", "http://localhost:8080")
# Cloudflare's e-mail obfuscation left this in the page's text; a reader types an address.
OBFUSCATED_EMAIL = "[email protected]"

NODE_PREAMBLE = """
const __realFetch = globalThis.fetch;
const __calls = [];
const __inflight = [];
globalThis.fetch = (url, init) => {
  const call = (async () => {
    const r = await __realFetch(url, init);
    __calls.push({ url: String(url), status: r.status, body: await r.clone().text() });
    return r;
  })();
  __inflight.push(call);
  return call;
};
// What the pages' surrounding code would have in scope.
const response = { usage: { total_tokens: 1847 } };
const res = { usage: { prompt_tokens: 150, completion_tokens: 80 } };
const user = { id: 'user_42' };
const openai = {
  chat: { completions: { create: async () => ({ usage: { total_tokens: 1200 } }) } },
};
const __handlers = [];
const app = {
  post: (path, handler) => __handlers.push(
    handler({ body: {}, userId: 'user_42' }, { json() {}, status() { return this; } })
  ),
};
"""

NODE_POSTAMBLE = """
await Promise.all(__handlers);
while (__inflight.length) { await __inflight.shift().catch(() => {}); }
console.log(JSON.stringify(__calls));
"""

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("node") is None, reason="Node.js runs the JavaScript snippets"),
]


def swap(text: str, base_url: str, key: str) -> str:
    for url in BASE_URLS:
        text = text.replace(url, base_url)
    for placeholder in ("YOUR_API_KEY", "obs_...", DEMO_KEYS["sk_test"]):
        text = text.replace(placeholder, key)
    return text.replace(OBFUSCATED_EMAIL, "jane@example.com")


def run_js(
    name: str, base_url: str, key: str, tmp_path: Path, env: dict | None = None
) -> list[dict]:
    script = tmp_path / f"{name}.mjs"
    snippet = swap((SNIPPETS / name).read_text(), base_url, key)
    script.write_text(NODE_PREAMBLE + snippet + NODE_POSTAMBLE)
    done = subprocess.run(
        ["node", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        check=True,
    )
    calls = json.loads(done.stdout.strip().splitlines()[-1])
    assert calls, done.stderr
    return calls


def run_curl(name: str, base_url: str, key: str, tmp_path: Path) -> tuple[int, dict]:
    (tmp_path / ".curlrc").write_text('silent\nwrite-out = "\\n%{http_code}"\n')
    done = subprocess.run(
        ["bash", "-c", swap((SNIPPETS / name).read_text(), base_url, key)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "CURL_HOME": str(tmp_path), "HOME": str(tmp_path)},
        check=True,
    )
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


@pytest.fixture
def demo(live_server):
    demo_load()
    return live_server.url


def test_observe_landing_event(demo, tmp_path):
    (call,) = run_js("000_observe_event.js", demo, DEMO_KEYS["sk_test"], tmp_path)
    assert call["status"] == 201, call
    event = json.loads(call["body"])
    assert event["usageUnits"] == "1847"
    # Model and total tokens without a split: usageUnits priced as input tokens, marked
    # as an estimate with how to make it exact (tests/events/test_estimated_cost.py).
    assert event["costSource"] == "estimated" and Decimal(event["costAmount"]) > 0
    assert event["costEstimate"]["inputTokens"] == 1847


def test_one_event_call_and_its_curl(demo, tmp_path):
    (call,) = run_js("001_one_event_call.js", demo, DEMO_KEYS["sk_test"], tmp_path)
    assert call["status"] == 201, call
    assert json.loads(call["body"])["costAmount"] == "0.05"

    status, body = run_curl("001_curl.sh", demo, DEMO_KEYS["sk_test"], tmp_path)
    assert status == 201, body
    assert body["eventIdempotencyKey"] == "550e8400-e29b-41d4-a716-446655440000"
    # The page: "Duplicate eventIdempotencyKey values return HTTP 409 -- safe to retry."
    status, body = run_curl("001_curl.sh", demo, DEMO_KEYS["sk_test"], tmp_path)
    assert status == 409 and body["error"]["code"] == "duplicate_event"
    assert Event.objects.filter(idempotency_key="550e8400-e29b-41d4-a716-446655440000").count() == 1


def test_quickstart_customer_then_in_practice_event(demo, tmp_path):
    (call,) = run_js("002_create_customer.js", demo, DEMO_KEYS["sk_test"], tmp_path)
    assert call["status"] == 201, call
    customer = Customer.objects.get(reference_id="cus_123")
    assert (customer.email, customer.first_name, customer.last_name) == (
        "jane@example.com",
        "Jane",
        "Smith",
    )

    (call,) = run_js("002_in_practice.js", demo, DEMO_KEYS["sk_test"], tmp_path)
    assert call["status"] == 201, call
    event = json.loads(call["body"])
    # 1200 * 0.00003 in JavaScript is the double 0.036000000000000004; it arrives as that
    # literal and is kept to the ledger's 12 places, exactly.
    assert Decimal(event["costAmount"]) == Decimal("0.036")
    assert event["revenueAmount"] == "0.05"
    assert Decimal(event["margin"]) == Decimal("0.014")
    assert event["customerReferenceId"] == "user_42"


def test_observe_signup_key_me_and_ingest(demo, tmp_path):
    status, signup = run_curl("003_signup.sh", demo, "", tmp_path)
    assert status == 201, signup
    key = signup["key"]
    assert key.startswith("obs_") and signup["budget_cents"] == 5000
    assert set(signup["scopes"]) == {"usage.read", "events.write", "proxy.chat"}

    status, me = run_curl("003_sdk_keys_me.sh", demo, key, tmp_path)
    assert status == 200, me
    assert set(me["scopes"]) == {"usage.read", "events.write", "proxy.chat"}

    status, result = run_curl("003_ingest.sh", demo, key, tmp_path)
    assert status == 200, result
    assert result["accepted"] == 1
    event = Event.objects.get(
        environment__organization__memberships__user__email="agent@yourapp.com"
    )
    # gpt-4o-mini at 0.15 / 0.60 USD per million tokens (genai-prices' own figures).
    assert event.cost_usd == Decimal("0.0000705")


def test_observe_fire_and_forget_ingest(demo, tmp_path):
    (call,) = run_js(
        "003_observe_ingest.js",
        demo,
        "",
        tmp_path,
        env={"OBSERVE_API_KEY": DEMO_KEYS["obs_test"]},
    )
    assert call["status"] == 200, call
    assert json.loads(call["body"])["accepted"] == 1
    assert Event.objects.get(customer__reference_id="user_42").cost_usd == Decimal("0.0000705")
