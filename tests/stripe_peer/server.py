"""The Stripe peer of the test suite: localstripe, plus what it lacks, on 127.0.0.1 only.

Run as ``python -m tests.stripe_peer.server --port N`` (the ``stripe_peer`` fixture
does). On top of localstripe's app this adds:

* no persistence: localstripe pickles its store to ``/tmp/localstripe.pickle`` on
  every write and loads it at start; both are disabled here (the store lives in memory
  and dies with the process);
* Stripe's idempotency: a POST with an ``Idempotency-Key`` already seen (same API key)
  gets the first response again (header ``Idempotent-Replayed: true``), as Stripe does;
* ``GET /v1/account`` (the account of the key: ``acct_`` + a hash of the key) and
  ``/v1/webhook_endpoints`` (create, retrieve, list, delete), wired to localstripe's
  own webhook sender;
* webhook delivery with real ``Stripe-Signature`` headers, recorded for the tests
  (``GET /_config/deliveries``) and dropped when the peer is flushed;
* ``DELETE /_config/data``: forget every object, webhook and delivery;
* the routes of every ``tests/stripe_peer/routes_*.py`` module (each defines
  ``register(app, peer)`` and may patch localstripe's resource classes).

``--port 0`` picks a free port; the first line on stdout is ``listening on PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import importlib
import json
import logging
import pkgutil
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, web

# -- no persistence: patch the store class before anything uses it ------------------------
from localstripe import resources
from localstripe.resources import Store

Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
Store.try_load_from_disk = lambda self: None  # type: ignore[method-assign]

from localstripe import server as ls_server  # noqa: E402
from localstripe import webhooks as ls_webhooks  # noqa: E402
from localstripe.errors import UserError  # noqa: E402

logger = logging.getLogger("stripe_peer")


class Peer:
    """State the peer adds to localstripe (all in memory)."""

    def __init__(self) -> None:
        # Bumped by a flush: webhooks scheduled before it are not delivered after it.
        self.generation = 0
        self.deliveries: list[dict[str, Any]] = []
        self.idempotent: dict[tuple[str, str], tuple[int, bytes, str]] = {}
        self.idempotency_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.webhook_delay = 0.2
        self.counters: dict[str, int] = {}

    def schedule(self, event: Any) -> None:
        """Deliver ``event`` (a localstripe ``Event``) to the registered webhooks, later."""
        schedule_webhook(event)

    @staticmethod
    def replace_route(app: web.Application, method: str, path: str, handler: Any) -> None:
        """Swap the handler of one of localstripe's routes (its extra routes captured the
        original functions, so patching the class is not enough for them)."""
        for route in app.router.routes():
            if route.method == method and route.resource and route.resource.canonical == path:
                route._handler = handler  # type: ignore[attr-defined]
                return
        raise LookupError(f"no route {method} {path}")

    def next_number(self, name: str) -> int:
        self.counters[name] = self.counters.get(name, 0) + 1
        return self.counters[name]

    def flush(self) -> None:
        resources.store.clear()
        ls_webhooks._webhooks.clear()
        self.generation += 1
        self.deliveries.clear()
        self.idempotent.clear()
        self.endpoints.clear()
        self.counters.clear()


peer = Peer()


def api_key_of(request: web.Request) -> str:
    return ls_server.get_api_key(request) or ""


# -- webhook delivery (localstripe's sender, with a generation check and a record) ----------


async def _send_webhook(event: Any, generation: int) -> None:
    payload = json.dumps(event._export(), indent=2, sort_keys=True).encode("utf-8")
    await asyncio.sleep(peer.webhook_delay)
    if generation != peer.generation:
        return
    for webhook_id, webhook in list(ls_webhooks._webhooks.items()):
        if webhook.events is not None and event.type not in webhook.events:
            continue
        timestamp = int(time.time())
        signed = b"%d.%s" % (timestamp, payload)
        signature = hmac.new(webhook.secret.encode(), signed, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": f"t={timestamp},v1={signature}",
        }
        record: dict[str, Any] = {
            "webhook": webhook_id,
            "url": webhook.url,
            "event": event.id,
            "type": event.type,
            "payload": payload.decode(),
            "headers": headers,
            "status": None,
        }
        peer.deliveries.append(record)
        try:
            async with (
                ClientSession(timeout=ClientTimeout(total=30)) as session,
                session.post(webhook.url, data=payload, headers=headers) as r,
            ):
                record["status"] = r.status
                record["body"] = (await r.text())[:500]
        except (ClientError, TimeoutError) as exc:
            record["status"] = 0
            record["error"] = str(exc)


_pending: set[asyncio.Future[None]] = set()


def schedule_webhook(event: Any) -> None:
    task = asyncio.ensure_future(_send_webhook(event, peer.generation))
    _pending.add(task)  # keep a reference until it is done
    task.add_done_callback(_pending.discard)


# localstripe's classes call ``schedule_webhook`` by the name they imported.
resources.schedule_webhook = schedule_webhook
ls_webhooks.schedule_webhook = schedule_webhook


# -- idempotency ----------------------------------------------------------------------------


@web.middleware
async def idempotency_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key:
        return await handler(request)
    cache_key = (api_key_of(request), key)
    lock = peer.idempotency_locks.setdefault(cache_key, asyncio.Lock())
    async with lock:
        if cache_key in peer.idempotent:
            status, body, content_type = peer.idempotent[cache_key]
            return web.Response(
                status=status,
                body=body,
                content_type=content_type,
                headers={"Idempotent-Replayed": "true"},
            )
        try:
            response = await handler(request)
        except UserError as exc:
            response = exc.to_response()
        if isinstance(response, web.Response) and response.status < 500:
            peer.idempotent[cache_key] = (
                response.status,
                response.body if isinstance(response.body, bytes) else b"",
                response.content_type,
            )
        return response


# -- account and webhook endpoints ----------------------------------------------------------


def json_response(data: Any, status: int = 200) -> web.Response:
    return ls_server.json_response(data, status=status)


async def get_account(request: web.Request) -> web.Response:
    digest = hashlib.sha256(api_key_of(request).encode()).hexdigest()[:16]
    return json_response(
        {"id": f"acct_{digest}", "object": "account", "country": "US", "default_currency": "usd"}
    )


async def create_webhook_endpoint(request: web.Request) -> web.Response:
    data = await ls_server.get_post_data(request) or {}
    url = data.get("url")
    events = data.get("enabled_events")
    if not isinstance(url, str) or not url.startswith("http"):
        raise UserError(400, "Invalid url")
    if isinstance(events, str):
        events = [events]
    if not isinstance(events, list) or not events:
        raise UserError(400, "enabled_events is required")
    endpoint_id = "we_" + secrets.token_hex(12)
    endpoint = {
        "id": endpoint_id,
        "object": "webhook_endpoint",
        "url": url,
        "enabled_events": events,
        "secret": "whsec_" + secrets.token_hex(24),
        "status": "enabled",
        "api_version": None,
        "description": data.get("description"),
        "metadata": data.get("metadata") or {},
        "livemode": False,
        "created": int(time.time()),
        "_key": api_key_of(request),
    }
    peer.endpoints[endpoint_id] = endpoint
    ls_webhooks.register_webhook(
        endpoint_id, url, endpoint["secret"], None if "*" in events else events
    )
    return json_response(_public(endpoint, secret=True))


def _public(endpoint: dict[str, Any], *, secret: bool = False) -> dict[str, Any]:
    return {k: v for k, v in endpoint.items() if k != "_key" and (secret or k != "secret")}


def _endpoint(request: web.Request) -> dict[str, Any]:
    endpoint = peer.endpoints.get(request.match_info["id"])
    # An account sees only its own endpoints.
    if endpoint is None or endpoint["_key"] != api_key_of(request):
        raise UserError(404, "No such webhook endpoint")
    return endpoint


async def retrieve_webhook_endpoint(request: web.Request) -> web.Response:
    return json_response(_public(_endpoint(request)))


async def delete_webhook_endpoint(request: web.Request) -> web.Response:
    endpoint = _endpoint(request)
    peer.endpoints.pop(endpoint["id"], None)
    ls_webhooks._webhooks.pop(endpoint["id"], None)
    return json_response({"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True})


async def list_webhook_endpoints(request: web.Request) -> web.Response:
    key = api_key_of(request)
    data = [_public(e) for e in peer.endpoints.values() if e["_key"] == key]
    return json_response({"object": "list", "data": data, "has_more": False, "url": request.path})


# -- test controls ----------------------------------------------------------------------------


async def flush(request: web.Request) -> web.Response:
    peer.flush()
    return web.Response()


async def deliveries(request: web.Request) -> web.Response:
    return json_response(peer.deliveries)


async def repoint_webhooks(request: web.Request) -> web.Response:
    data = await ls_server.get_post_data(request) or {}
    for webhook in ls_webhooks._webhooks.values():
        webhook.url = data["url"]
    return web.Response()


async def configure(request: web.Request) -> web.Response:
    data = await ls_server.get_post_data(request) or {}
    if "webhook_delay" in data:
        peer.webhook_delay = float(data["webhook_delay"])
    return json_response({"webhook_delay": peer.webhook_delay})


def build_app() -> web.Application:
    app = ls_server.app
    # Innermost: replays happen after authentication, as at Stripe.
    app.middlewares.append(idempotency_middleware)
    router = app.router
    router.add_get("/v1/account", get_account)
    router.add_post("/v1/webhook_endpoints", create_webhook_endpoint)
    router.add_get("/v1/webhook_endpoints", list_webhook_endpoints)
    router.add_get("/v1/webhook_endpoints/{id}", retrieve_webhook_endpoint)
    router.add_delete("/v1/webhook_endpoints/{id}", delete_webhook_endpoint)
    router.add_delete("/_config/all", flush)
    router.add_get("/_config/deliveries", deliveries)
    router.add_post("/_config/peer", configure)
    router.add_post("/_config/webhooks_url", repoint_webhooks)
    package = Path(__file__).resolve().parent
    for module in sorted(pkgutil.iter_modules([str(package)]), key=lambda m: m.name):
        if module.name.startswith("routes_"):
            routes = importlib.import_module(f"{__package__ or 'tests.stripe_peer'}.{module.name}")
            routes.register(app, peer)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    app = build_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    print(f"listening on {sock.getsockname()[1]}", flush=True)
    web.run_app(app, sock=sock, access_log=None, print=None, handle_signals=True)


if __name__ == "__main__":
    main()
