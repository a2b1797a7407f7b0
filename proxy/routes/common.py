"""What the memory-aware OpenAI routes (chat completions, responses) share.

Each reads its request the same way before handing it to its service:
the JSON body, validated against the endpoint's schema, the identity the
memory headers name, and the :class:`CallContext` of the upstream call;
and each streams Server-Sent Events with the same headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from adapters.base import CallContext
from proxy.identity import Identity
from proxy.requests import bearer_token, read_json_object, validate
from proxy.services import Services, services

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(frozen=True, slots=True)
class MemoryCall:
    """One validated request, who sent it and the context of its upstream call."""

    body: dict[str, Any]
    services: Services
    identity: Identity
    context: CallContext


async def read_memory_call(request: Request, schema: type[BaseModel]) -> MemoryCall:
    """Parse ``request``'s JSON body, validate it against ``schema`` and resolve its identity.

    Raises :class:`proxy.errors.InvalidRequest` (400) for a bad body or bad memory headers.
    """
    body = await read_json_object(request)
    validate(schema, body)
    svc = services(request)
    identity = svc.identity.resolve(request.headers, body)
    return MemoryCall(body, svc, identity, call_context(request))


def call_context(request: Request) -> CallContext:
    """The upstream call's context: the request id and the client's own API key."""
    return CallContext(request.state.request_id, client_api_key=bearer_token(request))


def event_stream(stream: AsyncIterator[bytes], headers: Mapping[str, str]) -> StreamingResponse:
    """A ``text/event-stream`` response that proxies and browsers do not buffer."""
    return StreamingResponse(stream, media_type="text/event-stream", headers={**STREAM_HEADERS, **headers})
