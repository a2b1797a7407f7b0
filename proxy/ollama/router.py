"""Ollama's native API (``/api/*``) — thin adapters over :class:`OllamaServing`.

A client configured with ``host="http://127.0.0.1:8000"`` works unchanged.
Every failure on these routes is answered in Ollama's shape,
``{"error": "..."}``, with the right status (see :class:`OllamaRoute`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from starlette.background import BackgroundTask

from adapters.errors import UpstreamError
from proxy.errors import ProxyError
from proxy.http import MemoryCall, call_context, event_stream, json_body, read_json_object, read_memory_call, validate
from proxy.ollama.protocol import (
    OllamaChatRequest,
    OllamaEmbedRequest,
    OllamaGenerateRequest,
    OllamaModelRequest,
    ollama_error,
    streams,
)
from proxy.ollama.serving import CHAT, GENERATE
from proxy.pipeline import Exchange
from proxy.services import services

NDJSON = "application/x-ndjson"


class OllamaRoute(APIRoute):
    """Renders every error raised by an ``/api/*`` endpoint as Ollama does."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ProxyError as exc:
                return ollama_error(exc.status, exc.message)
            except UpstreamError as exc:
                response = ollama_error(exc.status, exc.message)
                response.headers.update(exc.headers)
                return response
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                return ollama_error(400, str(first.get("msg", "invalid request")))

        return route


router = APIRouter(route_class=OllamaRoute)


@router.post("/api/chat", openapi_extra=json_body(OllamaChatRequest))
async def chat(request: Request) -> Response:
    call = await read_memory_call(request, OllamaChatRequest)
    exchange = await call.services.ollama.prepare_chat(call.body, call.identity, call.context)
    return await _answer(call, CHAT, exchange)


@router.post("/api/generate", openapi_extra=json_body(OllamaGenerateRequest))
async def generate(request: Request) -> Response:
    call = await read_memory_call(request, OllamaGenerateRequest)
    exchange = await call.services.ollama.prepare_generate(call.body, call.identity, call.context)
    return await _answer(call, GENERATE, exchange)


@router.get("/api/tags")
async def tags(request: Request) -> dict[str, Any]:
    return await services(request).ollama.forward_get("/api/tags", call_context(request))


@router.get("/api/ps")
async def ps(request: Request) -> dict[str, Any]:
    return await services(request).ollama.forward_get("/api/ps", call_context(request))


@router.get("/api/version")
async def version(request: Request) -> dict[str, Any]:
    return await services(request).ollama.forward_get("/api/version", call_context(request))


@router.post("/api/show")
async def show(request: Request) -> Response:
    body = await read_json_object(request)
    payload = validate(OllamaModelRequest, body)
    if not (payload.model or payload.name):
        return ollama_error(400, "model is required")
    return JSONResponse(await services(request).ollama.forward_post("/api/show", body, call_context(request)))


@router.post("/api/embed")
async def embed(request: Request) -> dict[str, Any]:
    body = await read_json_object(request)
    validate(OllamaEmbedRequest, body)
    return await services(request).ollama.forward_post("/api/embed", body, call_context(request))


@router.post("/api/embeddings")
async def embeddings(request: Request) -> dict[str, Any]:
    body = await read_json_object(request)
    validate(OllamaEmbedRequest, body)
    return await services(request).ollama.forward_post("/api/embeddings", body, call_context(request))


# Model management has nothing to do with memory: relayed byte for byte
# (``pull``/``push``/``create`` stream their progress as NDJSON).
MANAGEMENT = ("pull", "push", "create", "delete", "copy", "blobs")


# one route for every method: kept out of the OpenAPI schema (FastAPI would give each method the same operation id)
@router.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"], include_in_schema=False)
async def passthrough(request: Request, rest: str) -> Response:
    if rest.split("/", 1)[0] not in MANAGEMENT:
        return ollama_error(404, f"{request.method} {request.url.path} is not served by memproxy")
    response = await services(request).ollama.forward_raw(
        request.method, request.url.path, await request.body(), request.headers.get("content-type")
    )
    return StreamingResponse(
        response.aiter_raw(),
        status_code=response.status_code,
        media_type=response.headers.get("content-type"),
        background=BackgroundTask(response.aclose),
    )


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def root() -> PlainTextResponse:
    """Ollama clients probe ``/`` to see whether the server is up."""
    return PlainTextResponse("Ollama is running (memproxy)")


async def _answer(call: MemoryCall, path: str, exchange: Exchange) -> Response:
    ollama = call.services.ollama
    if streams(exchange.body):
        stream = await ollama.stream(path, exchange)
        return event_stream(stream, exchange.headers(), media_type=NDJSON)
    answer = await ollama.complete(path, exchange)
    return JSONResponse(answer, headers=exchange.headers())
