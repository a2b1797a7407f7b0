"""POST /v1/responses — a thin adapter over :class:`ResponsesService`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from adapters.base import CallContext
from proxy.requests import bearer_token, read_json_object, validate
from proxy.responses_protocol import CreateResponseRequest
from proxy.services import services

router = APIRouter()

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.post("/v1/responses")
async def create_response(request: Request) -> Response:
    body = await read_json_object(request)
    validate(CreateResponseRequest, body)
    svc = services(request)
    identity = svc.identity.resolve(request.headers, body)
    context = CallContext(request.state.request_id, client_api_key=bearer_token(request))
    prepared = await svc.responses.prepare(body, identity, context)
    headers = prepared.memory.headers()
    if body.get("stream"):
        stream = await svc.responses.stream(prepared)
        return StreamingResponse(
            stream, media_type="text/event-stream", headers={**STREAM_HEADERS, **headers}
        )
    return JSONResponse(await svc.responses.create(prepared), headers=headers)
