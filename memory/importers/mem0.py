"""mem0's exported memories: the JSON of ``Memory.get_all`` (``{"results": [...]}``,
or the bare list of older releases), each ``{id, memory, hash, metadata,
created_at, updated_at, user_id, agent_id, run_id, categories?}``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memory.archive import ArchiveError
from memory.importers.base import SOURCE_KEY, ImportedItem, epoch_time, read_json

SOURCE = "mem0"


def records(data: Any) -> list[Any] | None:
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        return list(data["results"])
    if isinstance(data, list):
        return data
    return None


def parse(path: Path) -> list[ImportedItem]:
    found = records(read_json(path))
    if found is None:
        raise ArchiveError(f"{Path(path).name}: a mem0 export is {{'results': [...]}} or a list of memories")
    items: list[ImportedItem] = []
    for number, record in enumerate(found, start=1):
        if not isinstance(record, dict) or not isinstance(record.get("memory"), str) or not record["memory"].strip():
            raise ArchiveError(f"memory {number}: needs a non-empty 'memory' string")
        metadata = record.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ArchiveError(f"memory {number}: 'metadata' must be an object or null")
        origin = {"source": SOURCE, "id": record.get("id"), "hash": record.get("hash"),
                  "user_id": record.get("user_id"), "updated_at": record.get("updated_at")}
        if record.get("categories"):
            origin["categories"] = record["categories"]
        items.append(
            ImportedItem(
                key=str(record.get("id") or record["memory"]),
                content=record["memory"],
                kind="fact",
                event_time=epoch_time(record.get("created_at")),
                session=record.get("run_id"),
                agent=record.get("agent_id"),
                metadata={**metadata, SOURCE_KEY: origin},
            )
        )
    return items
