"""Importers from where people's history already is (see docs/bring-your-history.md).

``parse(path, fmt)`` reads a whole file into items (or raises ArchiveError:
nothing is written); :func:`memory.importers.base.import_items` writes them.
``detect`` guesses the format from the path and the JSON's shape.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from memory.archive import ArchiveError
from memory.importers import chatgpt, facts, letta, mem0, memos
from memory.importers.base import ImportedItem, import_items, read_json

__all__ = ["FORMATS", "ImportedItem", "detect", "import_items", "parse"]

FORMATS: dict[str, Callable[[Path], list[ImportedItem]]] = {
    "chatgpt": chatgpt.parse,
    "mem0": mem0.parse,
    "memos": memos.parse,
    "letta": letta.parse,
    "facts": facts.parse,
}
ARCHIVE = "memcube"


def _json_shape(data: Any) -> str:
    first = data[0] if isinstance(data, list) and data else None
    if isinstance(first, dict) and "mapping" in first:
        return "chatgpt"
    if isinstance(data, dict) and ("core_memory" in data or ("agents" in data and "blocks" in data)):
        return "letta"
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        return "mem0"
    if isinstance(data, dict) and isinstance(data.get("nodes"), list):
        return "memos"
    if isinstance(first, dict) and "memory" in first:
        meta = first.get("metadata")
        if "hash" in first or "user_id" in first or not isinstance(meta, dict):
            return "mem0"
        return "memos"
    return "facts"


def detect(path: Path) -> str:
    path = Path(path)
    if path.is_dir():
        return "memos"
    suffix = path.suffix.lower()
    if suffix in (".memcube", ".zip"):
        return ARCHIVE
    if suffix == ".af":
        return "letta"
    if suffix in (".md", ".markdown", ".txt", ".jsonl"):
        return "facts"
    if suffix == ".json":
        return _json_shape(read_json(path))
    raise ArchiveError(f"{path.name}: cannot tell the format; pass --format ({', '.join([ARCHIVE, *FORMATS])})")


def parse(path: Path, fmt: str) -> list[ImportedItem]:
    if fmt not in FORMATS:
        raise ArchiveError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return FORMATS[fmt](Path(path))
