"""Any OpenAI-compatible HTTP server (OpenAI, vLLM, llama.cpp server, Ollama /v1 ...).

A thin httpx transport: the client's body goes out as is (messages aside,
which the proxy may have given memories), and chunks come back one SSE
event at a time, as they arrive.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from adapters.base import CallContext, configured_models
from adapters.errors import UpstreamError, UpstreamUnavailable, UpstreamUnsupported, relayed_headers
from adapters.settings import UpstreamSettings
from adapters.transport import before, deadline_after, error_body, json_object, transport_errors, until

PEER = "the upstream model"


class OpenAIUpstream:
    name = "openai"

    def __init__(self, settings: UpstreamSettings, client: httpx.AsyncClient | None = None) -> None:
        if not settings.base_url:
            raise ValueError("the openai upstream needs upstream.base_url")
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        timeout = httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        self.client = client or httpx.AsyncClient(timeout=timeout, limits=limits)

    async def chat(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        body = {**body, "stream": False} if body.get("stream") else body
        return await self._post_json("/chat/completions", body, ctx, endpoint=None)

    async def open_stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        deadline = deadline_after(self.settings.timeout_s)
        response = await self._open_sse("/chat/completions", body, ctx, endpoint=None, deadline=deadline)
        return _sse_payloads(
            response, deadline, is_error=lambda p: "error" in p and "choices" not in p, is_final=_has_finish_reason
        )

    async def list_models(self) -> list[dict[str, Any]]:
        if self.settings.models:
            return configured_models(self.settings.models)
        with transport_errors(PEER):
            response = await self.client.get(f"{self.base_url}/models", headers=self._headers(None))
        if response.status_code >= 400:
            raise _error_from(response.status_code, response.content)
        data = json_object(response.content, PEER).get("data")
        return data if isinstance(data, list) else []

    async def responses(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """``POST /responses``; raises UpstreamUnsupported when the server has none."""
        body = {**body, "stream": False} if body.get("stream") else body
        return await self._post_json("/responses", body, ctx, endpoint="the Responses API")

    async def open_responses_stream(
        self, body: dict[str, Any], ctx: CallContext
    ) -> AsyncIterator[dict[str, Any]]:
        deadline = deadline_after(self.settings.timeout_s)
        response = await self._open_sse("/responses", body, ctx, endpoint="the Responses API", deadline=deadline)
        return _sse_payloads(
            response, deadline, is_error=lambda p: "type" not in p and "error" in p, is_final=_is_terminal_event
        )

    async def embeddings(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return await self._post_json("/embeddings", body, ctx, endpoint="embeddings")

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _post_json(
        self, path: str, body: dict[str, Any], ctx: CallContext, endpoint: str | None
    ) -> dict[str, Any]:
        async with before(deadline_after(self.settings.timeout_s), PEER):
            with transport_errors(PEER):
                response = await self.client.post(f"{self.base_url}{path}", json=body, headers=self._headers(ctx))
        if response.status_code >= 400:
            raise _status_error(response.status_code, response.content, endpoint, response.headers)
        return json_object(response.content, PEER)

    async def _open_sse(
        self, path: str, body: dict[str, Any], ctx: CallContext, endpoint: str | None, deadline: float
    ) -> httpx.Response:
        """Send a streaming request; raise on an error status before any event."""
        request = self.client.build_request(
            "POST",
            f"{self.base_url}{path}",
            json={**body, "stream": True},
            headers={**self._headers(ctx), "Accept": "text/event-stream"},
        )
        async with before(deadline, PEER):
            with transport_errors(PEER):
                response = await self.client.send(request, stream=True)
            if response.status_code >= 400:
                content = await error_body(response, PEER)
                raise _status_error(response.status_code, content, endpoint, response.headers)
        return response

    def _headers(self, ctx: CallContext | None) -> dict[str, str]:
        key = (ctx.upstream_api_key if ctx else None) or self.settings.api_key or (ctx.client_api_key if ctx else None)
        headers = dict(ctx.extra_headers) if ctx else {}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if ctx:
            headers["X-Request-Id"] = ctx.request_id
        return headers


async def _sse_payloads(
    response: httpx.Response,
    deadline: float,
    is_error: Callable[[dict[str, Any]], bool],
    is_final: Callable[[dict[str, Any]], bool],
) -> AsyncIterator[dict[str, Any]]:
    """Parse an SSE stream into JSON payloads, one per ``data:`` event, as they arrive.

    The whole stream runs under ``deadline``. A stream that stops before
    ``[DONE]`` and before any payload ``is_final`` (a chunk with a
    ``finish_reason``, a terminal Responses event) was cut off: a 502, so the
    client gets an error event and nothing is stored.
    """
    finished = False
    try:
        with transport_errors(PEER, streaming=True):
            async for line in until(response.aiter_lines(), deadline, PEER):
                data = line[5:].strip() if line.startswith("data:") else ""
                if data == "[DONE]":
                    return
                if not data:
                    continue
                payload = json_object(data.encode("utf-8"), PEER)
                if is_error(payload):
                    raise _error_from(502, data.encode("utf-8"))
                finished = finished or is_final(payload)
                yield payload
        if not finished:
            raise UpstreamUnavailable(f"The stream from {PEER} ended before it finished (no finish_reason, no [DONE]).")
    finally:
        await response.aclose()


def _has_finish_reason(chunk: dict[str, Any]) -> bool:
    choices = chunk.get("choices")
    return isinstance(choices, list) and any(isinstance(c, dict) and c.get("finish_reason") for c in choices)


TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})


def _is_terminal_event(event: dict[str, Any]) -> bool:
    return event.get("type") in TERMINAL_EVENTS


def _status_error(status: int, content: bytes, endpoint: str | None, headers: Any = None) -> UpstreamError:
    error = _error_from(status, content) if endpoint is None else _endpoint_error(status, content, endpoint)
    error.headers.update(relayed_headers(headers))
    return error


# Statuses with which servers say "no such route" (vLLM/FastAPI and Starlette
# 404/405, llama.cpp server 404, some gateways 501) -- unless the body says it
# is the *model* that is missing.
_NO_ROUTE = (404, 405, 501)


def _endpoint_error(status: int, content: bytes, endpoint: str) -> UpstreamError:
    error = _error_from(status, content)
    if status in _NO_ROUTE and error.code != "model_not_found" and "model" not in error.message.lower():
        return UpstreamUnsupported(f"The upstream does not serve {endpoint} ({status}: {error.message}).")
    return error


def _error_from(status: int, content: bytes) -> UpstreamError:
    """Keep the upstream's status and OpenAI error fields where it sent them."""
    try:
        error = json.loads(content).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        return UpstreamError(
            str(error.get("message") or f"Upstream error {status}"),
            status=status,
            type=str(error.get("type") or "upstream_error"),
            code=_opt_str(error.get("code")),
            param=_opt_str(error.get("param")),
        )
    if isinstance(error, str):
        return UpstreamError(error, status=status)
    text = content.decode("utf-8", "replace").strip()[:500] or f"Upstream error {status}"
    return UpstreamError(text, status=status)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def create(settings: UpstreamSettings, data_dir: Path) -> OpenAIUpstream:
    return OpenAIUpstream(settings)
