"""A fake Ollama server speaking the native API (``/api/*``, NDJSON streaming).

Serves ``POST /api/chat``, ``POST /api/generate`` (streamed line by line by
default, one object with ``"stream": false``), ``GET /api/tags``,
``POST /api/show``, ``GET /api/version``, ``GET /api/ps``, ``POST /api/embed``
and ``POST /api/embeddings``, and records every request. Replies are
``"Echo: <last user message or prompt>"``; with ``tools`` the reply is a call
to the first tool; with ``think`` a ``thinking`` text comes first; with
``format`` the content is a JSON object. Model ``error-404`` answers
``{"error": "model ... not found"}`` with 404, ``broken-stream`` breaks off
with an error line, ``truncated-stream`` simply stops before its ``done`` line. The final ``done`` object carries fixed durations and
counts (:data:`DONE_STATS`) so tests can check they arrive intact.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from testing.common import RequestLog, fake_vector, last_user_text, pieces

VERSION = "0.12.6"
CREATED_AT = "2026-01-01T00:00:00.000000Z"
DONE_STATS = {
    "total_duration": 123456789,
    "load_duration": 2345678,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 3456789,
    "eval_count": 7,
    "eval_duration": 4567890,
}
MODELS = ("llama3.2:latest", "fake-model:latest")


class FakeOllama(RequestLog):
    def __init__(self, *, chunk_delay_s: float = 0.0) -> None:
        super().__init__()
        self.chunk_delay_s = chunk_delay_s

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/chat", self._chat, methods=["POST"]),
                Route("/api/generate", self._generate, methods=["POST"]),
                Route("/api/tags", self._tags, methods=["GET"]),
                Route("/api/show", self._show, methods=["POST"]),
                Route("/api/version", self._version, methods=["GET"]),
                Route("/api/ps", self._ps, methods=["GET"]),
                Route("/api/embed", self._embed, methods=["POST"]),
                Route("/api/embeddings", self._embeddings, methods=["POST"]),
                Route("/api/pull", self._pull, methods=["POST"]),
                Route("/api/delete", self._delete, methods=["DELETE"]),
            ]
        )

    async def _record(self, request: Request) -> dict[str, Any]:
        return (await self.record(request)).body

    async def _chat(self, request: Request) -> Response:
        body = await self._record(request)
        model = str(body.get("model", ""))
        if model.startswith("error-"):
            return _not_found(model)
        text = _reply_text(body, last_user_text(body.get("messages")))
        tool_calls = _tool_calls(body)
        thinking = "Let me think." if body.get("think") else None
        if body.get("stream") is False:
            message: dict[str, Any] = {"role": "assistant", "content": "" if tool_calls else text}
            if thinking:
                message["thinking"] = thinking
            if tool_calls:
                message["tool_calls"] = tool_calls
            return JSONResponse({**_head(model), "message": message, **_done(tool_calls)})
        return _ndjson(self._chat_lines(model, text, tool_calls, thinking))

    async def _chat_lines(
        self, model: str, text: str, tool_calls: list[dict[str, Any]], thinking: str | None
    ) -> AsyncIterator[dict[str, Any]]:
        if thinking:
            yield {**_head(model), "message": {"role": "assistant", "content": "", "thinking": thinking}, "done": False}
        if tool_calls:
            yield {**_head(model), "message": {"role": "assistant", "content": "", "tool_calls": tool_calls}, "done": False}
        else:
            for piece in pieces(text):
                await asyncio.sleep(self.chunk_delay_s)
                yield {**_head(model), "message": {"role": "assistant", "content": piece}, "done": False}
        if model == "broken-stream":
            yield {"error": "the fake Ollama broke"}
            return
        if model == "truncated-stream":
            return
        yield {**_head(model), "message": {"role": "assistant", "content": ""}, **_done(tool_calls)}

    async def _generate(self, request: Request) -> Response:
        body = await self._record(request)
        model = str(body.get("model", ""))
        if model.startswith("error-"):
            return _not_found(model)
        text = _reply_text(body, body.get("prompt") or "")
        if body.get("stream") is False:
            return JSONResponse({**_head(model), "response": text, **_done([]), "context": [1, 2, 3]})

        async def lines() -> AsyncIterator[dict[str, Any]]:
            for piece in pieces(text):
                await asyncio.sleep(self.chunk_delay_s)
                yield {**_head(model), "response": piece, "done": False}
            yield {**_head(model), "response": "", **_done([]), "context": [1, 2, 3]}

        return _ndjson(lines())

    async def _tags(self, request: Request) -> Response:
        await self._record(request)
        models = [
            {
                "name": name,
                "model": name,
                "modified_at": CREATED_AT,
                "size": 2019393189,
                "digest": "a80c4f17acd5" + "0" * 52,
                "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
            }
            for name in MODELS
        ]
        return JSONResponse({"models": models})

    async def _show(self, request: Request) -> Response:
        body = await self._record(request)
        name = body.get("model") or body.get("name") or ""
        if str(name).startswith("error-"):
            return _not_found(name)
        return JSONResponse(
            {
                "modelfile": f"FROM {name}",
                "parameters": "stop \"<|eot_id|>\"",
                "template": "{{ .Prompt }}",
                "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
                "model_info": {"general.architecture": "llama"},
                "capabilities": ["completion", "tools"],
                "modified_at": CREATED_AT,
            }
        )

    async def _version(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({"version": VERSION})

    async def _ps(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse(
            {"models": [{"name": MODELS[0], "model": MODELS[0], "size": 1, "digest": "a" * 64, "expires_at": CREATED_AT, "size_vram": 1}]}
        )

    async def _embed(self, request: Request) -> Response:
        body = await self._record(request)
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        return JSONResponse(
            {"model": body.get("model"), "embeddings": [fake_vector(str(t)) for t in texts], "total_duration": 1000, "prompt_eval_count": len(texts)}
        )

    async def _embeddings(self, request: Request) -> Response:
        body = await self._record(request)
        return JSONResponse({"embedding": fake_vector(str(body.get("prompt", "")))})

    async def _pull(self, request: Request) -> Response:
        body = await self._record(request)

        async def progress() -> AsyncIterator[dict[str, Any]]:
            yield {"status": "pulling manifest"}
            yield {"status": f"pulling {body.get('model')}", "digest": "sha256:" + "b" * 64, "total": 100, "completed": 100}
            yield {"status": "success"}

        return _ndjson(progress())

    async def _delete(self, request: Request) -> Response:
        body = await self._record(request)
        if body.get("model") not in MODELS and f"{body.get('model')}:latest" not in MODELS:
            return _not_found(str(body.get("model")))
        return Response(status_code=200)


def _head(model: str) -> dict[str, Any]:
    return {"model": model, "created_at": CREATED_AT}


def _done(tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
    return {"done": True, "done_reason": "stop", **DONE_STATS}


def _reply_text(body: dict[str, Any], said: str) -> str:
    if body.get("format"):
        return json.dumps({"echo": said})
    return f"Echo: {said}"


def _tool_calls(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = body.get("tools") or []
    if not tools:
        return []
    name = (tools[0].get("function") or {}).get("name", "tool")
    return [{"function": {"name": name, "arguments": {"city": "Paris", "unit": "c"}}}]


def _ndjson(lines: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        async for line in lines:
            yield json.dumps(line).encode("utf-8") + b"\n"

    return StreamingResponse(body(), media_type="application/x-ndjson")


def _not_found(model: str) -> JSONResponse:
    return JSONResponse({"error": f"model '{model}' not found"}, status_code=404)
