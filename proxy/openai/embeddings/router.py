"""POST /v1/embeddings — passed through to the upstream (no memory)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from proxy.http import call_context, json_body, read_json_object, validate
from proxy.openai.embeddings.protocol import EmbeddingsRequest
from proxy.services import services

router = APIRouter()


@router.post("/v1/embeddings", openapi_extra=json_body(EmbeddingsRequest))
async def create_embeddings(request: Request) -> dict[str, Any]:
    body = await read_json_object(request)
    validate(EmbeddingsRequest, body)
    return await services(request).embeddings.create(body, call_context(request))
