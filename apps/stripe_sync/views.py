"""The Stripe webhook receiver: dj-stripe's, behind limits for deliveries nobody signed.

Anyone who learns an endpoint's url can post to it, and dj-stripe stores every delivery
to a known endpoint, verified or not, as a ``WebhookEventTrigger``. In front of it
(docs/stripe.md, "Webhook limits"):

* a body over 1 MiB is 413 before anything reads it (``settings.REQUEST_BODY_LIMITS``,
  ``core.request_limits``); Stripe's own events are a few KB;
* a body with a NUL byte is 400 (no JSON Stripe sends has one, and PostgreSQL could not
  store it in the trigger's text column);
* an endpoint takes at most ``STRIPE_WEBHOOK_RATE_LIMIT_PER_SECOND`` deliveries a second
  (429 with ``Retry-After``: Stripe retries later);
* a client that sent ``STRIPE_WEBHOOK_INVALID_LIMIT`` unverified deliveries (dj-stripe's
  400: a missing or forged signature) within ``STRIPE_WEBHOOK_INVALID_WINDOW_SECONDS``
  gets 429 for the rest of that window, before dj-stripe stores anything;
* the stored body of an unverified delivery is cut to a few hundred characters
  (``webhooks.truncate_unverified``): enough to see what it was, not a store for
  whatever anyone posts.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from djstripe.views import ProcessWebhookView

from apps.core import ratelimit
from apps.core.middleware import client_ip
from apps.core.redis import get_redis

logger = logging.getLogger(__name__)

_receive = ProcessWebhookView.as_view()


def _blocked_key(ip: str) -> str:
    return f"stripe:webhook:blocked:{ip}"


def _too_many(retry_after: int) -> HttpResponse:
    response = HttpResponse("Too many webhook deliveries.", status=429, content_type="text/plain")
    response["Retry-After"] = str(max(1, retry_after))
    return response


def _blocked_for(ip: str) -> int:
    """Seconds ``ip`` stays blocked for its unverified deliveries (0: not blocked)."""
    try:
        return max(0, int(get_redis().ttl(_blocked_key(ip))))
    except redis.RedisError:  # limits protect capacity, not correctness
        return 0


def _count_unverified(ip: str) -> None:
    window = settings.STRIPE_WEBHOOK_INVALID_WINDOW_SECONDS
    wait = ratelimit.hit(
        f"stripe:webhook:invalid:{ip}", settings.STRIPE_WEBHOOK_INVALID_LIMIT, window
    )
    if wait is not None:
        logger.warning("stripe webhook: %s blocked %s s for unverified deliveries", ip, wait)
        with contextlib.suppress(redis.RedisError):
            get_redis().set(_blocked_key(ip), 1, ex=wait)


@csrf_exempt
def webhook(request: HttpRequest, uuid: Any) -> HttpResponse:
    ip = client_ip(request)
    blocked = _blocked_for(ip)
    if blocked:
        return _too_many(blocked)
    wait = ratelimit.hit(
        f"stripe:webhook:endpoint:{uuid}", settings.STRIPE_WEBHOOK_RATE_LIMIT_PER_SECOND, 1
    )
    if wait is not None:
        return _too_many(wait)
    if request.method == "POST" and b"\x00" in request.body:
        _count_unverified(ip)
        return HttpResponse("NUL byte in the body.", status=400, content_type="text/plain")
    response: HttpResponse = _receive(request, uuid=uuid)
    if response.status_code == 400:  # no or a forged signature, or not an event
        _count_unverified(ip)
    return response
