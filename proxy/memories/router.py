"""The memory management API — thin adapters over :class:`MemoryEngine`.

Every route checks that the owner or memory it touches is the caller's
(:class:`proxy.auth.principal.Principal`): a memory of another owner is a
404, exactly like a missing id, so ids leak nothing. Owner names are
relative to the caller's tenant, in requests and in answers.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from memory.cube import MemCube, Owner, Provenance, owner_key, owner_key_of_id
from memory.engine import IdempotencyConflict, MemoryPatch, NewMemory, Recalled
from memory.errors import MemoryNotFound
from memory.journal import JournalError
from proxy.auth.principal import Principal, principal_of
from proxy.errors import error_response
from proxy.identity import named_owner
from proxy.memories.protocol import AddMemoriesRequest, PatchMemoryRequest, SearchRequest
from proxy.pipeline.blocks import render_core_block
from proxy.services import services

router = APIRouter()


@router.post("/v1/memories", status_code=201)
async def add_memories(
    payload: AddMemoriesRequest,
    request: Request,
    idempotency_key: str | None = Header(default=None, alias="Idempotency-Key", max_length=255),
) -> JSONResponse:
    """All-or-nothing (journaled as one batch); with ``Idempotency-Key``, a repeat of
    the same request answers the first result again without adding anything."""
    caller = principal_of(request)
    owner = Owner(user=caller.owner_for(named_owner(request, payload.user)), session=payload.session)
    items = [
        NewMemory(
            content=m.content,
            kind=m.kind or "fact",
            metadata=m.metadata,
            event_time=m.event_time,
            tier=m.tier or "recall",
            session=m.session,
            source_ids=tuple(m.source_ids),
        )
        for m in payload.memories
    ]
    provenance = Provenance(request_id=request.state.request_id, roles=("api",))
    request_hash = hashlib.sha256(payload.model_dump_json().encode("utf-8")).hexdigest()
    try:
        cubes = await services(request).engine.add(
            owner, items, provenance=provenance, idempotency_key=idempotency_key or None, request_hash=request_hash
        )
    except IdempotencyConflict as exc:
        return error_response(409, str(exc), "invalid_request_error", "Idempotency-Key", "idempotency_key_reused")
    except JournalError as exc:
        return error_response(503, f"The memory journal is unavailable: {exc}", "server_error", None, "journal_unavailable")
    return JSONResponse({"object": "list", "data": [_view(c, caller) for c in cubes]}, status_code=201)


@router.post("/v1/memories/search")
async def search_memories(payload: SearchRequest, request: Request) -> dict[str, Any]:
    user = principal_of(request).owner_for(named_owner(request, payload.user))
    result = await services(request).engine.search(
        user, payload.query, token_budget=payload.token_budget, limit=payload.limit, now=payload.now
    )
    return {"object": "list", "data": [_hit(item) for item in result.items], "tokens": result.tokens}


@router.get("/v1/memories")
async def list_memories(
    request: Request,
    user: str | None = Query(default=None, min_length=1),
    limit: int = Query(default=20, ge=1, le=1000),
    after: str | None = None,
    tier: str | None = None,
) -> dict[str, Any]:
    caller = principal_of(request)
    owner = caller.owner_for(named_owner(request, user))
    engine = services(request).engine
    page = await engine.list(owner, limit=limit, after=after, tier=tier)
    data = [_view(c, caller) for c in page.items]
    out: dict[str, Any] = {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": page.has_more,
    }
    if tier == "core":  # what is injected (within the cap), its version, and the scheduler's moves
        core = await engine.core(owner)
        out["core"] = {
            "version": core.version,
            "tokens": core.tokens,
            "token_budget": engine.settings.core_token_budget,
            "injected_ids": [c.id for c in core.items],
            "block": render_core_block(core.texts, core.profile) if core.items or core.profile else None,  # exactly as injected
            "decisions": [d.to_dict() for d in engine.scheduler.decisions(owner)],
        }
    return out


@router.get("/v1/memories/{memory_id}")
async def get_memory(memory_id: str, request: Request) -> dict[str, Any]:
    caller = principal_of(request)
    return _view(await _owned(request, caller, memory_id), caller)


@router.patch("/v1/memories/{memory_id}")
async def patch_memory(memory_id: str, payload: PatchMemoryRequest, request: Request) -> dict[str, Any]:
    caller = principal_of(request)
    await _owned(request, caller, memory_id)
    patch = MemoryPatch(**payload.model_dump(exclude_unset=True))
    return _view(await services(request).engine.update(memory_id, patch), caller)


@router.delete("/v1/memories/{memory_id}")
async def delete_memory(memory_id: str, request: Request) -> dict[str, Any]:
    await _owned(request, principal_of(request), memory_id)
    await services(request).engine.delete(memory_id)
    return {"id": memory_id, "object": "memory.deleted", "deleted": True}


# ``:path``: an owner name may contain "/" (send it as %2F or as is).
@router.delete("/v1/users/{user:path}/memories")
async def forget_user(user: str, request: Request) -> dict[str, Any]:
    """Forget ``user`` at once, everywhere; the receipt says what was removed where."""
    svc = services(request)
    owner = principal_of(request).owner_for(user)
    receipt = await svc.engine.erase(owner)
    removed = receipt.removed()
    forget_kv = getattr(svc.upstream, "forget", None)  # local upstreams keep per-owner KV caches
    if forget_kv is not None:
        removed["kv_files"] = int(await forget_kv(owner))
    return {"object": "user.memories.deleted", "user": user, "deleted": receipt.deleted, "removed": removed}


async def _owned(request: Request, caller: Principal, memory_id: str) -> MemCube:
    """The memory ``memory_id`` if it is the caller's; otherwise the same 404 as a missing id.

    A request that names an owner (``X-Memory-User``; a user key always does)
    reaches only that owner's memories, even with a service or admin key that
    could reach more: the id must be of that owner.
    """
    named = named_owner(request, None)
    key = caller.key
    owner = caller.owner_for(named) if named is not None or (key is not None and key.kind == "user") else None
    # the id names its owner: refuse another owner's id without reading it
    if owner is not None and owner_key_of_id(memory_id) != owner_key(owner):
        raise MemoryNotFound(memory_id)
    cube = await services(request).engine.get(memory_id)
    if not caller.owns(cube.owner.user) or (owner is not None and cube.owner.user != owner):
        raise MemoryNotFound(memory_id)
    return cube


def _view(cube: MemCube, caller: Principal) -> dict[str, Any]:
    out = cube.to_dict()
    out["user"] = caller.view(cube.owner.user)
    return out


def _hit(item: Recalled) -> dict[str, Any]:
    cube = item.cube.to_dict()
    return {
        "id": cube["id"],
        "content": cube["content"],
        "metadata": cube["metadata"],
        "event_time": cube["event_time"],
        "kind": cube["kind"],
        "tier": cube["tier"],
        "provenance": cube["provenance"],
        "score": round(item.score, 6),
        "tokens": item.tokens,
    }
