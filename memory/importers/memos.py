"""A MemOS MemCube directory (``GeneralMemCube.dump``): its textual memory,
``textual_memory.json`` — a list of ``TextualMemoryItem`` (``{id, memory,
metadata}``) or, for tree memory, ``{"nodes": [...], "edges": [...]}``.

``metadata.type`` maps onto a kind (fact, opinion -> preference, event ->
episodic, procedure -> note), ``memory_time`` onto the event time, ``status``
onto the state (deleted items are left out). Activation and parametric
memories (KV caches, LoRA adapters) are model-specific and not imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memory.archive import ArchiveError
from memory.importers.base import SOURCE_KEY, ImportedItem, epoch_time, read_json

SOURCE = "memos"
TEXTUAL = "textual_memory.json"
KINDS = {"fact": "fact", "opinion": "preference", "event": "episodic", "procedure": "note"}
STATES = {"activated": "active", "active": "active", "archived": "archived", "resolving": "active"}


def items_of(data: Any) -> list[Any] | None:
    if isinstance(data, dict) and isinstance(data.get("nodes"), list):
        return list(data["nodes"])
    if isinstance(data, list):
        return data
    return None


def parse(path: Path) -> list[ImportedItem]:
    path = Path(path)
    file = path / TEXTUAL if path.is_dir() else path
    if not file.is_file():
        raise ArchiveError(f"{path.name}: no {TEXTUAL} in this MemCube directory")
    found = items_of(read_json(file))
    if found is None:
        raise ArchiveError(f"{file.name}: textual memory is a list of items or {{'nodes': [...]}}")
    items: list[ImportedItem] = []
    for number, item in enumerate(found, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("memory"), str) or not item["memory"].strip():
            raise ArchiveError(f"item {number}: needs a non-empty 'memory' string")
        meta = item.get("metadata") or {}
        if not isinstance(meta, dict):
            raise ArchiveError(f"item {number}: 'metadata' must be an object")
        status = str(meta.get("status") or "activated")
        if status == "deleted":
            continue
        extra = {k: v for k, v in meta.items() if k in ("tags", "entities", "confidence", "source", "visibility",
                                                        "memory_type", "key", "background")}
        items.append(
            ImportedItem(
                key=str(item.get("id") or item["memory"]),
                content=item["memory"],
                kind=KINDS.get(str(meta.get("type")), "fact"),
                state=STATES.get(status, "active"),
                event_time=epoch_time(meta.get("memory_time") or meta.get("created_at")),
                session=meta.get("session_id"),
                metadata={**extra, SOURCE_KEY: {"source": SOURCE, "id": item.get("id"), "user_id": meta.get("user_id"),
                                                "updated_at": meta.get("updated_at")}},
            )
        )
    return items
