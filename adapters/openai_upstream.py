"""Any OpenAI-compatible HTTP server (OpenAI, vLLM, llama.cpp server, Ollama /v1 ...).

A thin httpx transport: the client's body goes out as is (messages aside,
which the proxy may have given memories), and chunks come back one SSE
event at a time, as they arrive.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from adapters.base import CallContext
from adapters.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable, UpstreamUnsupported
from proxy.config import UpstreamSettings


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
        try:
            response = await self.client.post(
                f"{self.base_url}/chat/completions", json=body, headers=self._headers(ctx)
            )
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"Could not reach the upstream model: {exc}") from exc
        if response.status_code >= 400:
            raise _error_from(response.status_code, response.content)
        return _json(response.content)

    async def open_stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncIterator[dict[str, Any]]:
        request = self.client.build_request(
            "POST",
            f"{self.base_url}/chat/completions",
            json={**body, "stream": True},
            headers={**self._headers(ctx), "Accept": "text/event-stream"},
        )
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"Could not reach the upstream model: {exc}") from exc
        if response.status_code >= 400:
            content = await response.aread()
            await response.aclose()
            raise _error_from(response.status_code, content)
        return _events(response)

    async def list_models(self) -> list[dict[str, Any]]:
        if self.settings.models:
            return configured_models(self.settings.models)
        try:
            response = await self.client.get(f"{self.base_url}/models", headers=self._headers(None))
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"Could not reach the upstream model: {exc}") from exc
        if response.status_code >= 400:
            raise _error_from(response.status_code, response.content)
        data = _json(response.content).get("data")
        return data if isinstance(data, list) else []

    async def responses(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """``POST /responses``; raises UpstreamUnsupported when the server has none."""
        body = {**body, "stream": False} if body.get("stream") else body
        return await self._post_json("/responses", body, ctx, endpoint="the Responses API")

    async def open_responses_stream(
        self, body: dict[str, Any], ctx: CallContext
    ) -> AsyncIterator[dict[str, Any]]:
        request = self.client.build_request(
            "POST",
            f"{self.base_url}/responses",
            json={**body, "stream": True},
            headers={**self._headers(ctx), "Accept": "text/event-stream"},
        )
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"Could not reach the upstream model: {exc}") from exc
        if response.status_code >= 400:
            content = await response.aread()
            await response.aclose()
            raise _endpoint_error(response.status_code, content, "the Responses API")
        return _response_events(response)

    async def embeddings(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return await self._post_json("/embeddings", body, ctx, endpoint="embeddings")

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _post_json(self, path: str, body: dict[str, Any], ctx: CallContext, endpoint: str) -> dict[str, Any]:
        try:
            response = await self.client.post(f"{self.base_url}{path}", json=body, headers=self._headers(ctx))
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(f"Could not reach the upstream model: {exc}") from exc
        if response.status_code >= 400:
            raise _endpoint_error(response.status_code, response.content, endpoint)
        return _json(response.content)

    def _headers(self, ctx: CallContext | None) -> dict[str, str]:
        key = self.settings.api_key or (ctx.client_api_key if ctx else None)
        headers = dict(ctx.extra_headers) if ctx else {}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if ctx:
            headers["X-Request-Id"] = ctx.request_id
        return headers


def configured_models(names: list[str]) -> list[dict[str, Any]]:
    created = int(time.time())
    return [{"id": n, "object": "model", "created": created, "owned_by": "memproxy"} for n in names]


async def _events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Parse an SSE stream into JSON payloads, one per ``data:`` event."""
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            if not data:
                continue
            payload = _json(data.encode("utf-8"))
            if "error" in payload and "choices" not in payload:
                raise _error_from(502, data.encode("utf-8"))
            yield payload
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout("The upstream model stopped sending in time.") from exc
    except httpx.TransportError as exc:
        raise UpstreamUnavailable(f"The upstream stream broke: {exc}") from exc
    finally:
        await response.aclose()


async def _response_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Parse a Responses SSE stream into its events (each carries its ``type``)."""
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            if not data:
                continue
            payload = _json(data.encode("utf-8"))
            if "type" not in payload and "error" in payload:
                raise _error_from(502, data.encode("utf-8"))
            yield payload
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout("The upstream model stopped sending in time.") from exc
    except httpx.TransportError as exc:
        raise UpstreamUnavailable(f"The upstream stream broke: {exc}") from exc
    finally:
        await response.aclose()


# Statuses with which servers say "no such route" (vLLM/FastAPI and Starlette
# 404/405, llama.cpp server 404, some gateways 501) -- unless the body says it
# is the *model* that is missing.
_NO_ROUTE = (404, 405, 501)


def _endpoint_error(status: int, content: bytes, endpoint: str) -> UpstreamError:
    error = _error_from(status, content)
    if status in _NO_ROUTE and error.code != "model_not_found" and "model" not in error.message.lower():
        return UpstreamUnsupported(f"The upstream does not serve {endpoint} ({status}: {error.message}).")
    return error


def _json(content: bytes) -> dict[str, Any]:
    try:
        value = json.loads(content)
    except ValueError as exc:
        raise UpstreamUnavailable("The upstream model returned invalid JSON.") from exc
    if not isinstance(value, dict):
        raise UpstreamUnavailable("The upstream model returned a non-object JSON body.")
    return value


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
