"""The one memory pipeline under every front end: recall -> place -> forward -> relay -> remember.

Framework-free and async. A front end (chat completions, Responses, Ollama)
only translates its own wire shapes:

1. it reads the recall query and the user's text of the turn out of its body;
2. :meth:`MemoryPipeline.prepare` recalls the owner's memory under the
   deadline and hands the rendered :class:`MemoryBlocks` to the front end's
   ``place`` function, which puts them into its body;
3. the front end calls its upstream with the :class:`Exchange`'s body and
   context (the context carries the KV :class:`Activation` when there is a
   core block);
4. a stream is relayed by :meth:`MemoryPipeline.relay` through the front end's
   :class:`StreamTranslator`; a whole answer is captured by the front end;
5. :meth:`MemoryPipeline.remember` journals the finished turn (durably,
   before the reply completes: a stream's last bytes are sent after it) for
   the background writer.

Memory never fails a request: recall runs under ``memory.recall_deadline_ms``
and any failure or timeout forwards without memories, reported as
``X-Memory-Status: degraded``. Failed or broken upstream calls write nothing.
A request that will write first waits while the writer's backlog is full
(backpressure, :mod:`memory.admission`: at most ``memory.write_backpressure_ms``,
before recall, so a waiting request holds no memory work). A write that is
late (the store writer is failing, or no room came in time) or that
could not be journaled is reported as ``degraded`` too: in the reply's headers
when they are still unsent, and on every new request while the writer fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from adapters.base import Activation, CallContext, close_stream
from adapters.errors import UpstreamError
from memory.cube import Provenance, utcnow
from memory.engine import CoreSet, MemoryEngine, RecallResult
from memory.explain import RecallTrace
from memory.recallgate import RecallGate
from memory.settings import MemorySettings
from memory.tokens import TokenCounter
from proxy.identity import Identity
from proxy.observability.tracing import OFF, Tracing
from proxy.pipeline.blocks import MemoryBlocks, MemoryOutcome, render_block, render_core_block
from proxy.pipeline.capture import ReplyCapture
from proxy.pipeline.explain import Explanation, ExplanationLog, explanation
from proxy.pipeline.lograte import RateLimitedWarning

log = logging.getLogger("memproxy.pipeline")

# A recall query longer than this keeps its head and tail: the embedding model
# reads 256 tokens at most, and a megabyte query would only cost time
# (tokenising, BM25) for nothing.
MAX_QUERY_CHARS = 4000
CORE_BLOCKS_KEPT = 1024  # rendered core blocks (and their token counts) kept, by core version and profile

Body = dict[str, Any]
Placer = Callable[[Body, MemoryBlocks], Body]


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request on its way through memory."""

    body: Body  # what goes upstream (memory placed)
    user_text: str  # the client's own text of this turn (what gets written)
    identity: Identity
    context: CallContext  # carries the activation when there is a core block
    memory: MemoryOutcome
    # the turn's write: "degraded" when it is late or lost (set by prepare and remember)
    write: dict[str, str] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        """``X-Memory-*`` headers; ``X-Memory-KV`` is known once the upstream call started."""
        activation = self.context.activation
        headers = {**self.memory.headers(), "X-Memory-KV": activation.kv if activation is not None else "off"}
        if self.write.get("status") == "degraded" and headers["X-Memory-Status"] == "ok":
            headers["X-Memory-Status"] = "degraded"
        return headers


class StreamTranslator(Protocol):
    """A front end's view of one upstream stream: what to send the client for
    each upstream item, and the reply it adds up to (``capture``)."""

    capture: ReplyCapture

    def start(self) -> Iterable[bytes]: ...

    def feed(self, item: Any) -> Iterable[bytes]: ...

    def fail(self, error: UpstreamError) -> Iterable[bytes]: ...

    def finish(self) -> Iterable[bytes]: ...


class PipelineObserver(Protocol):
    """What the pipeline reports as it runs (metrics: :class:`proxy.observability.metrics.Metrics`)."""

    def recall_done(self, seconds: float, recalled: int, tokens: int) -> None: ...

    def recall_degraded(self, cause: str, seconds: float) -> None: ...

    def upstream_done(self, front: str, stream: bool, seconds: float, ok: bool) -> None: ...

    def write_done(self, status: str) -> None: ...


class MemoryPipeline:
    def __init__(
        self,
        engine: MemoryEngine,
        counter: TokenCounter,
        settings: MemorySettings,
        *,
        observer: PipelineObserver | None = None,
        tracing: Tracing = OFF,
    ) -> None:
        self.engine = engine
        self.counter = counter
        self.settings = settings
        self.observer = observer
        self.tracing = tracing
        self.explanations = ExplanationLog()  # of chat requests sent with X-Memory-Explain: 1
        # the core block is byte-stable while the core set and profile are: rendered and counted once
        self._core_blocks: dict[tuple[str, tuple[str, ...]], tuple[str, int]] = {}
        self._late_recall = RateLimitedWarning(log)  # under overload every request may say it
        self._shed = RateLimitedWarning(log)
        # recalls start a few at a time, as many as stay well inside the deadline (memory/recallgate.py)
        self.gate = RecallGate(settings.recall_deadline_ms / 1000)

    def upstream_done(self, front: str, stream: bool, started: float, ok: bool) -> None:
        """Report one upstream call that began at ``started`` (``time.perf_counter()``)."""
        seconds = time.perf_counter() - started
        self.tracing.record("memproxy.upstream", seconds, front=front, stream=stream, ok=ok)
        if self.observer is not None:
            self.observer.upstream_done(front, stream, seconds, ok)

    @property
    def placement(self) -> str:
        return self.settings.placement

    async def prepare(
        self,
        body: Body,
        *,
        query: str | None,
        user_text: str,
        identity: Identity,
        context: CallContext,
        place: Placer,
    ) -> Exchange:
        """Recall for ``query`` and place the blocks with the front end's ``place``.

        ``query`` None: this request takes no memory at all (e.g. a raw
        prompt), not even the core block.
        """
        # backpressure before any memory work: a request that will write waits while the
        # writer's backlog is full, let in at the pace the writer drains it (memory/admission.py)
        writes = identity.mode.writes and self.settings.write_enabled
        on_time = await self.engine.admit() if writes else True
        if query is None:
            mode = identity.mode
            blocks = MemoryBlocks.empty("ok" if mode.reads or mode.writes else "off")
        else:
            blocks = await self.recall(clip_query(query), identity, explain_id=context.request_id)
        forwarded = place(body, blocks) if blocks else dict(body)
        if blocks.activation is not None:
            context = dataclasses.replace(context, activation=blocks.activation)
        exchange = Exchange(forwarded, user_text, identity, context, blocks.outcome)
        if writes and (not on_time or self.engine.write_status() is not None):
            exchange.write["status"] = "degraded"  # no room came in time, or the store writer is failing: late
        return exchange

    async def recall(
        self, query: str, identity: Identity, now: datetime | None = None, *, explain_id: str | None = None
    ) -> MemoryBlocks:
        """The owner's core block and the block recalled for ``query``, under the deadline.

        With ``identity.explain``, the ranking fills a trace as it runs, kept
        as this request's explanation under ``explain_id``.
        """
        if not identity.mode.reads:
            return MemoryBlocks.empty("ok" if identity.mode.writes else "off")
        user = identity.owner.user
        deadline = self.settings.recall_deadline_ms / 1000
        trace = RecallTrace() if identity.explain and explain_id is not None else None
        if trace is not None:
            now = now or utcnow()

        async def recalled() -> RecallResult | None:
            return await self.engine.search(user, query, now=now, trace=trace) if query else None

        if not await self.gate.enter(self.settings.recall_queue_ms / 1000):
            self._shed.warning("recall waited %.0f ms to start (overloaded); forwarding without memories",
                               self.settings.recall_queue_ms)
            self._degraded("overload", time.perf_counter())
            return MemoryBlocks.empty("degraded")
        started = time.perf_counter()
        missed = False
        try:
            with self.tracing.span("memproxy.recall", query_chars=len(query)) as span:
                core, result = await asyncio.wait_for(
                    asyncio.gather(self.engine.core(user), recalled()), timeout=deadline
                )
                if span is not None:
                    span.set_attribute("memproxy.recalled", len(result.items) if result is not None else 0)
                    span.set_attribute("memproxy.core", len(core.items))
        except TimeoutError:
            missed = True
            self._late_recall.warning("recall missed its %.0f ms deadline; forwarding without memories", deadline * 1000)
            self._degraded("timeout", started)
            return MemoryBlocks.empty("degraded")
        except Exception:  # fail open by design: memory must never fail a request
            log.exception("recall failed; forwarding without memories")
            self._degraded("error", started)
            return MemoryBlocks.empty("degraded")
        finally:
            self.gate.leave(time.perf_counter() - started, missed=missed)
        blocks = self._render(user, core, result)
        if self.observer is not None:
            self.observer.recall_done(time.perf_counter() - started, blocks.outcome.recalled, blocks.outcome.tokens)
        if trace is not None and explain_id is not None and now is not None:
            body = explanation(query, now, self.settings.token_budget, core, result, trace)
            self.explanations.put(explain_id, Explanation(user, body))
            scored = tuple((i.cube.id, i.score) for i in (result.items if result is not None else []))
            outcome = dataclasses.replace(blocks.outcome, explain_id=explain_id, explained=scored)
            blocks = dataclasses.replace(blocks, outcome=outcome)
        return blocks

    async def explain(
        self, user: str, query: str, *, now: datetime | None = None, token_budget: int | None = None
    ) -> dict[str, Any]:
        """What :meth:`recall` would inject for ``query`` at ``now``, and why (``POST /v1/memories/explain``).

        The same calls as a chat's recall, with a trace and without the
        deadline (an explanation is asked for; it is not on a chat's clock).
        """
        query = clip_query(query)
        now = now or utcnow()
        trace = RecallTrace()
        budget = self.settings.token_budget if token_budget is None else token_budget
        core, result = await asyncio.gather(
            self.engine.core(user),
            self.engine.search(user, query, now=now, token_budget=token_budget, record=False, trace=trace),
        )
        return explanation(query, now, budget, core, result, trace)

    def _degraded(self, cause: str, started: float) -> None:
        if self.observer is not None:
            self.observer.recall_degraded(cause, time.perf_counter() - started)

    def _render(self, user: str, core: CoreSet, result: RecallResult | None) -> MemoryBlocks:
        core_block, tokens = self._core_block(core) if core.items or core.profile else (None, 0)
        items = result.items if result is not None else []
        recalled_block = render_block([item.text for item in items]) if items else None
        if recalled_block:
            tokens += self.counter.count(recalled_block)
        outcome = MemoryOutcome("ok", len(items), tokens, len(core.items))
        activation = Activation(user, core.version, core_block) if core_block else None
        return MemoryBlocks(core_block, recalled_block, outcome, activation)

    def _core_block(self, core: CoreSet) -> tuple[str, int]:
        """The rendered core block and its tokens, made once per core version and profile."""
        key = (core.version, core.profile)
        found = self._core_blocks.get(key)
        if found is None:
            block = render_core_block(core.texts, core.profile)
            found = (block, self.counter.count(block))
            if len(self._core_blocks) >= CORE_BLOCKS_KEPT:
                del self._core_blocks[next(iter(self._core_blocks))]  # the oldest
            self._core_blocks[key] = found
        return found

    async def relay(
        self, exchange: Exchange, source: AsyncIterator[Any], translator: StreamTranslator
    ) -> AsyncIterator[bytes]:
        """Relay ``source`` to the client through ``translator``, remembering the turn
        before the stream's last bytes (so a reply the client saw complete is journaled).

        An upstream error mid-stream is sent in the front end's own error
        shape and writes nothing.
        """
        started = time.perf_counter()
        ok = False
        for out in translator.start():
            yield out
        remembered = False
        try:
            async for item in source:
                outs = translator.feed(item)
                if not remembered and translator.capture.finished:
                    # a terminal item (Responses' response.completed, Ollama's done line,
                    # a chunk with finish_reason): journal the turn before it is sent
                    outs = list(outs)
                    remembered = True
                    await self.remember(exchange, translator.capture)
                for out in outs:
                    yield out
            ok = True
        except UpstreamError as exc:
            log.warning("upstream failed mid-stream: %s", exc.message)
            for out in translator.fail(exc):
                yield out
            return
        finally:
            await close_stream(source)
            self.upstream_done(front_of(translator), True, started, ok)
        tail = list(translator.finish())  # marks the capture finished
        if not remembered:
            await self.remember(exchange, translator.capture)
        for out in tail:
            yield out

    async def remember(self, exchange: Exchange, capture: ReplyCapture) -> str:
        """Journal the finished turn (durable when this returns) for the background writer.

        Nothing is written for an unfinished reply, with memory writes off for
        this request, or when both texts are empty. Never raises: a turn that
        could not be journaled is logged and reported ``degraded``. Returns
        the write's status (``ok``, ``degraded``, ``skipped``).
        """
        identity, context = exchange.identity, exchange.context
        if not capture.finished or not identity.mode.writes or not self.settings.write_enabled:
            return "skipped"
        user_text, reply = exchange.user_text, capture.text
        if not user_text and not reply:
            return "skipped"
        model = capture.model or exchange.body.get("model")
        roles = tuple(r for r, t in (("user", user_text), ("assistant", reply)) if t)
        provenance = Provenance(request_id=context.request_id, model=model, roles=roles)
        try:
            with self.tracing.span("memproxy.write", chars=len(user_text) + len(reply)) as span:
                # room was waited for in prepare(), before the work
                status = await self.engine.remember(identity.owner, user_text, reply, provenance, wait=False)
                if span is not None:
                    span.set_attribute("memproxy.write_status", status)
        except Exception:  # memory never fails a request: the loss is logged and reported
            log.exception("could not journal the memory write for %s", context.request_id)
            status = "degraded"
        if status == "ok" and exchange.write.get("status") == "degraded":
            status = "degraded"  # journaled, but late: no room came in time (prepare)
        if status == "degraded":
            exchange.write["status"] = "degraded"
        if self.observer is not None:
            self.observer.write_done(status)
        return status


def clip_query(query: str) -> str:
    """``query`` within :data:`MAX_QUERY_CHARS`: its head and its tail when longer."""
    if len(query) <= MAX_QUERY_CHARS:
        return query
    half = MAX_QUERY_CHARS // 2
    return f"{query[:half]}\n{query[-half:]}"


def front_of(translator: StreamTranslator) -> str:
    """The front end a translator belongs to (``proxy.openai.chat`` -> ``chat``), for metrics."""
    parts = type(translator).__module__.split(".")
    return parts[-2] if len(parts) >= 2 else parts[-1]
