"""One dedicated worker thread for an in-process model, bridged to asyncio.

The local upstreams (llama.cpp, Hugging Face transformers) hold a model
object that must never be entered from two threads at once, so every call
into it runs on a :class:`ModelWorker`: a single-thread executor that serves
requests one at a time, in arrival order, with waiting requests occupying no
thread (nor the event loop's default executor).

* :meth:`ModelWorker.call` runs a function there and awaits its result; a
  failure becomes an :class:`UpstreamError` (:func:`worker_error`).
* :meth:`ModelWorker.stream` runs a generation there that hands each chunk
  to the event loop through a :class:`ChunkSink` (an ``asyncio.Queue`` fed
  with ``call_soon_threadsafe``) as soon as it is produced, and waits for the
  first chunk so that errors raise before any chunk is sent. The
  :class:`ChunkStream` it returns yields normalized chunks (plus the usage
  chunk of ``stream_options.include_usage``); closing it (client gone) sets a
  flag the generation checks before every token, and a stream still queued
  never starts.
* :meth:`ModelWorker.aclose` stops running streams, drops queued work and
  waits for the thread to finish (once: it says whether this call did).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from adapters.errors import UpstreamError, UpstreamUnavailable
from adapters.normalize import dedupe_tool_call_deltas, normalize_chunk

T = TypeVar("T")


class ModelWorker:
    """The one thread a local model runs on, and the streams it is feeding."""

    def __init__(self, thread_name: str, shut_down_message: str) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._shut_down_message = shut_down_message
        self._closed = False
        self._live_streams: set[threading.Event] = set()

    @property
    def closed(self) -> bool:
        return self._closed

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the worker thread. A call cancelled while queued never
        runs; one cancelled while running runs to its end."""
        self._check_open()
        future = self._executor.submit(fn, *args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if self._closed and future.cancelled():
                raise self._shut_down() from None
            raise
        except Exception as exc:
            raise worker_error(exc) from exc

    async def stream(self, fn: Callable[..., None], *args: Any, model: str, include_usage: bool) -> ChunkStream:
        """Run ``fn(sink, *args)`` on the worker thread; the chunks it puts into ``sink``.

        Returns once the first chunk is there (or raises the generation's error).
        """
        self._check_open()
        sink = ChunkSink(asyncio.get_running_loop())
        self._live_streams.add(sink.cancelled)
        try:
            job = self._executor.submit(_run_stream, fn, sink, *args)
            job.add_done_callback(functools.partial(self._report_dropped, sink))
            first = await sink.next()
        except BaseException:
            sink.cancelled.set()
            self._live_streams.discard(sink.cancelled)
            raise
        return ChunkStream(first, sink, model=model, include_usage=include_usage, on_close=self._live_streams.discard)

    async def aclose(self) -> bool:
        """Stop running streams, drop queued work and wait for the thread to finish.

        ``True`` for the call that closed it (its caller frees the model then),
        ``False`` at once for any later one.
        """
        if self._closed:
            return False
        self._closed = True
        for flag in list(self._live_streams):
            flag.set()
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        return True

    def _check_open(self) -> None:
        if self._closed:
            raise self._shut_down()

    def _shut_down(self) -> UpstreamUnavailable:
        return UpstreamUnavailable(self._shut_down_message)

    def _report_dropped(self, sink: ChunkSink, job: concurrent.futures.Future[None]) -> None:
        """Done-callback: a job dropped at shutdown never ran, so say so."""
        if job.cancelled():
            sink.fail(self._shut_down())


def _run_stream(fn: Callable[..., None], sink: ChunkSink, *args: Any) -> None:
    """Worker thread: run one generation; every outcome is handed to ``sink``.

    A stopped stream (client gone, or :meth:`ModelWorker.aclose`) still gets a
    final error, so nothing waits on it forever.
    """
    if sink.cancelled.is_set():
        sink.stop()
        return
    try:
        fn(sink, *args)
    except Exception as exc:  # noqa: BLE001 - re-raised on the event loop by the sink
        sink.fail(exc)


@dataclass
class ChunkSink:
    """Worker-thread -> event-loop hand-off for one stream."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    usage: dict[str, int] = field(default_factory=dict)

    def put(self, chunk: dict[str, Any]) -> None:
        self._send(("chunk", chunk))

    def done(self, usage: dict[str, int]) -> None:
        self.usage = usage
        self._send(("done", None))

    def fail(self, exc: BaseException) -> None:
        self._send(("error", exc))

    def stop(self) -> None:
        """End a generation that was stopped before it finished."""
        self.fail(UpstreamUnavailable("The generation was stopped."))

    def _send(self, item: tuple[str, Any]) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled.set()

    async def next(self) -> dict[str, Any] | None:
        """The next chunk, ``None`` at the end; raises the worker's error."""
        kind, value = await self.queue.get()
        if kind == "chunk":
            return value
        if kind == "done":
            return None
        raise worker_error(value) from value


class ChunkStream:
    """The async iterator :meth:`ModelWorker.stream` returns.

    Yields normalized chunks, then the usage chunk when asked for. ``aclose``
    (or garbage collection) stops the worker even if iteration never started,
    which a plain async generator's ``finally`` would not.
    """

    def __init__(
        self,
        first: dict[str, Any] | None,
        sink: ChunkSink,
        *,
        model: str,
        include_usage: bool,
        on_close: Callable[[threading.Event], None],
    ) -> None:
        self._buffer: list[dict[str, Any] | None] = [first]
        self._sink = sink
        self._model = model
        self._include_usage = include_usage
        self._on_close = on_close
        self._last: dict[str, Any] = first or {}
        self._tool_calls_seen: frozenset[tuple[int, int]] = frozenset()
        self._finished = False

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._finished:
            raise StopAsyncIteration
        try:
            chunk = self._buffer.pop() if self._buffer else await self._sink.next()
        except BaseException:
            await self.aclose()
            raise
        if chunk is None:
            await self.aclose()
            if self._include_usage:
                return self._usage_chunk()
            raise StopAsyncIteration
        self._last = chunk
        out, self._tool_calls_seen = dedupe_tool_call_deltas(
            normalize_chunk(chunk, model=self._model), self._tool_calls_seen
        )
        if self._include_usage:
            out["usage"] = None
        return out

    async def aclose(self) -> None:
        """Stop generating (if still running) and end the iteration."""
        self._close()

    def _close(self) -> None:
        if not self._finished:
            self._finished = True
            self._sink.cancelled.set()
            self._on_close(self._sink.cancelled)

    def _usage_chunk(self) -> dict[str, Any]:
        usage = dict(self._sink.usage)
        usage["total_tokens"] = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
        return normalize_chunk(
            {"id": self._last.get("id"), "created": self._last.get("created"), "choices": [], "usage": usage},
            model=self._model,
        )

    def __del__(self) -> None:
        self._close()


def include_usage(body: dict[str, Any]) -> bool:
    """Whether a request asks for the usage chunk (``stream_options.include_usage``)."""
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def worker_error(exc: BaseException) -> UpstreamError:
    """Map a worker-thread failure onto an :class:`UpstreamError`.

    The local models report bad requests (prompt longer than the context, an
    unknown ``tool_choice`` in llama.cpp) as ``ValueError``: 400. Anything
    else is a 500.
    """
    if isinstance(exc, UpstreamError):
        return exc
    message = str(exc)
    if isinstance(exc, ValueError):
        overflow = "context window" in message
        return UpstreamError(
            message,
            status=400,
            type="invalid_request_error",
            code="context_length_exceeded" if overflow else None,
            param="messages" if overflow else None,
        )
    return UpstreamError(f"The embedded model failed: {message}", status=500, type="server_error")
