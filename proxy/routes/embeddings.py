"""POST /v1/embeddings — passed through to the upstream (no memory)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from adapters.base import CallContext
from proxy.requests import bearer_token, read_json_object, validate
from proxy.responses_protocol import EmbeddingsRequest
from proxy.services import services

router = APIRouter()


@router.post("/v1/embeddings")
async def create_embeddings(request: Request) -> dict[str, Any]:
    body = await read_json_object(request)
    validate(EmbeddingsRequest, body)
    context = CallContext(request.state.request_id, client_api_key=bearer_token(request))
    return await services(request).embeddings.create(body, context)
