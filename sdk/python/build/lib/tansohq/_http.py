"""One request with retries, for the sync and the async client.

A call is retried on connection errors, 408, 429 and 5xx, with exponential backoff
and jitter (or the server's ``Retry-After``). A mutating call carries an
``Idempotency-Key`` chosen before the first attempt, so a retry can never act twice:
the server replays the first answer for 24 hours.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx2

from ._errors import APIConnectionError, APIStatusError, error_for
from ._version import __version__

DEFAULT_BASE_URL = "http://localhost:8080"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_RETRY_AFTER = 60.0

Params = Mapping[str, str | int | None]


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(body: Any) -> bytes:
    """JSON with Decimals as exact strings (the API reads numbers and strings alike)."""
    return json.dumps(body, default=_default, separators=(",", ":")).encode()


def new_idempotency_key() -> str:
    return f"sdk_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Settings:
    api_key: str
    base_url: str
    timeout: float = 30.0
    max_retries: int = 2
    backoff: float = 0.5
    max_backoff: float = 8.0
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(
        cls,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        max_retries: int,
    ) -> Settings:
        key = api_key or os.environ.get("TANSO_API_KEY")
        if not key:
            raise ValueError("pass api_key= or set TANSO_API_KEY")
        url = (base_url or os.environ.get("TANSO_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        return cls(api_key=key, base_url=url, timeout=timeout, max_retries=max_retries)

    def request_headers(self, idempotency_key: str | None) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": f"tansohq-python/{__version__}",
            **self.headers,
        }
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
        base = min(self.max_backoff, self.backoff * (2**attempt))
        return float(base * (0.5 + random.random() / 2))  # noqa: S311 - jitter, not crypto


def retry_after_of(response: httpx2.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def decode(response: httpx2.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def _prepare(
    settings: Settings, method: str, idempotency_key: str | None, body: Any
) -> tuple[dict[str, str], bytes | None]:
    method = method.upper()
    if method in MUTATING and idempotency_key is None:
        idempotency_key = new_idempotency_key()
    content = dumps(body) if body is not None else None
    return settings.request_headers(idempotency_key if method in MUTATING else None), content


def _clean(params: Params | None) -> dict[str, str | int] | None:
    if not params:
        return None
    return {name: value for name, value in params.items() if value is not None}


class SyncHTTP:
    def __init__(self, settings: Settings, client: httpx2.Client | None = None) -> None:
        self.settings = settings
        self._client = client or httpx2.Client(timeout=settings.timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Params | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        headers, content = _prepare(self.settings, method, idempotency_key, body)
        url = self.settings.base_url + path
        attempt = 0
        while True:
            try:
                response = self._client.request(
                    method, url, content=content, params=_clean(params), headers=headers
                )
            except httpx2.TransportError as exc:
                if attempt >= self.settings.max_retries:
                    raise APIConnectionError(f"{method} {path}: {exc}") from exc
                time.sleep(self.settings.delay(attempt, None))
                attempt += 1
                continue
            if response.status_code < 400:
                return decode(response)
            error = error_for(response.status_code, decode(response), retry_after_of(response))
            if response.status_code in RETRY_STATUSES and attempt < self.settings.max_retries:
                time.sleep(self.settings.delay(attempt, getattr(error, "retry_after", None)))
                attempt += 1
                continue
            raise error

    def close(self) -> None:
        self._client.close()


class AsyncHTTP:
    def __init__(self, settings: Settings, client: httpx2.AsyncClient | None = None) -> None:
        self.settings = settings
        self._client = client or httpx2.AsyncClient(timeout=settings.timeout)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Params | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        headers, content = _prepare(self.settings, method, idempotency_key, body)
        url = self.settings.base_url + path
        attempt = 0
        while True:
            try:
                response = await self._client.request(
                    method, url, content=content, params=_clean(params), headers=headers
                )
            except httpx2.TransportError as exc:
                if attempt >= self.settings.max_retries:
                    raise APIConnectionError(f"{method} {path}: {exc}") from exc
                await asyncio.sleep(self.settings.delay(attempt, None))
                attempt += 1
                continue
            if response.status_code < 400:
                return decode(response)
            error: APIStatusError = error_for(
                response.status_code, decode(response), retry_after_of(response)
            )
            if response.status_code in RETRY_STATUSES and attempt < self.settings.max_retries:
                await asyncio.sleep(
                    self.settings.delay(attempt, getattr(error, "retry_after", None))
                )
                attempt += 1
                continue
            raise error

    async def aclose(self) -> None:
        await self._client.aclose()
