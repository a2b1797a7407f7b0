"""A fake OpenAI-compatible upstream that speaks the real wire protocol.

It serves ``POST /v1/chat/completions`` (JSON and SSE streaming),
``POST /v1/responses`` (the Responses API, JSON and SSE; answers 404 while
``responses_api`` is False, like a server without it), ``POST /v1/embeddings``
and ``GET /v1/models`` over real HTTP and records every request it receives,
so tests can check exactly what reached the "model". Behaviour is chosen by
the request's ``model``:

- any name: a deterministic reply ``"Echo: <last user message>"``; when the
  request offers ``tools`` (and ``tool_choice`` is not ``"none"``) the reply
  is a call to the first tool instead;
- ``error-<status>`` (e.g. ``error-429``): an OpenAI error with that status;
- ``slow-<ms>``: streams with ``<ms>`` milliseconds between chunks;
- ``hang``: never answers within any sane timeout (sleeps 60 s);
- ``broken-stream``: sends one chunk, then an error event mid-stream.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bench import fake_responses

MODELS = ("fake-model", "gpt-4o-mini")


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeUpstream:
    """The fake's state: the requests it saw, and its default chunk delay."""

    chunk_delay_s: float = 0.0
    responses_api: bool = True  # False: /v1/responses is 404, like llama.cpp server
    requests: list[RecordedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
            ]
        )

    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def requests_to(self, suffix: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith(suffix)]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    async def _record(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        with self._lock:
            self.requests.append(RecordedRequest(request.url.path, dict(request.headers), body))
        return body

    async def _models(self, request: Request) -> Response:
        data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in MODELS]
        return JSONResponse({"object": "list", "data": data})

    async def _responses(self, request: Request) -> Response:
        if not self.responses_api:
            return Response("Not Found", status_code=404, media_type="text/plain")
        body = await self._record(request)
        model = str(body.get("model", ""))
        if (failure := _requested_error(model)) is not None:
            return failure
        if body.get("stream"):
            delay = _delay_for(model, self.chunk_delay_s)
            return StreamingResponse(fake_responses.stream_response(body, delay), media_type="text/event-stream")
        return JSONResponse(fake_responses.complete_response(body))

    async def _embeddings(self, request: Request) -> Response:
        body = await self._record(request)
        model = str(body.get("model", ""))
        if (failure := _requested_error(model)) is not None:
            return failure
        return JSONResponse(fake_responses.embeddings(body))

    async def _chat(self, request: Request) -> Response:
        body = await self._record(request)
        model = str(body.get("model", ""))
        if (failure := _requested_error(model)) is not None:
            return failure
        if model == "hang":
            await asyncio.sleep(60)
        reply = Reply.for_request(body)
        if body.get("stream"):
            delay = _delay_for(model, self.chunk_delay_s)
            return StreamingResponse(
                _stream(reply, body, delay, broken=model == "broken-stream"),
                media_type="text/event-stream",
            )
        return JSONResponse(reply.completion(body))


@dataclass(frozen=True)
class Reply:
    text: str | None
    tool_call: dict[str, Any] | None
    created: int
    id: str

    @classmethod
    def for_request(cls, body: dict[str, Any]) -> Reply:
        created = int(time.time())
        rid = f"chatcmpl-fake{time.time_ns():x}"
        tools = body.get("tools") or []
        if tools and body.get("tool_choice") != "none":
            name = tools[0].get("function", {}).get("name", "tool")
            call = {
                "id": "call_fake_1",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps({"city": "Paris", "unit": "c"})},
            }
            return cls(None, call, created, rid)
        return cls(f"Echo: {_last_user_text(body)}", None, created, rid)

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.text, "refusal": None}
        if self.tool_call:
            message["tool_calls"] = [self.tool_call]
        prompt_tokens = _rough_tokens(json.dumps(body.get("messages", [])))
        completion_tokens = _rough_tokens(self.text or json.dumps(self.tool_call))
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": body.get("model", "fake-model"),
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if self.tool_call else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def chunk(self, body: dict[str, Any], delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": body.get("model", "fake-model"),
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }


async def _stream(reply: Reply, body: dict[str, Any], delay: float, broken: bool) -> AsyncIterator[bytes]:
    yield _sse(reply.chunk(body, {"role": "assistant", "content": ""}, None))
    if broken:
        await asyncio.sleep(delay)
        yield _sse({"error": {"message": "The fake upstream broke.", "type": "server_error", "param": None, "code": None}})
        return
    if reply.tool_call:
        call = reply.tool_call
        head = {"index": 0, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": ""}}
        yield _sse(reply.chunk(body, {"tool_calls": [head]}, None))
        arguments = call["function"]["arguments"]
        for piece in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
            await asyncio.sleep(delay)
            yield _sse(reply.chunk(body, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None))
        finish = "tool_calls"
    else:
        for word in _pieces(reply.text or ""):
            await asyncio.sleep(delay)
            yield _sse(reply.chunk(body, {"content": word}, None))
        finish = "stop"
    yield _sse(reply.chunk(body, {}, finish))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = reply.completion(body)["usage"]
        yield _sse({**reply.chunk(body, {}, None), "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else f" {w}" for i, w in enumerate(words)]


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode("utf-8")


def _delay_for(model: str, default: float) -> float:
    if model.startswith("slow-"):
        return int(model.split("-", 1)[1]) / 1000
    return default


def _requested_error(model: str) -> Response | None:
    """``error-<status>`` as the model name asks the fake to fail with that status."""
    return _error(int(model.split("-", 1)[1])) if model.startswith("error-") else None


def _error(status: int) -> JSONResponse:
    kinds = {400: "invalid_request_error", 401: "invalid_request_error", 429: "rate_limit_exceeded"}
    body = {
        "error": {
            "message": f"Fake upstream error {status}.",
            "type": kinds.get(status, "server_error"),
            "param": None,
            "code": f"fake_{status}",
        }
    }
    return JSONResponse(body, status_code=status)


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def _rough_tokens(text: str) -> int:
    return max(1, len(text) // 4)
