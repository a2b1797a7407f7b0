"""The memory management API — thin adapters over :class:`MemoryEngine`."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from memory.cube import Owner, Provenance
from memory.engine import IdempotencyConflict, MemoryPatch, NewMemory, Recalled
from memory.journal import JournalError
from proxy.errors import error_response
from proxy.memories.protocol import AddMemoriesRequest, PatchMemoryRequest, SearchRequest
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
    owner = Owner(user=payload.user, session=payload.session)
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
    return JSONResponse({"object": "list", "data": [c.to_dict() for c in cubes]}, status_code=201)


@router.post("/v1/memories/search")
async def search_memories(payload: SearchRequest, request: Request) -> dict[str, Any]:
    result = await services(request).engine.search(
        payload.user, payload.query, token_budget=payload.token_budget, limit=payload.limit
    )
    return {"object": "list", "data": [_hit(item) for item in result.items], "tokens": result.tokens}


@router.get("/v1/memories")
async def list_memories(
    request: Request,
    user: str = Query(min_length=1),
    limit: int = Query(default=20, ge=1, le=1000),
    after: str | None = None,
    tier: str | None = None,
) -> dict[str, Any]:
    engine = services(request).engine
    page = await engine.list(user, limit=limit, after=after, tier=tier)
    data = [c.to_dict() for c in page.items]
    out: dict[str, Any] = {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": page.has_more,
    }
    if tier == "core":  # what is injected (within the cap), its version, and the scheduler's moves
        core = await engine.core(user)
        out["core"] = {
            "version": core.version,
            "tokens": core.tokens,
            "token_budget": engine.settings.core_token_budget,
            "injected_ids": [c.id for c in core.items],
            "decisions": [d.to_dict() for d in engine.scheduler.decisions(user)],
        }
    return out


@router.get("/v1/memories/{memory_id}")
async def get_memory(memory_id: str, request: Request) -> dict[str, Any]:
    return (await services(request).engine.get(memory_id)).to_dict()


@router.patch("/v1/memories/{memory_id}")
async def patch_memory(memory_id: str, payload: PatchMemoryRequest, request: Request) -> dict[str, Any]:
    patch = MemoryPatch(**payload.model_dump(exclude_unset=True))
    return (await services(request).engine.update(memory_id, patch)).to_dict()


@router.delete("/v1/memories/{memory_id}")
async def delete_memory(memory_id: str, request: Request) -> dict[str, Any]:
    await services(request).engine.delete(memory_id)
    return {"id": memory_id, "object": "memory.deleted", "deleted": True}


@router.delete("/v1/users/{user}/memories")
async def forget_user(user: str, request: Request) -> dict[str, Any]:
    """Forget ``user`` at once, everywhere; the receipt says what was removed where."""
    svc = services(request)
    receipt = await svc.engine.erase(user)
    removed = receipt.removed()
    forget_kv = getattr(svc.upstream, "forget", None)  # local upstreams keep per-owner KV caches
    if forget_kv is not None:
        removed["kv_files"] = int(await forget_kv(user))
    return {"object": "user.memories.deleted", "user": user, "deleted": receipt.deleted, "removed": removed}


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
