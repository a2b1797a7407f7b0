"""GET /v1/models — the upstream's list, or the configured models."""

from __future__ import annotations

from fastapi import APIRouter, Request

from proxy.errors import NotFound
from proxy.services import services

router = APIRouter()


@router.get("/v1/models")
async def list_models(request: Request) -> dict:
    models = await services(request).upstream.list_models()
    return {"object": "list", "data": models}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict:
    for model in await services(request).upstream.list_models():
        if model.get("id") == model_id:
            return model
    raise NotFound(f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
