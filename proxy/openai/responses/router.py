"""POST /v1/responses — a thin adapter over :class:`ResponsesServing`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from proxy.http import event_stream, json_body, read_memory_call
from proxy.openai.responses.protocol import CreateResponseRequest

router = APIRouter()


@router.post("/v1/responses", openapi_extra=json_body(CreateResponseRequest))
async def create_response(request: Request) -> Response:
    call = await read_memory_call(request, CreateResponseRequest)
    responses = call.services.responses
    exchange = await responses.prepare(call.body, call.identity, call.context)
    if call.body.get("stream"):
        stream = await responses.stream(exchange, call.body)
        return event_stream(stream, exchange.headers())
    response = await responses.create(exchange, call.body)
    return JSONResponse(response, headers=exchange.headers())
