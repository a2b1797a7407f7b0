"""POST /v1/chat/completions — a thin adapter over :class:`ChatService`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from proxy.protocol import ChatCompletionRequest
from proxy.routes.common import event_stream, read_memory_call

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    call = await read_memory_call(request, ChatCompletionRequest)
    prepared = await call.services.chat.prepare(call.body, call.identity, call.context)
    if call.body.get("stream"):
        return event_stream(await call.services.chat.stream(prepared), prepared.headers())
    completion = await call.services.chat.complete(prepared)
    return JSONResponse(completion, headers=prepared.headers())
