"""A tiny OpenAI-compatible server for the litellm adapter tests.

A real Starlette app served by uvicorn on 127.0.0.1 (a free port) in a
background thread. The last message's content steers it:

* ``error:<status>``  -> that HTTP status with an OpenAI error body
* ``sleep:<seconds>`` -> answer after a delay
* ``tool``            -> a ``get_weather`` tool call
* anything else       -> ``echo: <content>``

Every request body received is kept in ``FakeOpenAI.requests``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}
TOOL_ARGUMENTS = '{"city": "Paris"}'


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    async def _models(self, request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": "fake-1", "object": "model", "created": 1, "owned_by": "fake"}]}
        )

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        prompt = str(body["messages"][-1].get("content") or "")
        if prompt.startswith("error:"):
            status = int(prompt.split(":")[1])
            error = {"message": f"fake error {status}", "type": _ERROR_TYPES.get(status, "server_error"), "param": None, "code": f"fake_{status}"}
            return JSONResponse({"error": error}, status_code=status)
        if prompt.startswith("sleep:"):
            await asyncio.sleep(float(prompt.split(":")[1]))
        model = body.get("model", "")
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(_sse(model, prompt, include_usage), media_type="text/event-stream")
        return JSONResponse(_completion(model, prompt))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tool_call() -> dict[str, Any]:
    return {"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": TOOL_ARGUMENTS}}


def _completion(model: str, prompt: str) -> dict[str, Any]:
    if prompt == "tool":
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [_tool_call()], "refusal": None}
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": f"echo: {prompt}", "refusal": None}
        finish = "stop"
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


async def _sse(model: str, prompt: str, include_usage: bool) -> AsyncIterator[bytes]:
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000, "model": model}
    deltas: list[tuple[dict[str, Any], str | None]] = [({"role": "assistant", "content": ""}, None)]
    if prompt == "tool":
        call = _tool_call()
        deltas.append(({"tool_calls": [{"index": 0, **call, "function": {"name": "get_weather", "arguments": ""}}]}, None))
        deltas += [({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}, None) for part in ('{"city": ', '"Paris"}')]
        deltas.append(({}, "tool_calls"))
    else:
        deltas += [({"content": word}, None) for word in ("echo", ": ", prompt)]
        deltas.append(({}, "stop"))
    for delta, finish in deltas:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        yield f"data: {json.dumps(chunk)}\n\n".encode()
        await asyncio.sleep(0.01)
    if include_usage:
        usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode()
    yield b"data: [DONE]\n\n"
