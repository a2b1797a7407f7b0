"""POST /v1/chat/completions — a thin adapter over :class:`ChatServing`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from proxy.fastjson import FastJSONResponse
from proxy.http import event_stream, json_body, read_memory_call
from proxy.openai.chat.protocol import ChatCompletionRequest

router = APIRouter()


@router.post("/v1/chat/completions", openapi_extra=json_body(ChatCompletionRequest))
async def chat_completions(request: Request) -> Response:
    call = await read_memory_call(request, ChatCompletionRequest)
    chat = call.services.chat
    exchange = await chat.prepare(call.body, call.identity, call.context)
    if call.body.get("stream"):
        stream = await chat.stream(exchange)
        return event_stream(stream, exchange.headers())
    completion = await chat.complete(exchange)
    return FastJSONResponse(completion, headers=exchange.headers())
