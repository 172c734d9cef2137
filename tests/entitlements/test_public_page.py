"""The Platform snippet of the public front page runs as written, in Node, against a live
server: check -> (denied / served) -> the Observe event call -> the next check sees it.

The snippet (``tests/public_pages/snippets/000_platform_check.js``, verbatim) is the
body of a request handler on the page (it ends with ``return res.status(403)...``), so
it runs inside one; the handler records whether it refused (403) or went on to serve.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from django.utils import timezone

from apps.subscriptions.services import subscription_create
from tests.plans.helpers import make_plan
from tests.public_pages.test_snippets import NODE_PREAMBLE, SNIPPETS, swap

from .conftest import SYSTEM, rule

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("node") is None, reason="Node.js runs the snippets"),
]

HANDLER_HEAD = """
const __outcomes = [];
const __handler = async (req, res) => {
"""
HANDLER_TAIL = """
__outcomes.push('served');
return res.json({ ok: true });
};
await __handler({ body: {} }, {
  status(code) { __outcomes.push(code); return this; },
  json() { return this; },
});
while (__inflight.length) { await __inflight.shift().catch(() => {}); }
console.log(JSON.stringify({ calls: __calls, outcomes: __outcomes }));
"""


def run(name: str, base_url: str, key: str, tmp_path: Path, *, handler: bool) -> dict:
    snippet = swap((SNIPPETS / name).read_text(), base_url, key)
    if handler:
        script = NODE_PREAMBLE + HANDLER_HEAD + snippet + HANDLER_TAIL
    else:
        script = (
            NODE_PREAMBLE
            + snippet
            + "\nwhile (__inflight.length) { await __inflight.shift().catch(() => {}); }\n"
            + "console.log(JSON.stringify({ calls: __calls, outcomes: [] }));\n"
        )
    path = tmp_path / f"{name}.mjs"
    path.write_text(script)
    done = subprocess.run(
        ["node", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_check_snippet_then_event_then_check(live_server, tenant, tmp_path):
    url, key = live_server.url, tenant.sk_test

    refused = run("000_platform_check.js", url, key, tmp_path, handler=True)
    assert refused["outcomes"] == [403]
    (call,) = refused["calls"]
    assert call["status"] == 200
    assert json.loads(call["body"])["reason"]["code"] == "no_subscription"

    plan = make_plan(
        tenant.test,
        "pro",
        features={"ai_summarization": rule(price="0.0001", cap="3000")},
    )
    from apps.customers.models import Customer

    customer = Customer.objects.create(environment=tenant.test, reference_id="cus_123")
    subscription_create(
        environment=tenant.test,
        customer=customer,
        plan=plan,
        now=timezone.now() - dt.timedelta(days=2),
        actor=SYSTEM,
    )

    served = run("000_platform_check.js", url, key, tmp_path, handler=True)
    assert served["outcomes"] == ["served"]

    (event,) = run("000_observe_event.js", url, key, tmp_path, handler=False)["calls"]
    assert event["status"] == 201
    recorded = json.loads(event["body"])
    assert recorded["usageUnits"] == "1847"
    assert recorded["revenueAmount"] == "0.1847"  # 1847 x 0.0001, from the plan

    check = tenant.api().post(
        "/api/v1/client/entitlements/check",
        {"customerReferenceId": "cus_123", "featureKey": "ai_summarization"},
        format="json",
    )
    assert check.json()["usage"]["used"] == "1847"
    assert run("000_platform_check.js", url, key, tmp_path, handler=True)["outcomes"] == ["served"]

    (again,) = run("000_observe_event.js", url, key, tmp_path, handler=False)["calls"]
    assert json.loads(again["body"])["usageLimitExceeded"] is True  # 3694 of 3000
    assert run("000_platform_check.js", url, key, tmp_path, handler=True)["outcomes"] == [403]
