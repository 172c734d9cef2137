"""Provider usage → the event's token fields. The provider's own figures, unpriced:
the server prices them with its catalog. ``inputTokens`` is the whole prompt, cached
tokens included (Anthropic reports cache reads and writes beside ``input_tokens``)."""

from __future__ import annotations

from typing import Any


def get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def raw(usage: Any) -> dict[str, Any]:
    """The provider's usage object as plain JSON, as it sent it."""
    if usage is None:
        return {}
    if isinstance(usage, dict):
        return {k: v for k, v in usage.items() if v is not None}
    dump = getattr(usage, "model_dump", None)
    if callable(dump):
        result = dump(exclude_none=True, mode="json")
        return result if isinstance(result, dict) else {}
    return {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _fields(
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read: int | None = None,
    cache_write: int | None = None,
    reasoning: int | None = None,
) -> dict[str, int]:
    found = {
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "cacheReadTokens": cache_read or None,
        "cacheWriteTokens": cache_write or None,
        "reasoningTokens": reasoning or None,
    }
    return {name: value for name, value in found.items() if value is not None}


def openai_chat(usage: Any) -> dict[str, int]:
    prompt_details = get(usage, "prompt_tokens_details")
    return _fields(
        _int(get(usage, "prompt_tokens")),
        _int(get(usage, "completion_tokens")),
        cache_read=_int(get(prompt_details, "cached_tokens")),
        cache_write=_int(get(prompt_details, "cache_write_tokens")),
        reasoning=_int(get(get(usage, "completion_tokens_details"), "reasoning_tokens")),
    )


def openai_responses(usage: Any) -> dict[str, int]:
    input_details = get(usage, "input_tokens_details")
    return _fields(
        _int(get(usage, "input_tokens")),
        _int(get(usage, "output_tokens")),
        cache_read=_int(get(input_details, "cached_tokens")),
        cache_write=_int(get(input_details, "cache_write_tokens")),
        reasoning=_int(get(get(usage, "output_tokens_details"), "reasoning_tokens")),
    )


def openai_embeddings(usage: Any) -> dict[str, int]:
    prompt = _int(get(usage, "prompt_tokens"))
    return _fields(prompt, 0 if prompt is not None else None)


def anthropic(usage: Any) -> dict[str, int]:
    uncached = _int(get(usage, "input_tokens"))
    cache_read = _int(get(usage, "cache_read_input_tokens")) or 0
    cache_write = _int(get(usage, "cache_creation_input_tokens")) or 0
    whole = None if uncached is None else uncached + cache_read + cache_write
    return _fields(whole, _int(get(usage, "output_tokens")), cache_read, cache_write)


def merge_anthropic(into: dict[str, Any], usage: Any) -> None:
    """Fold one stream event's usage into the running raw usage: ``message_start``
    carries the input side, each ``message_delta`` cumulative counts (None: unchanged)."""
    into.update(raw(usage))  # raw() leaves out the None values
