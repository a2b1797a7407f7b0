"""Any OpenAI-compatible HTTP server (OpenAI, vLLM, llama.cpp server, Ollama /v1 ...).

A thin aiohttp transport: the client's body goes out as is (messages aside,
which the proxy may have given memories), serialised once with orjson, and
chunks come back one SSE event at a time, as they arrive. aiohttp rather than
httpx because this hop is on every chat call: its keep-alive pool and C
parser cost about half a millisecond less per call than httpx's layers
(``memproxy bench latency``, docs/benchmarks.md).

The environment's proxy (``HTTP(S)_PROXY`` / ``NO_PROXY``) is looked up once,
for the upstream's base URL, when the pool is made: aiohttp's ``trust_env``
would look it up (and read ``~/.netrc``) on a worker thread on every call, two
thread round trips per request. The pool keeps no cookies: it is shared by
every client of the proxy, so a cookie the upstream set for one must not be
sent for another.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import certifi
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from adapters.base import CallContext, configured_models
from adapters.errors import UpstreamError, UpstreamUnavailable, UpstreamUnsupported, relayed_headers
from adapters.settings import UpstreamSettings
from adapters.transport import before, deadline_after, json_bytes, json_object, transport_errors, until

PEER = "the upstream model"
MAX_CONNECTIONS = 256
JSON = {"Content-Type": "application/json"}


class OpenAIUpstream:
    name = "openai"

    def __init__(self, settings: UpstreamSettings) -> None:
        if not settings.base_url:
            raise ValueError("the openai upstream needs upstream.base_url")
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        # each read (and the connect) is bounded here; the whole request by `before`
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.connect_timeout_s, sock_read=settings.timeout_s
        )
        self._session: aiohttp.ClientSession | None = None
        self._proxy = env_proxy(self.base_url)


    @property
    def session(self) -> aiohttp.ClientSession:
        """The keep-alive pool, made on first use (inside the running event loop)."""
        if self._session is None or self._session.closed:
            # as httpx did: certifi's CA bundle, and HTTP(S)_PROXY / NO_PROXY from the environment
            tls = ssl.create_default_context(cafile=certifi.where())
            connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, limit_per_host=0, ssl=tls)
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

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
        async with before(deadline_after(self.settings.timeout_s), PEER):
            with transport_errors(PEER):
                async with self.session.get(f"{self.base_url}/models", headers=self._headers(None), **self._proxy) as response:
                    status, content = response.status, await response.read()
        if status >= 400:
            raise _error_from(status, content)
        data = json_object(content, PEER).get("data")
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
        if self._session is not None:
            await self._session.close()

    async def _post_json(
        self, path: str, body: dict[str, Any], ctx: CallContext, endpoint: str | None
    ) -> dict[str, Any]:
        url, data, headers = f"{self.base_url}{path}", json_bytes(body), {**self._headers(ctx), **JSON}
        async with before(deadline_after(self.settings.timeout_s), PEER):
            with transport_errors(PEER):
                async with self.session.post(url, data=data, headers=headers, **self._proxy) as response:
                    status, content = response.status, await response.read()
        if status >= 400:
            raise _status_error(status, content, endpoint, response.headers)
        return json_object(content, PEER)

    async def _open_sse(
        self, path: str, body: dict[str, Any], ctx: CallContext, endpoint: str | None, deadline: float
    ) -> aiohttp.ClientResponse:
        """Send a streaming request; raise on an error status before any event."""
        headers = {**self._headers(ctx), **JSON, "Accept": "text/event-stream"}
        data = json_bytes({**body, "stream": True})
        async with before(deadline, PEER):
            with transport_errors(PEER):
                response = await self.session.post(f"{self.base_url}{path}", data=data, headers=headers, **self._proxy)
            if response.status >= 400:
                try:
                    with transport_errors(PEER):
                        content = await response.read()
                finally:
                    response.release()
                raise _status_error(response.status, content, endpoint, response.headers)
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
    response: aiohttp.ClientResponse,
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
            async for line in until(_lines(response), deadline, PEER):
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
        response.release()  # back to the pool when read to the end, else closed


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The body's lines as they arrive (ended by LF, CRLF or CR), without their endings."""
    pending = b""
    async for chunk in response.content.iter_any():
        pieces = (pending + chunk).splitlines(keepends=True)
        pending = pieces.pop() if pieces and not pieces[-1].endswith((b"\n", b"\r")) else b""
        for piece in pieces:
            yield piece.rstrip(b"\r\n").decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


def env_proxy(url: str) -> dict[str, Any]:
    """The environment's proxy for ``url`` (``HTTP(S)_PROXY``, ``NO_PROXY``) as request
    arguments: ``{"proxy": URL}``, its credentials in the URL (aiohttp sends them as
    ``Proxy-Authorization``); empty when there is none."""
    try:
        proxy, auth = get_env_proxy_for_url(URL(url))
    except LookupError:  # none set, or NO_PROXY names the host
        return {}
    if auth is not None:
        proxy = proxy.with_user(auth.login).with_password(auth.password)
    return {"proxy": proxy}


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
