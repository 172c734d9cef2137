"""``Tanso`` and ``AsyncTanso``: the API's resources, and events that never block."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from decimal import Decimal
from typing import Any, TypeVar

import httpx2

from ._context import Attribution
from ._delivery import Delivery, ErrorCallback, OverflowCallback
from ._http import AsyncHTTP, Settings, SyncHTTP, new_idempotency_key
from ._resources import (
    JSON,
    Analytics,
    Credits,
    Customers,
    Entitlements,
    Events,
    Features,
    Invoices,
    Plans,
    Subscriptions,
)
from ._wrap import instrument

C = TypeVar("C")
Amount = Decimal | int | str


class _Drains:
    """Streams being read to their end in the background: flush waits for them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0

    def started(self) -> None:
        with self._cond:
            self._count += 1

    def finished(self) -> None:
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    def wait(self, deadline: float | None) -> bool:
        with self._cond:
            while self._count:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    @property
    def count(self) -> int:
        return self._count


class _Base:
    _delivery: Delivery

    def __init__(
        self,
        settings: Settings,
        *,
        batch_size: int,
        flush_interval: float,
        max_buffer: int,
        sync_delivery: bool,
        on_overflow: OverflowCallback | None,
        on_error: ErrorCallback | None,
    ) -> None:
        self._settings = settings
        self._drains = _Drains()
        self._delivery = Delivery(
            settings,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_buffer=max_buffer,
            sync=sync_delivery,
            on_overflow=on_overflow,
            on_error=on_error,
        )

    # -- events in the background -----------------------------------------------------

    def track(
        self,
        *,
        event_name: str,
        customer_reference_id: str,
        feature_key: str,
        model: str | None = None,
        model_provider: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        usage_units: Amount | None = None,
        cost_amount: Amount | None = None,
        revenue_amount: Amount | None = None,
        duration_ms: int | None = None,
        trace_id: str | None = None,
        meta: Mapping[str, Any] | None = None,
        occurred_at: dt.datetime | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Queue one event for delivery and return its idempotency key (fixed now, so
        every retry of it is the same event). Never blocks, unless ``sync_delivery``."""
        event: dict[str, Any] = {
            "eventName": event_name,
            "customerReferenceId": customer_reference_id,
            "featureKey": feature_key,
            "occurredAt": (occurred_at or dt.datetime.now(dt.timezone.utc)).isoformat(),
            "idempotencyKey": idempotency_key or new_idempotency_key(),
        }
        optional = {
            "model": model,
            "modelProvider": model_provider,
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "cacheReadTokens": cache_read_tokens,
            "cacheWriteTokens": cache_write_tokens,
            "reasoningTokens": reasoning_tokens,
            "usageUnits": str(usage_units) if usage_units is not None else None,
            "costAmount": str(cost_amount) if cost_amount is not None else None,
            "revenueAmount": str(revenue_amount) if revenue_amount is not None else None,
            "durationMs": duration_ms,
            "traceId": trace_id,
            "meta": dict(meta) if meta else None,
        }
        event.update({name: value for name, value in optional.items() if value is not None})
        return self.track_event(event)

    def track_event(self, event: Mapping[str, Any]) -> str:
        """Queue an event given as the API's JSON object (an ``idempotencyKey`` is added
        when it has none)."""
        body = dict(event)
        body.setdefault("idempotencyKey", new_idempotency_key())
        body.setdefault("occurredAt", dt.datetime.now(dt.timezone.utc).isoformat())
        self._delivery.enqueue(body)
        return str(body["idempotencyKey"])

    def pending(self) -> int:
        """Events not yet answered by the server (queued, in flight or held)."""
        return self._delivery.pending() + self._drains.count

    def flush(self, timeout: float | None = None) -> bool:
        """Send every queued event, waiting at most ``timeout`` seconds; True when all were
        answered. Streams still being read in the background are waited for first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._drains.wait(deadline):
            return False
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._delivery.flush(remaining)

    def wrap(
        self,
        client: C,
        *,
        customer: str | None = None,
        feature: str | None = None,
        trace: str | None = None,
        event_name: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> C:
        """Meter ``client`` (OpenAI, AsyncOpenAI, Anthropic, AsyncAnthropic) in place."""
        attribution = Attribution(customer, feature, trace, event_name, dict(meta or {}))
        return instrument(client, self, attribution)  # type: ignore[arg-type]

    # -- used by metered streams ---------------------------------------------------------

    def drain_started(self) -> None:
        self._drains.started()

    def drain_finished(self) -> None:
        self._drains.finished()

    def run_drain(self, drain: Callable[[], None]) -> None:
        try:
            drain()
        finally:
            self._drains.finished()

    async def run_drain_async(self, drain: Awaitable[None]) -> None:
        try:
            await drain
        finally:
            self._drains.finished()


class Tanso(_Base):
    """The synchronous client.

    ``Tanso(api_key=..., base_url=...)`` (defaults: ``TANSO_API_KEY``, ``TANSO_BASE_URL``,
    ``http://localhost:8080``). API calls retry on connection errors, 408, 429 and 5xx
    (``max_retries``), each mutating call under one idempotency key for all attempts.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_buffer: int = 10_000,
        sync_delivery: bool = False,
        on_overflow: OverflowCallback | None = None,
        on_error: ErrorCallback | None = None,
        http_client: httpx2.Client | None = None,
    ) -> None:
        settings = Settings.from_args(api_key, base_url, timeout, max_retries)
        super().__init__(
            settings,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_buffer=max_buffer,
            sync_delivery=sync_delivery,
            on_overflow=on_overflow,
            on_error=on_error,
        )
        self._http = SyncHTTP(settings, http_client)
        call = self._http.request
        self.events: Events[JSON] = Events(call)
        self.customers: Customers[JSON] = Customers(call)
        self.features: Features[JSON] = Features(call)
        self.plans: Plans[JSON] = Plans(call)
        self.subscriptions: Subscriptions[JSON] = Subscriptions(call)
        self.entitlements: Entitlements[JSON] = Entitlements(call)
        self.credits: Credits[JSON] = Credits(call)
        self.invoices: Invoices[JSON] = Invoices(call)
        self.analytics: Analytics[JSON] = Analytics(call)

    def close(self, timeout: float | None = 5.0) -> bool:
        """Flush (up to ``timeout``) and release connections; True when nothing was left."""
        done = self.flush(timeout)
        done = self._delivery.close(timeout=0) and done
        self._http.close()
        return done

    def __enter__(self) -> Tanso:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncTanso(_Base):
    """The asyncio client: the same resources, awaited. Events still go out from a
    background thread, so ``track`` never awaits."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_buffer: int = 10_000,
        sync_delivery: bool = False,
        on_overflow: OverflowCallback | None = None,
        on_error: ErrorCallback | None = None,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        settings = Settings.from_args(api_key, base_url, timeout, max_retries)
        super().__init__(
            settings,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_buffer=max_buffer,
            sync_delivery=sync_delivery,
            on_overflow=on_overflow,
            on_error=on_error,
        )
        self._http = AsyncHTTP(settings, http_client)
        call: Callable[..., Coroutine[Any, Any, Any]] = self._http.request
        self.events: Events[Awaitable[JSON]] = Events(call)
        self.customers: Customers[Awaitable[JSON]] = Customers(call)
        self.features: Features[Awaitable[JSON]] = Features(call)
        self.plans: Plans[Awaitable[JSON]] = Plans(call)
        self.subscriptions: Subscriptions[Awaitable[JSON]] = Subscriptions(call)
        self.entitlements: Entitlements[Awaitable[JSON]] = Entitlements(call)
        self.credits: Credits[Awaitable[JSON]] = Credits(call)
        self.invoices: Invoices[Awaitable[JSON]] = Invoices(call)
        self.analytics: Analytics[Awaitable[JSON]] = Analytics(call)

    async def aflush(self, timeout: float | None = None) -> bool:
        """``flush`` without blocking the event loop (background stream reads on this
        loop keep running while it waits)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._drains.count:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return await asyncio.to_thread(self._delivery.flush, remaining)

    async def aclose(self, timeout: float | None = 5.0) -> bool:
        done = await self.aflush(timeout)
        done = self._delivery.close(timeout=0) and done
        await self._http.aclose()
        return done

    async def __aenter__(self) -> AsyncTanso:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
