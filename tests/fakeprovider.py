"""A fake LLM provider on loopback: OpenAI (chat completions, responses, embeddings) and
Anthropic (messages) wire formats, JSON or server-sent events, with the usage each
format reports. It records what it received, so tests can assert what a provider saw.

    with FakeProvider() as fake:
        OpenAI(base_url=fake.openai_url, api_key="sk-fake")
        Anthropic(base_url=fake.anthropic_url, api_key="sk-ant-fake")
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Usage:
    """What the fake reports for each call (tokens are whole prompts, cached included)."""

    input_tokens: int = 1200
    cached_tokens: int = 200
    cache_write_tokens: int = 100  # Anthropic only
    output_tokens: int = 300
    reasoning_tokens: int = 40  # OpenAI only

    def openai_chat(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }

    def openai_responses(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }

    def anthropic_input(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens - self.cached_tokens - self.cache_write_tokens,
            "cache_read_input_tokens": self.cached_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens,
        }


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Script:
    """How the fake answers: chunks per stream, a pause between them, usage on or off."""

    chunks: int = 5
    chunk_delay: float = 0.0
    usage: Usage = field(default_factory=Usage)
    send_usage: bool = True
    text: str = "hello"


class FakeProvider:
    def __init__(self) -> None:
        self.script = Script()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_url(self) -> str:
        return self.url

    def __enter__(self) -> FakeProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def calls(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    # -- answering ---------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self.received.append(Received(method, path, dict(handler.headers.items()), body))
        routes = {
            "/v1/chat/completions": self._chat,
            "/v1/responses": self._responses,
            "/v1/embeddings": self._embeddings,
            "/v1/messages": self._messages,
        }
        route = routes.get(path)
        if route is None:
            self._json(handler, 404, {"error": {"message": f"no route {path}"}})
            return
        route(handler, body or {})

    def _json(self, handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _sse(self, handler: BaseHTTPRequestHandler, events: list[tuple[str | None, Any]]) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        try:
            for name, data in events:
                text = data if isinstance(data, str) else json.dumps(data)
                prefix = f"event: {name}\n" if name else ""
                handler.wfile.write(f"{prefix}data: {text}\n\n".encode())
                handler.wfile.flush()
                if self.script.chunk_delay:
                    time.sleep(self.script.chunk_delay)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _chat(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        script, model = self.script, body.get("model", "gpt-4o-mini")
        base = {"id": "chatcmpl-fake", "created": 1, "model": model}
        if not body.get("stream"):
            answer = {
                **base,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": script.text},
                        "finish_reason": "stop",
                    }
                ],
            }
            if script.send_usage:
                answer["usage"] = script.usage.openai_chat()
            self._json(handler, 200, answer)
            return
        chunk = {**base, "object": "chat.completion.chunk"}
        events: list[tuple[str | None, Any]] = []
        for i in range(script.chunks):
            last = i == script.chunks - 1
            events.append(
                (
                    None,
                    {
                        **chunk,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"content": f"{script.text}{i}"},
                                "finish_reason": "stop" if last else None,
                            }
                        ],
                    },
                )
            )
        include = (body.get("stream_options") or {}).get("include_usage")
        if include and script.send_usage:
            events.append((None, {**chunk, "choices": [], "usage": script.usage.openai_chat()}))
        events.append((None, "[DONE]"))
        self._sse(handler, events)

    def _response_object(self, model: str, done: bool) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "id": "resp_fake",
            "object": "response",
            "created_at": 1,
            "model": model,
            "status": "completed" if done else "in_progress",
            "output": [],
            "parallel_tool_calls": False,
            "tool_choice": "auto",
            "tools": [],
        }
        if done:
            answer["output"] = [
                {
                    "type": "message",
                    "id": "msg_fake",
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {"type": "output_text", "text": self.script.text, "annotations": []}
                    ],
                }
            ]
            if self.script.send_usage:
                answer["usage"] = self.script.usage.openai_responses()
        return answer

    def _responses(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        model = body.get("model", "gpt-4o-mini")
        if not body.get("stream"):
            self._json(handler, 200, self._response_object(model, done=True))
            return
        events: list[tuple[str | None, Any]] = [
            (
                "response.created",
                {
                    "type": "response.created",
                    "sequence_number": 0,
                    "response": self._response_object(model, done=False),
                },
            )
        ]
        events.extend(
            (
                "response.output_text.delta",
                {
                    "type": "response.output_text.delta",
                    "sequence_number": i + 1,
                    "item_id": "msg_fake",
                    "output_index": 0,
                    "content_index": 0,
                    "delta": f"{self.script.text}{i}",
                    "logprobs": [],
                },
            )
            for i in range(self.script.chunks)
        )
        events.append(
            (
                "response.completed",
                {
                    "type": "response.completed",
                    "sequence_number": self.script.chunks + 1,
                    "response": self._response_object(model, done=True),
                },
            )
        )
        self._sse(handler, events)

    def _embeddings(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        answer: dict[str, Any] = {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5]}],
            "model": body.get("model", "text-embedding-3-small"),
        }
        if self.script.send_usage:
            tokens = self.script.usage.input_tokens
            answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._json(handler, 200, answer)

    def _messages(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        script, model = self.script, body.get("model", "claude-sonnet-4-20250514")
        usage = script.usage
        message = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model}
        if not body.get("stream"):
            answer: dict[str, Any] = {
                **message,
                "content": [{"type": "text", "text": script.text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
            }
            if script.send_usage:
                answer["usage"] = {**usage.anthropic_input(), "output_tokens": usage.output_tokens}
            self._json(handler, 200, answer)
            return
        start_usage = {**usage.anthropic_input(), "output_tokens": 1} if script.send_usage else None
        start: dict[str, Any] = {
            **message,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
        }
        if start_usage is not None:
            start["usage"] = start_usage
        events: list[tuple[str | None, Any]] = [
            ("message_start", {"type": "message_start", "message": start}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
        ]
        events.extend(
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": f"{script.text}{i}"},
                },
            )
            for i in range(script.chunks)
        )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        delta: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        }
        if script.send_usage:
            delta["usage"] = {"output_tokens": usage.output_tokens}
        events.append(("message_delta", delta))
        events.append(("message_stop", {"type": "message_stop"}))
        self._sse(handler, events)
