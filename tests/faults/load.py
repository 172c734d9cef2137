"""A bounded load of concurrent clients against the web server, recording every answer.

One thread per kind of request, each in a loop with a short pause (the machine has two
cores shared with other work): entitlement checks (the lean path, the GET form and the
evaluate call), single events and batches with idempotency keys, ``/readyz``, the
dashboard login and the programmatic signup. Every answer is kept with its timing, and
every event key with whether the server acknowledged it (a 2xx that stored it, or 409
``duplicate_event``: stored before).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import re
import threading
import time
import uuid
from typing import Any

CLIENT_TIMEOUT = 20.0  # seconds: longer than any fault lasts
READYZ_TIMEOUT = 2.0  # a probe that gets no answer this fast counts as "not ready"


@dataclasses.dataclass(frozen=True)
class Answer:
    op: str
    started: float  # time.monotonic()
    ended: float
    status: int | None  # None: no answer (connection error, timeout)
    code: str | None = None  # error.code, or the check's reason.code
    allowed: bool | None = None
    retry_after: str | None = None
    failure: str | None = None  # what went wrong when there was no answer

    def describe(self) -> str:
        return f"{self.op} {self.status} {self.code or ''} {self.failure or ''}".strip()


class Http:
    """One keep-alive connection per thread, reopened after any failure."""

    def __init__(self, port: int, timeout: float = CLIENT_TIMEOUT) -> None:
        self.port, self.timeout = port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
        sent = {"Host": "127.0.0.1", **(headers or {})}
        if body is not None and not isinstance(body, bytes):
            sent["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=data, headers=sent)
            response = self.conn.getresponse()
            payload = response.read()
        except Exception:
            self.close()
            raise
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, payload

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _json(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def error_code(payload: bytes) -> str | None:
    error = _json(payload).get("error")
    return error.get("code") if isinstance(error, dict) else None


class Load:
    """Start with :meth:`start`, stop with :meth:`stop`; answers in :attr:`answers`."""

    def __init__(self, port: int, seed: dict[str, Any], tag: str) -> None:
        self.port, self.seed, self.tag = port, seed, tag
        self.answers: list[Answer] = []
        self.sent: set[str] = set()  # every event key sent
        self.acked: set[str] = set()  # keys the server acknowledged as stored
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.auth = {"Authorization": f"Bearer {seed['key']}"}

    # -- the clients ---------------------------------------------------------------------

    def start(self) -> None:
        plan: list[tuple[str, Any, float]] = [
            ("check", self.check, 0.01),
            ("check", self.check, 0.01),
            ("check_get", self.check_get, 0.05),
            ("evaluate", self.evaluate, 0.05),
            ("event", self.event, 0.02),
            ("event", self.event, 0.02),
            ("batch", self.batch, 0.05),
            ("readyz", self.readyz, 0.1),
            ("login", self.login, 0.1),
            ("signup", self.signup, 0.1),
        ]
        for name, work, pause in plan:
            thread = threading.Thread(
                target=self._loop, args=(name, work, pause), name=f"load-{name}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(CLIENT_TIMEOUT + 5)

    def _loop(self, name: str, work: Any, pause: float) -> None:
        http_client = Http(self.port, READYZ_TIMEOUT if name == "readyz" else CLIENT_TIMEOUT)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                answer = work(http_client, started)
            except Exception as exc:  # no answer at all: recorded, never raised
                answer = Answer(name, started, time.monotonic(), None, failure=repr(exc))
            with self._lock:
                self.answers.append(answer)
            self._stop.wait(pause)
        http_client.close()

    def _answer(
        self, op: str, started: float, status: int, headers: dict[str, str], payload: bytes
    ) -> Answer:
        return Answer(
            op,
            started,
            time.monotonic(),
            status,
            code=error_code(payload),
            retry_after=headers.get("retry-after"),
        )

    def _decision(self, op: str, started: float, status: int, payload: bytes) -> Answer:
        body = _json(payload)
        if status != 200:
            return Answer(op, started, time.monotonic(), status, code=error_code(payload))
        reason = body.get("reason")
        return Answer(
            op,
            started,
            time.monotonic(),
            status,
            code=reason.get("code") if isinstance(reason, dict) else None,
            allowed=body.get("allowed") if isinstance(body.get("allowed"), bool) else None,
        )

    def check(self, client: Http, started: float) -> Answer:
        body = {
            "customerReferenceId": self.seed["customer"],
            "featureKey": self.seed["feature"],
            "units": 1,
        }
        status, _h, payload = client.request(
            "POST", "/api/v1/client/entitlements/check", body, self.auth
        )
        return self._decision("check", started, status, payload)

    def check_get(self, client: Http, started: float) -> Answer:
        path = f"/api/v1/client/entitlements/{self.seed['customer']}/{self.seed['feature']}"
        status, _h, payload = client.request("GET", path + "?units=1", None, self.auth)
        return self._decision("check_get", started, status, payload)

    def evaluate(self, client: Http, started: float) -> Answer:
        body = {
            "customerReferenceId": self.seed["customer"],
            "featureKey": self.seed["feature"],
            "usage": {"usageUnits": 1},
        }
        status, _h, payload = client.request("POST", "/api/v1/client/entitlements", body, self.auth)
        return self._decision("evaluate", started, status, payload)

    def _event_body(self, key: str) -> dict[str, Any]:
        return {
            "eventName": "chat.completion",
            "customerReferenceId": self.seed["customer"],
            "featureKey": self.seed["feature"],
            "usageUnits": 1,
            "costAmount": "0.001",
            "meta": {"scenario": self.tag, "key": key},
        }

    def new_key(self) -> str:
        key = f"{self.tag}-{uuid.uuid4().hex}"
        with self._lock:
            self.sent.add(key)
        return key

    def _ack(self, keys: list[str]) -> None:
        with self._lock:
            self.acked.update(keys)

    def send_event(self, client: Http, key: str, started: float) -> Answer:
        body = {**self._event_body(key), "eventIdempotencyKey": key}
        status, headers, payload = client.request("POST", "/api/v1/client/events", body, self.auth)
        answer = self._answer("event", started, status, headers, payload)
        if status == 201 or (status == 409 and answer.code == "duplicate_event"):
            self._ack([key])
        return answer

    def event(self, client: Http, started: float) -> Answer:
        return self.send_event(client, self.new_key(), started)

    def send_batch(self, client: Http, keys: list[str], started: float) -> Answer:
        body = {"events": [{**self._event_body(k), "idempotencyKey": k} for k in keys]}
        status, headers, payload = client.request("POST", "/api/events/ingest", body, self.auth)
        answer = self._answer("batch", started, status, headers, payload)
        if status == 200:
            items = _json(payload).get("events") or []
            self._ack(
                [
                    item["idempotencyKey"]
                    for item in items
                    if item.get("status") in {"accepted", "duplicate"}
                ]
            )
        return answer

    def batch(self, client: Http, started: float) -> Answer:
        return self.send_batch(client, [self.new_key() for _ in range(3)], started)

    def readyz(self, client: Http, started: float) -> Answer:
        status, headers, payload = client.request("GET", "/readyz")
        return self._answer("readyz", started, status, headers, payload)

    def login(self, client: Http, started: float) -> Answer:
        client.close()  # a new visitor: no cookies
        status, headers, payload = client.request("GET", "/accounts/login/")
        if status != 200:
            return self._answer("login", started, status, headers, payload)
        cookie = re.search(r"csrftoken=([^;]+)", headers.get("set-cookie", ""))
        field = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', payload)
        if cookie is None or field is None:
            return Answer("login", started, time.monotonic(), status, failure="no CSRF token")
        form = (
            f"csrfmiddlewaretoken={field.group(1).decode()}&login={self.seed['email']}"
            f"&password={self.seed['password']}"
        ).encode()
        status, headers, payload = client.request(
            "POST",
            "/accounts/login/",
            form,
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={cookie.group(1)}",
                "Referer": f"http://127.0.0.1:{self.port}/accounts/login/",
            },
        )
        return self._answer("login", started, status, headers, payload)

    def signup(self, client: Http, started: float) -> Answer:
        body = {"email": f"{uuid.uuid4().hex[:12]}@signup.example"}
        status, headers, payload = client.request("POST", "/api/signup", body)
        return self._answer("signup", started, status, headers, payload)

    # -- reading the record --------------------------------------------------------------

    def of(self, *ops: str) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.op in ops]
