"""Export and import over HTTP, streamed both ways.

``GET /v1/memories/export?user=U`` streams the owner's ``.memcube`` archive a
page of memories at a time; ``POST /v1/memories/import?user=U`` takes an
archive (or, with ``format``, another tool's export) as the raw request body,
spools it to a temporary file chunk by chunk, verifies it whole, then imports
it as ``user``. The owner is resolved exactly as on the other management
routes (the ``user`` parameter or ``X-Memory-User``, through the caller's key:
a user key exports and imports only its own owner, a service key its
tenant's owners); export needs ``memories:read``, import ``memories:write``.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from memory.archive import ArchiveReader, export_archive, import_archive
from memory.importers import ARCHIVE, FORMATS, import_items, parse
from memory.pack_owner import is_pack_owner
from proxy.auth.principal import principal_of
from proxy.errors import InvalidRequest
from proxy.identity import named_owner
from proxy.services import services

router = APIRouter()

Conflict = Literal["skip", "replace", "new-version"]
SUFFIX = {"chatgpt": ".json", "mem0": ".json", "memos": ".json", "letta": ".af", "facts": ".json", ARCHIVE: ".memcube"}
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _owner(request: Request, user: str | None) -> str:
    """The stored owner this call acts as (keys and tenants applied, as on every management route)."""
    owner = principal_of(request).owner_for(named_owner(request, user))
    if is_pack_owner(owner):
        raise InvalidRequest("Memory packs are not a user's memories.", param="user")
    return owner


@router.get("/v1/memories/export", response_class=StreamingResponse)
async def export_memories(
    request: Request, user: str | None = Query(default=None, min_length=1, max_length=256), vectors: bool = True
) -> StreamingResponse:
    engine = services(request).engine
    owner = _owner(request, user)
    stream = export_archive(engine, owner, vectors=vectors)
    return StreamingResponse(
        stream,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{_filename(principal_of(request).view(owner))}.memcube"'},
    )


@router.post("/v1/memories/import", openapi_extra=UPLOAD_BODY)
async def import_memories(
    request: Request,
    user: str | None = Query(default=None, min_length=1, max_length=256),
    on_conflict: Conflict = "skip",
    format: str = ARCHIVE,
) -> dict[str, Any]:
    if format != ARCHIVE and format not in FORMATS:
        raise InvalidRequest(f"Unknown format '{format}'; expected {ARCHIVE} or one of {', '.join(FORMATS)}.",
                             param="format")
    engine = services(request).engine
    owner = _owner(request, user)
    with tempfile.TemporaryDirectory(prefix="memproxy-import-") as folder:
        path = Path(folder) / f"upload{SUFFIX[format]}"
        with path.open("wb") as spool:  # never the whole body in memory
            async for chunk in request.stream():
                await asyncio.to_thread(spool.write, chunk)
        if format == ARCHIVE:
            with ArchiveReader(path) as reader:
                report = await import_archive(engine, reader, user=owner, on_conflict=on_conflict)
        else:
            items = await asyncio.to_thread(parse, path, format)
            report = await import_items(engine, owner, format, items)
    return {"object": "memories.import", "format": format, **report.to_dict()}


def _filename(user: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in user)[:64] or "memories"
