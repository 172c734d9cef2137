"""``wrap(client)``: meter an OpenAI or Anthropic client's calls, in place.

Each call becomes one event (queued, never blocking the caller) with the provider's
reported usage and raw usage in ``meta.providerUsage``; the server prices it. Streams
report at their end or close: a stream closed or dropped early is read to its end in
the background, so the event carries what the provider billed. A call whose usage the
provider did not send is recorded with ``meta.usageMissing`` and no token counts
(priced as unknown by the server, never as zero).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from . import _usage
from ._context import UNASSIGNED, Attribution, current
from ._http import new_idempotency_key
from ._version import __version__

if TYPE_CHECKING:
    from ._client import Tanso

C = TypeVar("C")
log = logging.getLogger("tansohq")
DRAIN_SECONDS = 120.0  # how long an abandoned stream is read for its final usage

UsageFn = Callable[[Any], dict[str, int]]


class Recorder:
    """One metered call: its attribution and start, reported once."""

    def __init__(
        self,
        meter: Meter,
        attribution: Attribution,
        kind: str,
        model: Any,
        stream: bool,
    ) -> None:
        self.meter = meter
        self.attribution = attribution
        self.kind = kind
        self.model = model if isinstance(model, str) else None
        self.stream = stream
        self.started = time.monotonic()
        self.occurred_at = dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")
        self.idempotency_key = new_idempotency_key()
        self._done = False
        self._lock = threading.Lock()

    def report(
        self,
        *,
        model: Any = None,
        tokens: Mapping[str, int] | None = None,
        raw_usage: Mapping[str, Any] | None = None,
        missing: str | None = None,
        extra_meta: Mapping[str, Any] | None = None,
    ) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        attribution = self.attribution
        meta: dict[str, Any] = {
            **attribution.meta,
            "sdk": f"tansohq-python/{__version__}",
            "call": self.kind,
        }
        if self.stream:
            meta["stream"] = True
        if raw_usage:
            meta["providerUsage"] = dict(raw_usage)
        if extra_meta:
            meta.update(extra_meta)
        event: dict[str, Any] = {
            "eventName": attribution.event_name or self.kind,
            "customerReferenceId": attribution.customer or UNASSIGNED,
            "featureKey": attribution.feature or UNASSIGNED,
            "modelProvider": self.meter.provider,
            "durationMs": int((time.monotonic() - self.started) * 1000),
            "occurredAt": self.occurred_at,
            "idempotencyKey": self.idempotency_key,
        }
        reported_model = model if isinstance(model, str) and model else self.model
        if reported_model:
            event["model"] = reported_model
        if attribution.trace:
            event["traceId"] = attribution.trace
        if tokens and not missing:
            event.update(tokens)
        else:
            meta["usageMissing"] = missing or "the provider sent no usage"
        event["meta"] = meta
        self.meter.tanso.track_event(event)


class Meter:
    """What ``wrap`` keeps per client: the Tanso client and the client-level attribution."""

    def __init__(
        self, tanso: Tanso, provider: str, attribution: Attribution, *, is_async: bool
    ) -> None:
        self.tanso = tanso
        self.provider = provider
        self.attribution = attribution
        self.is_async = is_async

    def recorder(self, kwargs: dict[str, Any], kind: str) -> Recorder:
        per_call = Attribution.of(kwargs.pop("tanso", None))
        attribution = self.attribution.merged(current()).merged(per_call)
        return Recorder(self, attribution, kind, kwargs.get("model"), bool(kwargs.get("stream")))


# -- streams ------------------------------------------------------------------------------


class _StreamState:
    """What a stream proxy and its finalizer share (never the proxy itself)."""

    def __init__(
        self,
        inner: Any,
        recorder: Recorder,
        on_item: Callable[[Any], bool],
        final: Callable[[], None],
    ) -> None:
        self.inner = inner
        self.recorder = recorder
        self.on_item = on_item  # True: hand the item to the caller
        self.final = final  # report from what was seen
        self.finished = False
        self.iterator: Any = None

    def drain_sync(self) -> None:
        """Read the rest of an abandoned stream for its usage, then report and close."""
        deadline = time.monotonic() + DRAIN_SECONDS
        try:
            if self.iterator is None:
                self.iterator = iter(self.inner)
            for item in self.iterator:
                self.on_item(item)
                if time.monotonic() > deadline:
                    break
        except Exception:  # the provider closed it; report what arrived
            log.debug("tansohq: an abandoned stream ended early", exc_info=True)
        finally:
            self.finished = True
            self.final()
            _close(self.inner)

    async def drain_async(self) -> None:
        deadline = time.monotonic() + DRAIN_SECONDS
        try:
            if self.iterator is None:
                self.iterator = self.inner.__aiter__()
            async for item in self.iterator:
                self.on_item(item)
                if time.monotonic() > deadline:
                    break
        except Exception:
            log.debug("tansohq: an abandoned stream ended early", exc_info=True)
        finally:
            self.finished = True
            self.final()
            await _aclose(self.inner)


def _close(inner: Any) -> None:
    close = getattr(inner, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


async def _aclose(inner: Any) -> None:
    close = getattr(inner, "close", None) or getattr(inner, "aclose", None)
    if callable(close):
        with contextlib.suppress(Exception):
            result = close()
            if inspect.isawaitable(result):
                await result


def _abandon_sync(state: _StreamState) -> None:
    if state.finished:
        return
    state.finished = True  # from here on, the drain owns the stream
    tanso = state.recorder.meter.tanso
    thread = threading.Thread(
        target=tanso.run_drain, args=(state.drain_sync,), name="tansohq-drain", daemon=True
    )
    tanso.drain_started()
    thread.start()


def _abandon_async(state: _StreamState, loop: asyncio.AbstractEventLoop | None) -> None:
    if state.finished:
        return
    state.finished = True
    tanso = state.recorder.meter.tanso
    if loop is None or loop.is_closed():
        state.final()
        return
    tanso.drain_started()

    def start() -> None:
        task = loop.create_task(tanso.run_drain_async(state.drain_async()))
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)

    try:
        if _running_loop() is loop:
            start()
        else:
            loop.call_soon_threadsafe(start)
    except RuntimeError:  # the loop stopped meanwhile
        tanso.drain_finished()
        state.final()


_TASKS: set[asyncio.Task[None]] = set()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class MeteredStream:
    """A provider's sync stream, item for item, minus an injected usage-only chunk."""

    def __init__(self, state: _StreamState) -> None:
        self._state = state
        self._finalizer = weakref.finalize(self, _abandon_sync, state)

    def __iter__(self) -> MeteredStream:
        return self

    def __next__(self) -> Any:
        state = self._state
        if state.finished:
            raise StopIteration
        if state.iterator is None:
            state.iterator = iter(state.inner)
        while True:
            try:
                item = next(state.iterator)
            except StopIteration:
                self._finish()
                raise
            except BaseException:
                self._finish()
                raise
            if state.on_item(item):
                return item

    def _finish(self) -> None:
        state = self._state
        if not state.finished:
            state.finished = True
            self._finalizer.detach()
            state.final()

    def close(self) -> None:
        if self._state.finished:
            _close(self._state.inner)
            return
        self._finalizer.detach()
        _abandon_sync(self._state)

    def __enter__(self) -> MeteredStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state.inner, name)


class AsyncMeteredStream:
    """A provider's async stream, item for item, minus an injected usage-only chunk."""

    def __init__(self, state: _StreamState) -> None:
        self._state = state
        self._finalizer = weakref.finalize(self, _abandon_async, state, _running_loop())

    def __aiter__(self) -> AsyncMeteredStream:
        return self

    async def __anext__(self) -> Any:
        state = self._state
        if state.finished:
            raise StopAsyncIteration
        if state.iterator is None:
            state.iterator = state.inner.__aiter__()
        while True:
            try:
                item = await state.iterator.__anext__()
            except StopAsyncIteration:
                self._finish()
                raise
            except BaseException:
                self._finish()
                raise
            if state.on_item(item):
                return item

    def _finish(self) -> None:
        state = self._state
        if not state.finished:
            state.finished = True
            self._finalizer.detach()
            state.final()

    async def close(self) -> None:
        if self._state.finished:
            await _aclose(self._state.inner)
            return
        self._finalizer.detach()
        _abandon_async(self._state, _running_loop())

    aclose = close

    async def __aenter__(self) -> AsyncMeteredStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state.inner, name)


def _stream_state(inner: Any, recorder: Recorder, reader: StreamReader) -> _StreamState:
    return _StreamState(inner, recorder, reader.on_item, reader.final)


class StreamReader:
    """Per-format logic: what an item tells about usage and whether the caller sees it."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.model: Any = None

    def on_item(self, item: Any) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def final(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class OpenAIChatReader(StreamReader):
    def __init__(self, recorder: Recorder, hide_usage_chunk: bool) -> None:
        super().__init__(recorder)
        self.hide_usage_chunk = hide_usage_chunk
        self.usage: Any = None

    def on_item(self, item: Any) -> bool:
        self.model = _usage.get(item, "model") or self.model
        usage = _usage.get(item, "usage")
        if usage is not None:
            self.usage = usage
            if self.hide_usage_chunk and not _usage.get(item, "choices"):
                return False
        return True

    def final(self) -> None:
        if self.usage is None:
            self.recorder.report(model=self.model, missing="the stream ended without usage")
        else:
            self.recorder.report(
                model=self.model,
                tokens=_usage.openai_chat(self.usage),
                raw_usage=_usage.raw(self.usage),
            )


class OpenAIResponsesReader(StreamReader):
    TERMINAL = {"response.completed", "response.incomplete", "response.failed"}

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(recorder)
        self.usage: Any = None

    def on_item(self, item: Any) -> bool:
        response = _usage.get(item, "response")
        if response is not None:
            self.model = _usage.get(response, "model") or self.model
            if _usage.get(item, "type") in self.TERMINAL:
                self.usage = _usage.get(response, "usage") or self.usage
        return True

    def final(self) -> None:
        if self.usage is None:
            self.recorder.report(model=self.model, missing="the stream ended without usage")
        else:
            self.recorder.report(
                model=self.model,
                tokens=_usage.openai_responses(self.usage),
                raw_usage=_usage.raw(self.usage),
            )


class AnthropicReader(StreamReader):
    def __init__(self, recorder: Recorder) -> None:
        super().__init__(recorder)
        self.usage: dict[str, Any] = {}

    def on_item(self, item: Any) -> bool:
        kind = _usage.get(item, "type")
        if kind == "message_start":
            message = _usage.get(item, "message")
            self.model = _usage.get(message, "model") or self.model
            _usage.merge_anthropic(self.usage, _usage.get(message, "usage"))
        elif kind == "message_delta":
            _usage.merge_anthropic(self.usage, _usage.get(item, "usage"))
        return True

    def final(self) -> None:
        if not self.usage:
            self.recorder.report(model=self.model, missing="the stream ended without usage")
        else:
            self.recorder.report(
                model=self.model, tokens=_usage.anthropic(self.usage), raw_usage=self.usage
            )


# -- instrumenting a client -----------------------------------------------------------------


def _report_response(recorder: Recorder, response: Any, usage_fn: UsageFn) -> None:
    usage = _usage.get(response, "usage")
    model = _usage.get(response, "model")
    if usage is None:
        recorder.report(model=model, missing="the response carried no usage")
    else:
        recorder.report(model=model, tokens=usage_fn(usage), raw_usage=_usage.raw(usage))


def _prepare_openai_chat(kwargs: dict[str, Any]) -> bool:
    """Ask for usage in a stream when the caller did not; True when the usage-only chunk
    that this adds must be hidden from the caller."""
    if not kwargs.get("stream"):
        return False
    options = dict(kwargs.get("stream_options") or {})
    if options.get("include_usage"):
        return False
    options["include_usage"] = True
    kwargs["stream_options"] = options
    return True


def _method(
    *,
    meter: Meter,
    original: Callable[..., Any],
    kind: str,
    usage_fn: UsageFn,
    reader_for: Callable[[Recorder, dict[str, Any]], StreamReader] | None,
) -> Callable[..., Any]:
    # The SDKs' async methods are not always coroutine functions (decorators wrap them).
    is_async = meter.is_async or inspect.iscoroutinefunction(original)

    if is_async:

        @functools.wraps(original)
        async def metered_async(*args: Any, **kwargs: Any) -> Any:
            recorder = meter.recorder(kwargs, kind)
            reader = reader_for(recorder, kwargs) if reader_for and kwargs.get("stream") else None
            result = await original(*args, **kwargs)
            if reader is not None:
                return AsyncMeteredStream(_stream_state(result, recorder, reader))
            _report_response(recorder, result, usage_fn)
            return result

        metered_async.__tansohq_wrapped__ = True  # type: ignore[attr-defined]
        return metered_async

    @functools.wraps(original)
    def metered(*args: Any, **kwargs: Any) -> Any:
        recorder = meter.recorder(kwargs, kind)
        reader = reader_for(recorder, kwargs) if reader_for and kwargs.get("stream") else None
        result = original(*args, **kwargs)
        if reader is not None:
            return MeteredStream(_stream_state(result, recorder, reader))
        _report_response(recorder, result, usage_fn)
        return result

    metered.__tansohq_wrapped__ = True  # type: ignore[attr-defined]
    return metered


def _patch(
    meter: Meter,
    resource: Any,
    name: str,
    *,
    kind: str,
    usage_fn: UsageFn,
    reader_for: Callable[[Recorder, dict[str, Any]], StreamReader] | None = None,
) -> None:
    original = getattr(resource, name, None)
    if original is None or getattr(original, "__tansohq_wrapped__", False):
        return
    setattr(
        resource,
        name,
        _method(
            meter=meter, original=original, kind=kind, usage_fn=usage_fn, reader_for=reader_for
        ),
    )


def _chat_reader(recorder: Recorder, kwargs: dict[str, Any]) -> StreamReader:
    return OpenAIChatReader(recorder, _prepare_openai_chat(kwargs))


class _MessageStreamManager:
    """Wraps ``client.messages.stream(...)``: the caller gets Anthropic's own MessageStream;
    on exit the usage is read from its final snapshot, after reading the rest in the
    background when the caller left early."""

    def __init__(self, manager: Any, recorder: Recorder, is_async: bool) -> None:
        self._manager = manager
        self._recorder = recorder
        self._is_async = is_async
        self._stream: Any = None

    def _report(self) -> None:
        message = getattr(self._stream, "current_message_snapshot", None)
        usage = _usage.get(message, "usage")
        if usage is None:
            self._recorder.report(missing="the stream ended without usage")
        else:
            self._recorder.report(
                model=_usage.get(message, "model"),
                tokens=_usage.anthropic(usage),
                raw_usage=_usage.raw(usage),
            )

    def _complete(self) -> bool:
        try:
            message = self._stream.current_message_snapshot
        except Exception:
            return False
        return _usage.get(message, "stop_reason") is not None

    def __enter__(self) -> Any:
        self._stream = self._manager.__enter__()
        return self._stream

    def __exit__(self, *exc: Any) -> None:
        if self._stream is None or self._complete():
            if self._stream is not None:
                self._report()
            self._manager.__exit__(*exc)
            return
        tanso = self._recorder.meter.tanso

        def drain() -> None:
            try:
                self._stream.until_done()
            except Exception:
                log.debug("tansohq: an abandoned stream ended early", exc_info=True)
            finally:
                self._report()
                self._manager.__exit__(None, None, None)

        tanso.drain_started()
        threading.Thread(target=tanso.run_drain, args=(drain,), daemon=True).start()

    async def __aenter__(self) -> Any:
        self._stream = await self._manager.__aenter__()
        return self._stream

    async def __aexit__(self, *exc: Any) -> None:
        if self._stream is None or self._complete():
            if self._stream is not None:
                self._report()
            await self._manager.__aexit__(*exc)
            return
        tanso = self._recorder.meter.tanso

        async def drain() -> None:
            try:
                await self._stream.until_done()
            except Exception:
                log.debug("tansohq: an abandoned stream ended early", exc_info=True)
            finally:
                self._report()
                await self._manager.__aexit__(None, None, None)

        tanso.drain_started()
        task = asyncio.get_running_loop().create_task(tanso.run_drain_async(drain()))
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager, name)


def _patch_message_stream(meter: Meter, messages: Any, is_async: bool) -> None:
    original = getattr(messages, "stream", None)
    if original is None or getattr(original, "__tansohq_wrapped__", False):
        return

    @functools.wraps(original)
    def stream(*args: Any, **kwargs: Any) -> Any:
        recorder = meter.recorder(kwargs, "messages")
        recorder.stream = True
        return _MessageStreamManager(original(*args, **kwargs), recorder, is_async)

    stream.__tansohq_wrapped__ = True  # type: ignore[attr-defined]
    messages.stream = stream


def instrument(client: C, tanso: Tanso, attribution: Attribution) -> C:
    module = type(client).__module__.split(".", 1)[0]
    is_async = type(client).__name__.startswith("Async")
    if module == "openai":
        meter = Meter(tanso, "openai", attribution, is_async=is_async)
        completions = client.chat.completions  # type: ignore[attr-defined]
        _patch(
            meter,
            completions,
            "create",
            kind="chat",
            usage_fn=_usage.openai_chat,
            reader_for=_chat_reader,
        )
        _patch(
            meter,
            client.responses,  # type: ignore[attr-defined]
            "create",
            kind="responses",
            usage_fn=_usage.openai_responses,
            reader_for=lambda recorder, _kwargs: OpenAIResponsesReader(recorder),
        )
        _patch(
            meter,
            client.embeddings,  # type: ignore[attr-defined]
            "create",
            kind="embeddings",
            usage_fn=_usage.openai_embeddings,
        )
        return client
    if module == "anthropic":
        meter = Meter(tanso, "anthropic", attribution, is_async=is_async)
        messages = client.messages  # type: ignore[attr-defined]
        _patch(
            meter,
            messages,
            "create",
            kind="messages",
            usage_fn=_usage.anthropic,
            reader_for=lambda recorder, _kwargs: AnthropicReader(recorder),
        )
        _patch_message_stream(meter, messages, is_async)
        return client
    raise TypeError(
        f"wrap() takes an OpenAI, AsyncOpenAI, Anthropic or AsyncAnthropic client, "
        f"not {type(client).__module__}.{type(client).__name__}"
    )
