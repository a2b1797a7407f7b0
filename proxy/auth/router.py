"""The admin API: ``/v1/admin/keys`` (needs the ``admin`` scope).

``POST`` creates a key and returns its plaintext **once** (``key``);
``GET`` lists keys (never a plaintext or an upstream credential);
``DELETE /v1/admin/keys/{id}`` revokes one, effective on the next request.
With ``auth.mode: none`` these routes are refused: keys made by anonymous
callers would survive a later switch to ``keys``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from proxy.auth.keys import InvalidKey, KeyStore
from proxy.errors import Forbidden, InvalidRequest, NotFound
from proxy.services import services

router = APIRouter()


class CreateKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    kind: str = Field(description="user | service | admin")
    scopes: list[str] | None = Field(default=None, description="default: by kind")
    tenant: str | None = None
    user: str | None = Field(default=None, description="the owner a user key acts as")
    upstream_api_key: str | None = Field(default=None, description="upstream credential for this key's calls; never shown")


def _store(request: Request) -> KeyStore:
    auth = services(request).auth
    if not auth.keys or auth.store is None:
        raise Forbidden(
            "API keys are off (auth.mode: none). Manage keys with `memproxy keys` and set auth.mode: keys.",
            code="auth_disabled",
        )
    return auth.store


@router.post("/v1/admin/keys", status_code=201)
async def create_key(payload: CreateKeyRequest, request: Request) -> dict[str, Any]:
    store = _store(request)
    try:
        key, token = store.create(**payload.model_dump())
    except InvalidKey as exc:
        raise InvalidRequest(str(exc)) from None
    return {**key.to_dict(), "key": token}


@router.get("/v1/admin/keys")
async def list_keys(request: Request, include_revoked: bool = Query(default=False)) -> dict[str, Any]:
    keys = _store(request).list(include_revoked=include_revoked)
    return {"object": "list", "data": [k.to_dict() for k in keys]}


@router.get("/v1/admin/keys/{key_id}")
async def get_key(key_id: str, request: Request) -> dict[str, Any]:
    key = _store(request).get(key_id)
    if key is None:
        raise NotFound(f"No API key with id '{key_id}'.", param="id", code="key_not_found")
    return key.to_dict()


@router.delete("/v1/admin/keys/{key_id}")
async def revoke_key(key_id: str, request: Request) -> dict[str, Any]:
    key = _store(request).revoke(key_id)
    if key is None:
        raise NotFound(f"No API key with id '{key_id}'.", param="id", code="key_not_found")
    return {**key.to_dict(), "object": "api_key.revoked", "revoked": True}
