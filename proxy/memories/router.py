"""The memory management API — thin adapters over :class:`MemoryEngine`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from memory.cube import Owner, Provenance
from memory.engine import MemoryPatch, NewMemory, Recalled
from proxy.memories.protocol import AddMemoriesRequest, PatchMemoryRequest, SearchRequest
from proxy.services import services

router = APIRouter()


@router.post("/v1/memories", status_code=201)
async def add_memories(payload: AddMemoriesRequest, request: Request) -> JSONResponse:
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
    cubes = await services(request).engine.add(owner, items, provenance=provenance)
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
    count = await services(request).engine.forget(user)
    return {"object": "user.memories.deleted", "user": user, "deleted": count}


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
