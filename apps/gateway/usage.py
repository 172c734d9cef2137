"""Token counts exactly as each wire format reports them, in the ledger's convention:
``input`` is the whole prompt, cached reads and cache writes included.

Streams are read event by event (``observe``); the collector keeps the last usage the
provider reported (OpenAI's final chunk, the Responses API's terminal event,
Anthropic's ``message_start`` plus its cumulative ``message_delta``). When the provider
reported none, the counts are estimated from the sizes of the request and the answer
(about four bytes a token), marked ``estimated``: never a silent zero.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

BYTES_PER_TOKEN = 4


@dataclass
class Tokens:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def openai_chat(usage: dict[str, Any]) -> Tokens:
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    return Tokens(
        input=_int(usage.get("prompt_tokens")),
        output=_int(usage.get("completion_tokens")),
        cache_read=_int(prompt.get("cached_tokens")),
        reasoning=_int(completion.get("reasoning_tokens")),
    )


def openai_responses(usage: dict[str, Any]) -> Tokens:
    prompt = usage.get("input_tokens_details") or {}
    completion = usage.get("output_tokens_details") or {}
    return Tokens(
        input=_int(usage.get("input_tokens")),
        output=_int(usage.get("output_tokens")),
        cache_read=_int(prompt.get("cached_tokens")),
        reasoning=_int(completion.get("reasoning_tokens")),
    )


def openai_embeddings(usage: dict[str, Any]) -> Tokens:
    return Tokens(input=_int(usage.get("prompt_tokens")))


def anthropic(usage: dict[str, Any]) -> Tokens:
    """Anthropic counts uncached input apart from cache reads and writes: summed here."""
    read = _int(usage.get("cache_read_input_tokens"))
    write = _int(usage.get("cache_creation_input_tokens"))
    return Tokens(
        input=_int(usage.get("input_tokens")) + read + write,
        output=_int(usage.get("output_tokens")),
        cache_read=read,
        cache_write=write,
    )


PARSERS = {
    "chat": openai_chat,
    "responses": openai_responses,
    "embeddings": openai_embeddings,
    "messages": anthropic,
}


@dataclass
class Collector:
    """What one call reported: its raw usage, its counts, and how much text came back."""

    surface: str
    request_bytes: int
    raw: dict[str, Any] | None = None
    answer_bytes: int = 0
    model: str = ""
    # Anthropic streams: message_start's usage, overlaid by each message_delta's.
    _anthropic: dict[str, Any] = field(default_factory=dict)

    def observe_json(self, body: Any) -> None:
        """A whole (non-streamed) answer."""
        if isinstance(body, dict):
            self.model = str(body.get("model") or self.model)
            usage = body.get("usage")
            if isinstance(usage, dict):
                self.raw = usage

    def observe_event(self, data: bytes) -> None:
        """One server-sent event's ``data``."""
        self.answer_bytes += len(data)
        if data == b"[DONE]" or not data.startswith(b"{"):
            return
        try:
            event = json.loads(data)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if self.surface == "messages":
            self._anthropic_event(kind, event)
        elif self.surface == "responses":
            response = event.get("response")
            if isinstance(response, dict):
                self.observe_json(response)
        else:
            self.observe_json(event)

    def _anthropic_event(self, kind: Any, event: dict[str, Any]) -> None:
        if kind == "message_start" and isinstance(event.get("message"), dict):
            message = event["message"]
            self.model = str(message.get("model") or self.model)
            if isinstance(message.get("usage"), dict):
                self._anthropic.update(message["usage"])
                self.raw = dict(self._anthropic)
        elif kind == "message_delta" and isinstance(event.get("usage"), dict):
            # Cumulative counts: the latest wins, field by field.
            self._anthropic.update({k: v for k, v in event["usage"].items() if v is not None})
            self.raw = dict(self._anthropic)

    def tokens(self) -> tuple[Tokens, bool]:
        """The counts, and whether they are estimated (no usage, or none worth a token)."""
        if self.raw is not None:
            counts = PARSERS[self.surface](self.raw)
            if counts.input or counts.output:
                return counts, False
        estimate = Tokens(
            input=max(math.ceil(self.request_bytes / BYTES_PER_TOKEN), 1),
            output=math.ceil(self.answer_bytes / BYTES_PER_TOKEN)
            if self.surface != "embeddings"
            else 0,
        )
        return estimate, True
