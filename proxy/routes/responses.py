"""POST /v1/responses — a thin adapter over :class:`ResponsesService`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from proxy.responses_protocol import CreateResponseRequest
from proxy.routes.common import event_stream, read_memory_call

router = APIRouter()


@router.post("/v1/responses")
async def create_response(request: Request) -> Response:
    call = await read_memory_call(request, CreateResponseRequest)
    prepared = await call.services.responses.prepare(call.body, call.identity, call.context)
    headers = prepared.memory.headers()
    if call.body.get("stream"):
        return event_stream(await call.services.responses.stream(prepared), headers)
    return JSONResponse(await call.services.responses.create(prepared), headers=headers)
