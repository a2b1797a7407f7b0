"""``POST /v1/memories/explain`` and ``GET /v1/memories/explain/{id}``: why recall injects what it does.

The first runs the recall chat would run for ``query`` at ``now`` and returns
the explanation; the second returns the explanation kept for a chat request
sent with ``X-Memory-Explain: 1`` (its ``X-Memory-Explain-Id``). Both follow
the owner rules of every memory route: another owner's explanation is a 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from proxy.auth.principal import principal_of
from proxy.errors import NotFound
from proxy.identity import named_owner
from proxy.services import services

router = APIRouter()


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, min_length=1, max_length=256)  # required without keys; a user key may omit it
    query: str = Field(min_length=1)
    now: datetime | None = None  # the time to recall at (RFC 3339); default: now
    token_budget: int | None = Field(default=None, ge=1, le=1_000_000)


@router.post("/v1/memories/explain")
async def explain(payload: ExplainRequest, request: Request) -> dict[str, Any]:
    caller = principal_of(request)
    owner = caller.owner_for(named_owner(request, payload.user))
    body = await services(request).pipeline.explain(
        owner, payload.query, now=payload.now, token_budget=payload.token_budget
    )
    return {**body, "user": caller.view(owner)}


@router.get("/v1/memories/explain/{explain_id}")
async def explained(explain_id: str, request: Request) -> dict[str, Any]:
    caller = principal_of(request)
    found = services(request).pipeline.explanations.get(explain_id)
    named = named_owner(request, None)
    key = caller.key
    owner = caller.owner_for(named) if named is not None or (key is not None and key.kind == "user") else None
    if found is None or not caller.owns(found.owner) or (owner is not None and found.owner != owner):
        raise NotFound(f"No explanation '{explain_id}': explanations are kept for recent requests sent "
                       "with X-Memory-Explain: 1.", param="explain_id", code="explanation_not_found")
    return {**found.body, "id": explain_id, "user": caller.view(found.owner)}
