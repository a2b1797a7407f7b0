"""Prometheus metrics: one :class:`Metrics` per app (its own registry, no global state).

What is counted where:

- :class:`MetricsMiddleware` (pure ASGI, outermost): requests by route
  template, method and status, their duration, and the prefix KV outcome of
  each memory request (its ``X-Memory-KV`` header);
- the memory pipeline (:class:`proxy.pipeline.MemoryPipeline`, through the
  :class:`PipelineObserver` protocol it declares): recall latency, degraded
  recalls by cause, memories and tokens injected, upstream latency;
- :class:`EngineCollector`, read at scrape time: the journal depth,
  written/failed writes, scheduler actions, KV cache bytes and the
  store's size (recounted at most every
  ``observability.store_size_interval_s``, by the route).

No label ever carries an owner, a memory id or a key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.base import Upstream
from memory.engine import MemoryEngine

log = logging.getLogger("memproxy.metrics")

STORE_SIZE_TIMEOUT_S = 5.0
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Mounted sub-applications (no route template of their own in the scope).
MOUNTS = ("/ui", "/mcp")


class Metrics:
    """The metrics of one running app."""

    def __init__(self, engine: MemoryEngine, upstream: Upstream, store_size_interval_s: float = 30.0) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "memproxy_requests", "HTTP requests by route template, method and status", ["route", "method", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "memproxy_request_duration_seconds", "HTTP request duration (to the end of the body)", ["route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.upstream_seconds = Histogram(
            "memproxy_upstream_seconds", "Upstream call duration: a whole answer, or a stream from open to its end",
            ["front", "stream"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.upstream_errors = Counter("memproxy_upstream_errors", "Upstream calls that failed", ["front"], registry=r)
        self.recall_seconds = Histogram(
            "memproxy_recall_seconds", "Recall (core + search) duration per memory request", buckets=LATENCY_BUCKETS, registry=r
        )
        self.degraded = Counter(
            "memproxy_memory_degraded", "Requests forwarded without memory, by cause (timeout | error | overload)", ["cause"], registry=r
        )
        self.recalled = Counter("memproxy_recalled_memories", "Recalled memories injected into requests", registry=r)
        self.injected_tokens = Counter(
            "memproxy_injected_tokens", "Tokens of memory (core + recalled blocks) injected into requests", registry=r
        )
        self.turn_writes = Counter(
            "memproxy_turn_writes",
            "Chat turns handed to memory: ok (journaled), degraded (journaled late: backpressure or a failing "
            "writer, or not journaled at all), skipped (nothing to write)",
            ["status"], registry=r,
        )
        self.kv = Counter("memproxy_kv_requests", "Prefix KV reuse per memory request (hit | miss | off)", ["result"], registry=r)
        self.collector = EngineCollector(engine, upstream, store_size_interval_s)
        r.register(self.collector)

    # -- PipelineObserver ------------------------------------------------------

    def recall_done(self, seconds: float, recalled: int, tokens: int) -> None:
        self.recall_seconds.observe(seconds)
        self.recalled.inc(recalled)
        self.injected_tokens.inc(tokens)

    def recall_degraded(self, cause: str, seconds: float) -> None:
        self.recall_seconds.observe(seconds)
        self.degraded.labels(cause).inc()

    def write_done(self, status: str) -> None:
        self.turn_writes.labels(status).inc()

    def upstream_done(self, front: str, stream: bool, seconds: float, ok: bool) -> None:
        self.upstream_seconds.labels(front, "true" if stream else "false").observe(seconds)
        if not ok:
            self.upstream_errors.labels(front).inc()

    # -- requests --------------------------------------------------------------

    def request_done(self, route: str, method: str, status: int, seconds: float, kv: str | None) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)
        if kv in ("hit", "miss", "off"):
            self.kv.labels(kv).inc()


class EngineCollector(Collector):
    """Gauges and counters read from the engine and the upstream at scrape time."""

    def __init__(self, engine: MemoryEngine, upstream: Upstream, store_size_interval_s: float) -> None:
        self.engine = engine
        self.upstream = upstream
        self.store_size_interval_s = store_size_interval_s
        self.store_size: tuple[int, int] | None = None
        self._store_checked: float | None = None

    async def refresh_store_size(self) -> None:
        """Count the store's owners and memories, at most every ``store_size_interval_s``."""
        size = getattr(self.engine.store, "size", None)
        checked = self._store_checked
        if size is None or (checked is not None and time.monotonic() - checked < self.store_size_interval_s):
            return
        self._store_checked = time.monotonic()
        try:
            self.store_size = await asyncio.wait_for(size(), timeout=STORE_SIZE_TIMEOUT_S)
        except Exception as exc:  # a scrape never fails on the store; the gauge keeps its last value
            log.warning("store size unavailable (%s: %s)", type(exc).__name__, exc)

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        writer = engine.writer
        yield _gauge("memproxy_journal_depth", "Journaled writes waiting for the background writer", writer.depth)
        yield _gauge("memproxy_writer_failing", "1 while the background writer's last attempt failed", int(writer.failing))
        yield _counter("memproxy_writes", "Journaled writes stored by the background writer", writer.written)
        yield _counter("memproxy_writes_failed", "Writes in failed store attempts (each retry counts again)", writer.failed)
        if engine.extractor is not None:
            yield _gauge("memproxy_extract_queue_depth", "Stored turns waiting for fact extraction", engine.extractor.depth)
            yield _counter("memproxy_extract_dropped", "Turns dropped by the fact extractor's full queue", engine.extractor.dropped)
        actions = CounterMetricFamily("memproxy_scheduler_actions", "MemScheduler decisions by action", labels=["action"])
        for action in ("promote", "demote", "expire"):
            actions.add_metric([action], engine.scheduler.actions.get(action, 0))
        yield actions
        kv_bytes: Any = getattr(self.upstream, "kv_bytes", None)
        if isinstance(kv_bytes, int):
            yield _gauge("memproxy_kv_cache_bytes", "Bytes of prefix KV state held in RAM by a local upstream", kv_bytes)
        if self.store_size is not None:
            owners, memories = self.store_size
            yield _gauge("memproxy_store_owners", "Memory owners in the store", owners)
            yield _gauge("memproxy_store_memories", "Memories in the store (every state)", memories)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def route_of(scope: Scope) -> str:
    """The route template that served ``scope`` (never the raw path: no owner names or ids in labels)."""
    template = getattr(scope.get("route"), "path", None)
    if isinstance(template, str):
        return template
    path = scope.get("path", "")
    # refused before routing (401, 403, 413, ...): the route it was meant for
    meant = _template(scope["app"].router.routes, scope)
    if meant is not None:
        return meant
    for mount in MOUNTS:
        if path == mount or path.startswith(mount + "/"):
            return mount
    return "unmatched"


def _template(routes: Iterable[BaseRoute], scope: Scope) -> str | None:
    """The path template of the first of ``routes`` (routers included, unprefixed) matching ``scope``."""
    for route in routes:
        nested = getattr(route, "original_router", None)  # FastAPI's included router
        if nested is not None:
            found = _template(nested.routes, scope)
            if found is not None:
                return found
            continue
        path = getattr(route, "path", None)
        if isinstance(path, str) and route.matches(scope)[0] != Match.NONE:
            return path
    return None


class MetricsMiddleware:
    """Counts every HTTP request (refusals included) by route template and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen: dict[str, Any] = {"status": 500, "kv": None}

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"x-memory-kv":
                        seen["kv"] = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            services = getattr(scope["app"].state, "services", None)
            metrics: Metrics | None = getattr(services, "metrics", None)
            if metrics is not None:
                metrics.request_done(
                    route_of(scope), scope.get("method", "GET"), seen["status"], time.perf_counter() - started, seen["kv"]
                )
