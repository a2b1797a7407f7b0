"""A real Ollama server's native API (``/api/*``), as an httpx client.

Bodies go out and come back as Ollama sends them: the proxy only adds
memories to requests, so streamed NDJSON lines are handed back one at a time,
as they arrive, raw bytes and parsed object side by side (the final ``done``
object with its durations and counts stays byte-for-byte intact).

Errors are :mod:`adapters.errors` exceptions carrying Ollama's own message
(``{"error": "..."}``) and status; the Ollama routes render them back in
Ollama's shape.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from adapters.base import CallContext
from adapters.errors import UpstreamError, UpstreamUnavailable, relayed_headers
from adapters.transport import before, deadline_after, error_body, json_object, transport_errors, until

DEFAULT_BASE_URL = "http://127.0.0.1:11434"
PEER = "Ollama"


@dataclass(frozen=True, slots=True)
class NdjsonLine:
    """One streamed line: the bytes to relay and the object they encode."""

    raw: bytes
    data: dict[str, Any]


class OllamaSettings(BaseModel):
    """The Ollama server behind memproxy's native ``/api/*`` routes."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = DEFAULT_BASE_URL
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0


class OllamaUpstream:
    """Ollama's native API at ``base_url``. Safe to call concurrently."""

    name = "ollama"

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout_s: float = 600.0,
        connect_timeout_s: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        self.client = client or httpx.AsyncClient(timeout=timeout, limits=limits)

    async def get(self, path: str, ctx: CallContext | None = None) -> dict[str, Any]:
        """``GET /api/<path>`` (tags, version, ps) as a JSON object."""
        return await self._call("GET", path, None, ctx)

    async def post(self, path: str, body: dict[str, Any], ctx: CallContext | None = None) -> dict[str, Any]:
        """A non-streaming ``POST /api/<path>`` (chat, generate, show, embed...)."""
        return await self._call("POST", path, body, ctx)

    async def open_stream(
        self, path: str, body: dict[str, Any], ctx: CallContext | None = None
    ) -> AsyncIterator[NdjsonLine]:
        """Start a streaming ``POST``; raises on an upstream error before any line."""
        request = self.client.build_request(
            "POST", f"{self.base_url}{path}", json=body, headers=_headers(ctx)
        )
        deadline = deadline_after(self.timeout_s)
        async with before(deadline, PEER):
            with transport_errors(f"Ollama at {self.base_url}"):
                response = await self.client.send(request, stream=True)
            if response.status_code >= 400:
                content = await error_body(response, PEER)
                raise parse_error(response.status_code, content, response.headers)
        return _lines(response, deadline)

    async def open_raw(self, method: str, path: str, content: bytes, content_type: str | None) -> httpx.Response:
        """Forward a request byte for byte; the caller streams and closes the response."""
        headers = {"Content-Type": content_type} if content_type else {}
        request = self.client.build_request(method, f"{self.base_url}{path}", content=content, headers=headers)
        with transport_errors(f"Ollama at {self.base_url}"):
            return await self.client.send(request, stream=True)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None, ctx: CallContext | None
    ) -> dict[str, Any]:
        async with before(deadline_after(self.timeout_s), PEER):
            with transport_errors(f"Ollama at {self.base_url}"):
                response = await self.client.request(
                    method, f"{self.base_url}{path}", json=body, headers=_headers(ctx)
                )
        if response.status_code >= 400:
            raise parse_error(response.status_code, response.content, response.headers)
        return json_object(response.content, PEER)


def parse_error(status: int, content: bytes, headers: Any = None) -> UpstreamError:
    """Ollama's ``{"error": "..."}`` (or any body) as an UpstreamError, status kept."""
    try:
        error = json.loads(content).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):  # an OpenAI-style body from something in between
        error = error.get("message")
    message = str(error) if error else content.decode("utf-8", "replace").strip()[:500]
    return UpstreamError(message or f"Ollama error {status}", status=status, headers=relayed_headers(headers))


async def _lines(response: httpx.Response, deadline: float) -> AsyncIterator[NdjsonLine]:
    """The NDJSON lines of a stream, all under ``deadline``; one that stops
    before its ``"done": true`` line was cut off (502: nothing is stored)."""
    done = False
    try:
        with transport_errors(PEER, streaming=True):
            async for line in until(response.aiter_lines(), deadline, PEER):
                if not line.strip():
                    continue
                data = json_object(line.encode("utf-8"), PEER)
                if "error" in data and len(data) == 1:
                    raise UpstreamError(str(data["error"]), status=502)
                done = done or bool(data.get("done"))
                yield NdjsonLine(line.encode("utf-8"), data)
        if not done:
            raise UpstreamUnavailable(f"The stream from {PEER} ended before its final (done) line.")
    finally:
        await response.aclose()


def _headers(ctx: CallContext | None) -> dict[str, str]:
    if ctx is None:
        return {}
    headers = dict(ctx.extra_headers)
    if ctx.client_api_key:
        headers["Authorization"] = f"Bearer {ctx.client_api_key}"
    headers["X-Request-Id"] = ctx.request_id
    return headers


def from_settings(settings: OllamaSettings) -> OllamaUpstream:
    return OllamaUpstream(settings.base_url, timeout_s=settings.timeout_s, connect_timeout_s=settings.connect_timeout_s)
