"""The tiny interface every upstream backend implements.

An upstream takes an OpenAI chat-completions request body (a plain dict, every
field the client sent, minus nothing) and returns OpenAI-shaped dicts. Errors
are raised as :mod:`adapters.errors` exceptions, *before* the first chunk of a
stream is yielded whenever the backend allows it, so the proxy can still send
a proper HTTP status.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class Activation:
    """What the proxy tells a local upstream about the stable prompt prefix.

    ``marker`` is the core memory block exactly as injected: the prefix is the
    formatted prompt up to and including its first occurrence. The upstream
    reports what it did in ``kv`` (``hit`` | ``miss`` | ``off``) and how long a
    restore took.
    """

    owner: str
    core_version: str
    marker: str
    kv: str = "off"
    restore_ms: float | None = None
    prefix_tokens: int = 0


@dataclass(frozen=True, slots=True)
class CallContext:
    """Per-request facts an adapter may need besides the body."""

    request_id: str
    # The client's bearer token, forwarded when no upstream key is configured.
    client_api_key: str | None = None
    # A credential the proxy chose for this call (a memproxy API key's own
    # upstream key); it wins over ``upstream.api_key`` and the client's.
    upstream_api_key: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    # The stable [system + core memory] prefix of this request, for upstreams
    # that can reuse its KV state; they report ``hit`` / ``miss`` in it.
    # None: no core memories.
    activation: Activation | None = None


@runtime_checkable
class Upstream(Protocol):
    """A model backend. Implementations must be safe to call concurrently."""

    name: str

    async def chat(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """One non-streaming chat completion (an OpenAI ``chat.completion`` dict)."""
        ...

    async def open_stream(
        self, body: dict[str, Any], ctx: CallContext
    ) -> AsyncIterator[dict[str, Any]]:
        """Start a streaming completion.

        Awaiting this sends the request and raises on an upstream error; the
        returned iterator yields ``chat.completion.chunk`` dicts as they arrive.
        """
        ...

    async def list_models(self) -> list[dict[str, Any]]:
        """OpenAI ``model`` objects this upstream serves."""
        ...

    async def aclose(self) -> None:
        ...


@runtime_checkable
class ResponsesUpstream(Protocol):
    """Optional: an upstream that speaks the OpenAI Responses API itself.

    Raise :class:`adapters.errors.UpstreamUnsupported` when the server turns
    out to have no Responses endpoint; the proxy then bridges the request
    onto chat completions.
    """

    async def responses(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """One non-streaming ``POST /responses`` (an OpenAI ``response`` dict)."""
        ...

    async def open_responses_stream(
        self, body: dict[str, Any], ctx: CallContext
    ) -> AsyncIterator[dict[str, Any]]:
        """Start a streaming response; the iterator yields Responses stream events."""
        ...


@runtime_checkable
class EmbeddingsUpstream(Protocol):
    """Optional: an upstream that serves ``POST /embeddings``."""

    async def embeddings(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        ...


def configured_models(names: list[str]) -> list[dict[str, Any]]:
    """``GET /v1/models`` entries for model names the configuration lists."""
    created = int(time.time())
    return [{"id": n, "object": "model", "created": created, "owned_by": "memproxy"} for n in names]


async def close_stream(stream: object) -> None:
    """Close an async iterator that has ``aclose`` (generators, upstream streams); others need nothing."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
