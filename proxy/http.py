"""What every route does with an HTTP request before its service sees it.

Read the JSON body (a clear 400 when it is not an object), validate it
against the endpoint's request model, resolve who the memory belongs to, and
build the :class:`CallContext` of the upstream call; and send Server-Sent
Events with headers that proxies and browsers do not buffer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from adapters.base import CallContext
from proxy.auth.principal import principal_of
from proxy.errors import InvalidRequest
from proxy.identity import Identity
from proxy.limits import LimitsSettings, UnsafeJson, has_parsed_body, parse_json_async, parsed_body
from proxy.services import Services, services

Model = TypeVar("Model", bound=BaseModel)

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
    svc = services(request)
    limits = svc.settings.limits
    body = await read_json_object(request)
    check_messages(body, limits)
    if _large(request, limits):  # pydantic over a big body: off the event loop too
        await asyncio.to_thread(validate, schema, body)
    else:
        validate(schema, body)
    identity = svc.identity.resolve(request.headers, body, principal_of(request))
    return MemoryCall(body, svc, identity, call_context(request))


async def read_json_object(request: Request) -> dict[str, Any]:
    """The JSON object body, as :class:`proxy.limits.LimitsMiddleware` parsed it
    (strict JSON, depth-capped, off the loop when large)."""
    body = parsed_body(request.scope)
    if not has_parsed_body(body):  # no middleware in front (an embedding program) or an empty body
        try:
            body = await parse_json_async(await request.body(), _limits(request))
        except UnsafeJson as exc:
            raise InvalidRequest(str(exc), code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


# The lists a request may carry at most ``limits.max_messages`` of.
MESSAGE_LISTS = ("messages", "input")


def check_messages(body: dict[str, Any], limits: LimitsSettings) -> None:
    """At most ``limits.max_messages`` chat messages (or Responses input items)."""
    for key in MESSAGE_LISTS:
        value = body.get(key)
        if isinstance(value, list) and len(value) > limits.max_messages:
            raise InvalidRequest(
                f"'{key}' has {len(value)} items; at most {limits.max_messages} are accepted (limits.max_messages).",
                param=key,
                code="too_many_messages",
            )


def _limits(request: Request) -> LimitsSettings:
    svc = getattr(request.app.state, "services", None)
    return svc.settings.limits if svc is not None else LimitsSettings()


def _large(request: Request, limits: LimitsSettings) -> bool:
    length = request.headers.get("content-length", "")
    return length.isdigit() and int(length) > limits.offload_bytes


def validate(model: type[Model], body: dict[str, Any]) -> Model:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _param(first.get("loc", ()))
        message = first.get("msg", "Invalid request.")
        raise InvalidRequest(
            f"Invalid value for '{param}': {message}" if param else message, param=param
        ) from None


def call_context(request: Request) -> CallContext:
    """The upstream call's context: the request id and the upstream credential.

    Without auth the client's bearer token is forwarded (when no
    ``upstream.api_key`` is configured), as before. With keys on, the bearer
    is a memproxy key and is never forwarded: the call uses the key's own
    upstream credential, else ``upstream.api_key``.
    """
    principal = principal_of(request)
    if principal.open:
        return CallContext(request.state.request_id, client_api_key=bearer_token(request))
    return CallContext(request.state.request_id, upstream_api_key=principal.upstream_api_key)


def bearer_token(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def event_stream(stream: AsyncIterator[bytes], headers: Mapping[str, str], media_type: str = "text/event-stream") -> StreamingResponse:
    """A streamed response that proxies and browsers do not buffer."""
    return StreamingResponse(stream, media_type=media_type, headers={**STREAM_HEADERS, **headers})


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as the route's JSON body.

    Routes read the raw body themselves (so every field the client sent is
    forwarded), which hides it from FastAPI; this puts the schema back in
    ``/docs``, with nested models inlined.
    """
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline(schema, definitions)}},
        }
    }


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {key: _inline(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    return node


def _param(loc: tuple[Any, ...]) -> str | None:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part) not in {"str", "list[dict[str,any]]"}:
            out += f".{part}" if out else str(part)
    return out or None
