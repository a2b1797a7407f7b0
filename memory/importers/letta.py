"""Letta's agent file (``.af``): memory blocks become ``core`` memories.

Two shapes are read: the current schema (``{"agents": [...], "blocks": [...]}``,
an agent naming its blocks in ``block_ids``) and the first one
(``{"name", "core_memory": [...]}``). Each block ``{label, value, ...}`` with
text becomes one core memory ``<label>: <value>``, so it is injected on every
request as it was pinned in the agent's context. Tools, the system prompt and
LLM settings are the agent's, not memory, and are not imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memory.archive import ArchiveError
from memory.importers.base import SOURCE_KEY, ImportedItem, epoch_time, read_json

SOURCE = "letta"
KINDS = {"human": "fact", "persona": "note"}


def _blocks(data: Any) -> list[tuple[str | None, dict[str, Any]]]:
    if not isinstance(data, dict):
        raise ArchiveError("an agent file is a JSON object")
    if isinstance(data.get("core_memory"), list):
        return [(data.get("name"), b) for b in data["core_memory"]]
    if isinstance(data.get("blocks"), list):
        blocks = {b.get("id"): b for b in data["blocks"] if isinstance(b, dict)}
        owned: dict[Any, str | None] = {}
        for agent in data.get("agents") or []:
            for block_id in (agent or {}).get("block_ids") or []:
                owned.setdefault(block_id, agent.get("name"))
        if any(not isinstance(b, dict) for b in data["blocks"]):
            raise ArchiveError("every entry of 'blocks' must be an object")
        return [(owned.get(block_id), block) for block_id, block in blocks.items()]
    raise ArchiveError("an agent file has 'blocks' (current schema) or 'core_memory' (first schema)")


def parse(path: Path) -> list[ImportedItem]:
    items: list[ImportedItem] = []
    for number, (agent, block) in enumerate(_blocks(read_json(path)), start=1):
        label, value = block.get("label"), block.get("value")
        if not isinstance(label, str) or not label or not isinstance(value, str):
            raise ArchiveError(f"block {number}: needs a 'label' and a string 'value'")
        if not value.strip():
            continue
        items.append(
            ImportedItem(
                key=f"{agent or ''}/{block.get('id') or label}",
                content=f"{label}: {value.strip()}",
                kind=KINDS.get(label, "note"),
                tier="core",
                event_time=epoch_time(block.get("updated_at") or block.get("created_at")),
                agent=agent,
                metadata={SOURCE_KEY: {"source": SOURCE, "label": label, "block_id": block.get("id"),
                                       "description": block.get("description"), "limit": block.get("limit")}},
            )
        )
    return items
