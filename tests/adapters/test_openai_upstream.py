"""The OpenAI-compatible upstream's HTTP hop (aiohttp): bodies out, SSE lines in, connections reused."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import Receive, Scope, Send

from adapters.base import CallContext
from adapters.openai_upstream import OpenAIUpstream
from adapters.settings import UpstreamSettings
from testing.serving import ServerThread

CTX = CallContext(request_id="req_test")
# one stream, cut into awkward pieces: CRLF and CR line endings, an event split
# mid-line, a multi-byte character split between two chunks
PIECES = [
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"caf',
    "é".encode()[:1],
    "é".encode()[1:] + b'"},"finish_reason":null}]}\r\n\r',
    b'\ndata: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\r\r',
    b"data: [DONE]\n\n",
]


class Recorder:
    """An upstream that answers JSON with what it received, or streams PIECES; counts connections."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.clients: set[tuple[str, int]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.clients.add(tuple(scope["client"]))
        raw = b""
        more = True
        while more:
            message = await receive()
            raw += message.get("body", b"")
            more = message.get("more_body", False)
        body = json.loads(raw)
        self.bodies.append(body)
        if body.get("stream"):
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
            for piece in PIECES:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                await asyncio.sleep(0.01)
            await send({"type": "http.response.body", "body": b""})
            return
        answer = json.dumps({"id": "c1", "object": "chat.completion", "echo": body}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer})


def test_bodies_go_out_as_json_and_connections_are_reused() -> None:
    recorder = Recorder()
    big = 2**70  # beyond orjson's integers: the standard library writes it

    async def scenario(url: str) -> list[dict[str, Any]]:
        upstream = OpenAIUpstream(UpstreamSettings(base_url=url))
        try:
            return [
                await upstream.chat({"model": "m", "messages": [{"role": "user", "content": f"hé {n}"}], "seed": big}, CTX)
                for n in range(3)
            ]
        finally:
            await upstream.aclose()

    with ServerThread(recorder) as server:
        answers = asyncio.run(scenario(f"{server.url}/v1"))
    assert [a["echo"]["messages"][0]["content"] for a in answers] == ["hé 0", "hé 1", "hé 2"]
    assert all(a["echo"]["seed"] == big for a in answers)
    assert len(recorder.clients) == 1  # one kept-alive connection for the three calls


def test_sse_lines_are_read_whatever_the_chunking_and_line_endings() -> None:
    recorder = Recorder()

    async def scenario(url: str) -> list[dict[str, Any]]:
        upstream = OpenAIUpstream(UpstreamSettings(base_url=url))
        try:
            stream = await upstream.open_stream({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, CTX)
            return [chunk async for chunk in stream]
        finally:
            await upstream.aclose()

    with ServerThread(recorder) as server:
        chunks = asyncio.run(scenario(f"{server.url}/v1"))
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["café", None]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert recorder.bodies[0]["stream"] is True


class CookieSetter(Recorder):
    """Answers like :class:`Recorder`, sets a cookie, and records each request's headers."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[dict[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})

        async def send_with_cookie(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (b"set-cookie", b"session=client-a; Path=/")]}
            await send(message)

        await super().__call__(scope, receive, send_with_cookie)


def test_the_shared_pool_sends_no_cookie_an_upstream_set_for_another_call() -> None:
    upstream_app = CookieSetter()

    async def scenario(url: str) -> None:
        upstream = OpenAIUpstream(UpstreamSettings(base_url=url))
        try:
            for n in range(2):
                await upstream.chat({"model": "m", "messages": [{"role": "user", "content": f"call {n}"}]}, CTX)
        finally:
            await upstream.aclose()

    with ServerThread(upstream_app) as server:
        asyncio.run(scenario(f"{server.url}/v1"))
    assert len(upstream_app.headers) == 2
    assert "cookie" not in upstream_app.headers[1]  # the first call's Set-Cookie is not replayed


def test_the_environment_proxy_is_used_and_no_proxy_is_honoured(monkeypatch: Any) -> None:
    proxy_app = CookieSetter()  # stands in for the HTTP proxy: it answers whatever it is asked

    async def scenario() -> dict[str, Any]:
        # a host that does not resolve: only the proxy can answer for it
        upstream = OpenAIUpstream(UpstreamSettings(base_url="http://upstream.invalid/v1"))
        try:
            return await upstream.chat({"model": "m", "messages": [{"role": "user", "content": "via proxy"}]}, CTX)
        finally:
            await upstream.aclose()

    with ServerThread(proxy_app) as proxy:
        host_port = proxy.url.removeprefix("http://")
        monkeypatch.setenv("HTTP_PROXY", f"http://user:secret@{host_port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        answer = asyncio.run(scenario())
        monkeypatch.setenv("NO_PROXY", "upstream.invalid")
        bypassed = OpenAIUpstream(UpstreamSettings(base_url="http://upstream.invalid/v1"))
    assert answer["echo"]["messages"][0]["content"] == "via proxy"
    assert proxy_app.headers[0]["host"] == "upstream.invalid"
    assert proxy_app.headers[0]["proxy-authorization"] == "Basic dXNlcjpzZWNyZXQ="  # user:secret
    assert bypassed._proxy == {}  # NO_PROXY names the host: straight to it
