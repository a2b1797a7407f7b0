"""Input limits of the HTTP server (the ``limits:`` section) and safe JSON.

Every request body is read by :class:`LimitsMiddleware` before any route sees
it: headers too large -> 431, a body over ``limits.max_body_bytes`` -> 413
(refused from ``Content-Length`` before it is read, or as soon as the bytes
read pass the cap), and a JSON body that is not safe to handle -> 400:
invalid UTF-8, ``NaN``/``Infinity``, lone surrogates, nesting deeper than
``limits.max_json_depth``. Streamed uploads (:data:`STREAMED_PREFIXES`: memory
archive import, Ollama model management) pass through untouched. Bodies above
``limits.offload_bytes`` are parsed on
a worker thread, so a big body never stalls the event loop. The parsed body
is kept in the request's state (:func:`parsed_body`) for the routes that read
the body themselves; FastAPI-typed routes parse the same, now known-safe bytes.

Errors are OpenAI-format bodies; under ``/api/`` (Ollama's native API) they
are Ollama's ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

KIB = 1024
MIB = 1024 * KIB


class LimitsSettings(BaseModel):
    """The ``limits:`` section: what one request may carry."""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(default=8 * MIB, ge=1)  # any request body; more -> 413
    max_header_bytes: int = Field(default=32 * KIB, ge=1)  # all request headers together; more -> 431
    max_json_depth: int = Field(default=64, ge=2)  # nesting of arrays/objects in a JSON body; deeper -> 400
    max_messages: int = Field(default=2048, ge=1)  # messages (chat, Ollama) or input items (Responses); more -> 400
    offload_bytes: int = Field(default=64 * KIB, ge=0)  # bodies larger than this are parsed and validated off the event loop


# Streamed uploads, passed through as they come: never buffered nor parsed here
# (a memory archive is spooled to disk by its route; Ollama model management,
# blobs of gigabytes included, is relayed byte for byte).
STREAMED_PREFIXES = (
    "/v1/memories/import",
    "/api/pull", "/api/push", "/api/create", "/api/delete", "/api/copy", "/api/blobs",
)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_SURROGATE = re.compile("[\ud800-\udfff]")
STATE_KEY = "json_body"


class UnsafeJson(ValueError):
    """A body that is not a JSON document the server will handle; the message says why."""


def _reject_constant(name: str) -> Any:
    raise UnsafeJson(f"The JSON body contains {name}, which is not valid JSON.")


def parse_json(raw: bytes, max_depth: int) -> Any:
    """Parse ``raw`` as strict JSON: UTF-8, no ``NaN``/``Infinity``, no lone
    surrogates, nesting at most ``max_depth``; raises :class:`UnsafeJson`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafeJson("The request body is not valid UTF-8.") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise UnsafeJson(f"The JSON body is nested deeper than {max_depth} levels.") from None
    except UnsafeJson:
        raise
    except ValueError:
        raise UnsafeJson(
            "We could not parse the JSON body of your request. Send valid JSON with Content-Type: application/json."
        ) from None
    check_tree(value, max_depth)
    return value


def check_tree(value: Any, max_depth: int) -> None:
    """Iteratively check nesting depth and strings (keys too) for lone surrogates."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                raise UnsafeJson("The JSON body contains a lone surrogate (an invalid \\u escape in a string).")
        elif isinstance(node, dict | list):
            if depth > max_depth:
                raise UnsafeJson(f"The JSON body is nested deeper than {max_depth} levels.")
            if isinstance(node, dict):
                for key, item in node.items():
                    if _SURROGATE.search(key):
                        raise UnsafeJson("The JSON body contains a lone surrogate (an invalid \\u escape in a key).")
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in node)


async def parse_json_async(raw: bytes, settings: LimitsSettings) -> Any:
    """:func:`parse_json`, on a worker thread when ``raw`` is large."""
    if len(raw) > settings.offload_bytes:
        return await asyncio.to_thread(parse_json, raw, settings.max_json_depth)
    return parse_json(raw, settings.max_json_depth)


_MISSING = object()


def parsed_body(scope: Scope) -> Any:
    """The body :class:`LimitsMiddleware` parsed for this request (``_MISSING``-safe: None when it did not)."""
    state = scope.get("state") or {}
    return state.get(STATE_KEY, _MISSING)


def has_parsed_body(value: Any) -> bool:
    return value is not _MISSING


class LimitsMiddleware:
    """Caps headers and bodies, parses JSON bodies safely (off the loop when big), replays them."""

    def __init__(self, app: ASGIApp, settings: LimitsSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        limits = self.settings
        header_bytes = sum(len(k) + len(v) + 4 for k, v in scope.get("headers", []))
        if header_bytes > limits.max_header_bytes:
            await _error(
                send, path, 431, f"The request headers total {header_bytes} bytes; the limit is {limits.max_header_bytes}.",
                "headers_too_large",
            )
            return
        if scope.get("method") not in _BODY_METHODS or path.startswith(STREAMED_PREFIXES):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > limits.max_body_bytes:
            await _too_large(send, path, limits.max_body_bytes)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limits.max_body_bytes:
                await _too_large(send, path, limits.max_body_bytes)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        if raw:
            try:
                body = await parse_json_async(raw, limits)
            except UnsafeJson as exc:
                await _error(send, path, 400, str(exc), "invalid_json")
                return
            scope.setdefault("state", {})[STATE_KEY] = body
        await self.app(scope, _replay(raw, receive), send)


def _replay(raw: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()  # after the body: the disconnect, when it comes

    return replay


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send, path: str, limit: int) -> None:
    await _error(send, path, 413, f"The request body is larger than {limit} bytes (limits.max_body_bytes).", "request_too_large")


async def _error(send: Send, path: str, status: int, message: str, code: str) -> None:
    if path.startswith("/api/"):
        payload: dict[str, Any] = {"error": message}
    else:
        payload = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    body = json.dumps(payload).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
