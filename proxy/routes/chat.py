"""POST /v1/chat/completions — a thin adapter over :class:`ChatService`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from adapters.base import CallContext
from proxy.protocol import ChatCompletionRequest
from proxy.requests import bearer_token, read_json_object, validate
from proxy.services import services

router = APIRouter()

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    body = await read_json_object(request)
    validate(ChatCompletionRequest, body)
    svc = services(request)
    identity = svc.identity.resolve(request.headers, body)
    context = CallContext(request.state.request_id, client_api_key=bearer_token(request))
    prepared = await svc.chat.prepare(body, identity, context)
    if body.get("stream"):
        stream = await svc.chat.stream(prepared)
        return StreamingResponse(
            stream, media_type="text/event-stream", headers={**STREAM_HEADERS, **prepared.headers()}
        )
    completion = await svc.chat.complete(prepared)
    return JSONResponse(completion, headers=prepared.headers())
