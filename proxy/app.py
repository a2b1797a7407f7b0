"""The ASGI application: wiring only.

``create_app`` builds the memory engine and the upstream from settings at
startup (or takes ready-made ones, as tests and embedding programs do) and
closes them at shutdown, draining queued memory writes first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.routing import Route

from adapters import ollama_upstream
from adapters.base import Upstream
from adapters.registry import UpstreamRegistry
from memory.embedder import Embedder
from memory.engine import MemoryEngine
from memory.packs import PackRegistry
from memory.tokens import TokenCounter
from proxy import health
from proxy.auth import router as admin
from proxy.auth.keys import KeyStore
from proxy.auth.middleware import Authenticator, AuthMiddleware
from proxy.auth.resolver import KeyIdentityResolver
from proxy.config import Settings
from proxy.errors import install_handlers
from proxy.identity import HeaderIdentityResolver, IdentityResolver
from proxy.inspector import router as inspector
from proxy.limits import LimitsMiddleware
from proxy.mcp.mounted import MCPEndpoint, MountedMCP
from proxy.memories import explain
from proxy.memories import router as memories
from proxy.middleware import RequestIdMiddleware
from proxy.observability import router as observability
from proxy.observability.metrics import Metrics, MetricsMiddleware
from proxy.observability.tracing import OFF, Tracing, setup_tracing
from proxy.ollama import router as ollama
from proxy.ollama.serving import OllamaServing
from proxy.openai.chat import router as chat
from proxy.openai.chat.serving import ChatServing
from proxy.openai.embeddings import router as embeddings
from proxy.openai.embeddings.serving import EmbeddingsServing
from proxy.openai.models import router as models
from proxy.openai.responses import router as responses
from proxy.openai.responses.serving import ResponsesServing
from proxy.pipeline import MemoryPipeline
from proxy.portable import router as portable
from proxy.services import Services
from proxy.serving import Drain

log = logging.getLogger("memproxy")

VERSION = "0.1.0"
WARMUP_TIMEOUT_S = 10.0
DRAIN_FLUSH_S = 10.0  # at shutdown, how long journaled writes may take to reach the store


def create_app(
    settings: Settings,
    *,
    engine: MemoryEngine | None = None,
    upstream: Upstream | None = None,
    registry: UpstreamRegistry | None = None,
    identity: IdentityResolver | None = None,
    embedder: Embedder | None = None,
    span_exporter: Any = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.drain.watch()  # SIGTERM: /readyz says draining while requests in flight finish
        svc = await build_services(settings, engine, upstream, registry, identity, embedder, tracing)
        app.state.services = svc
        app.state.mcp = MountedMCP(app, settings.host)
        log.info(
            "memproxy ready: upstream=%s memory placement=%s budget=%d",
            svc.upstream.name,
            settings.memory.placement,
            settings.memory.token_budget,
        )
        try:
            async with app.state.mcp.run():
                yield
        finally:
            await _close(svc, owns_engine=engine is None, owns_upstream=upstream is None)
            tracing.shutdown()

    app = FastAPI(title="memproxy", version=VERSION, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.drain = Drain()
    install_handlers(app)
    tracing = setup_tracing(app, settings.observability.tracing, span_exporter)  # off: a no-op
    # portable before memories: /v1/memories/export is not a memory id
    for module in (chat, responses, embeddings, models, portable, explain, memories, admin, health, observability, inspector, ollama):
        app.include_router(module.router)
    app.router.routes.append(Route("/mcp", MCPEndpoint(), methods=["GET", "POST", "DELETE"]))  # docs/mcp.md
    app.add_middleware(LimitsMiddleware, settings=settings.limits)  # inside auth: an unauthenticated body is never read
    app.add_middleware(AuthMiddleware)
    app.add_middleware(RequestIdMiddleware)  # refusals carry a request id too
    app.add_middleware(MetricsMiddleware)  # outermost: refusals are counted too
    return app


async def build_services(
    settings: Settings,
    engine: MemoryEngine | None,
    upstream: Upstream | None,
    registry: UpstreamRegistry | None,
    identity: IdentityResolver | None,
    embedder: Embedder | None = None,
    tracing: Tracing = OFF,
) -> Services:
    auth = _authenticator(settings)  # first: a refused configuration starts nothing
    data_dir = settings.data_path
    data_dir.mkdir(parents=True, exist_ok=True)
    if upstream is None:
        registry = registry or UpstreamRegistry.from_entry_points()
        registry.check(settings.upstream)
        upstream = registry.create(settings.resolved_provider(), settings.upstream, data_dir)
    if engine is None:
        engine = await MemoryEngine.open(settings.memory, data_dir, embedder=embedder)
    if engine.packs is None:  # installed memory packs are recalled with each user's memories
        engine.packs = PackRegistry(data_dir / "packs")
    counter = TokenCounter()
    await _warm_memory(engine, counter)
    await _warm_upstream(upstream)
    engine.writer.start()  # replays journaled writes a previous process left, in the background
    engine.scheduler.start()
    metrics = Metrics(engine, upstream, settings.observability.store_size_interval_s) if settings.observability.metrics else None
    pipeline = MemoryPipeline(engine, counter, settings.memory, observer=metrics, tracing=tracing)
    # the openai backend sends upstream.model instead of the client's; others map it themselves
    override = settings.upstream.model if settings.resolved_provider() == "openai" else None
    return Services(
        settings=settings,
        engine=engine,
        upstream=upstream,
        identity=identity or _identity(auth, settings.memory.default_mode),
        pipeline=pipeline,
        chat=ChatServing(upstream, pipeline, model_override=override),
        responses=ResponsesServing(upstream, pipeline, settings.upstream.responses, model_override=override),
        embeddings=EmbeddingsServing(upstream),
        ollama=OllamaServing(ollama_upstream.from_settings(settings.ollama), pipeline),
        auth=auth,
        metrics=metrics,
    )


def _authenticator(settings: Settings) -> Authenticator:
    """``auth.mode`` resolved; raises ValueError where ``auto`` refuses the host."""
    mode = settings.resolved_auth_mode()
    if mode == "none":
        if settings.auth.mode == "none":
            log.warning("auth.mode is none: anyone who reaches %s:%d can use every memory", settings.host, settings.port)
        return Authenticator("none")
    store = KeyStore(settings.auth.keys_path(settings.data_path))
    if store.count_active() == 0:
        log.warning("auth.mode is keys but no key exists: create one with `memproxy keys create --kind admin`")
    return Authenticator("keys", store)


def _identity(auth: Authenticator, default_mode: str) -> IdentityResolver:
    return KeyIdentityResolver(default_mode) if auth.keys else HeaderIdentityResolver(default_mode)


async def _warm_memory(engine: MemoryEngine, counter: TokenCounter) -> None:
    """Load the tokenizer and connect the store now, so the first recall is fast.

    A store that is down is logged, not fatal: chat fails open without it.
    """
    counter.count("warm up")
    try:
        await asyncio.wait_for(engine.ping(), timeout=WARMUP_TIMEOUT_S)
        await asyncio.wait_for(engine.search("memproxy:warmup", "warm up", record=False), timeout=WARMUP_TIMEOUT_S)
    except Exception as exc:  # startup must not fail on memory; recall reports degraded
        log.warning("memory store not ready at startup (%s: %s); chat will fail open", type(exc).__name__, exc)


async def _warm_upstream(upstream: Upstream) -> None:
    """Load a local model (or a slow-to-import SDK) before the first request."""
    warmup = getattr(upstream, "warmup", None)
    if warmup is None:
        return
    try:
        await warmup()
    except Exception as exc:  # a broken backend reports on its first request instead
        log.warning("upstream %s failed to warm up (%s: %s)", upstream.name, type(exc).__name__, exc)


async def _close(svc: Services, *, owns_engine: bool, owns_upstream: bool) -> None:
    await svc.ollama.aclose()
    await svc.engine.scheduler.aclose()
    try:  # drain: what was acknowledged reaches the store now (what does not stays journaled)
        await asyncio.wait_for(svc.engine.flush(), timeout=DRAIN_FLUSH_S)
    except TimeoutError:
        log.warning("shutdown: %d journaled write(s) not stored yet; replayed at the next start", svc.engine.writer.depth)
    if owns_engine:
        await svc.engine.aclose()
    else:
        await svc.engine.flush()
    if owns_upstream:
        await svc.upstream.aclose()
    if svc.auth.store is not None:
        svc.auth.store.close()
