"""A plain list of facts: JSON, JSON Lines or Markdown.

- JSON: a list (or ``{"facts": [...]}`` / ``{"memories": [...]}``) of strings
  or objects ``{content | text | fact | memory, kind?, tier?, event_time? | date?, metadata?}``;
- JSON Lines: one such string or object per line;
- Markdown (or text): each bullet (``-``, ``*``, ``+``, ``1.``) is one fact,
  each other paragraph one memory; the heading above it is kept in
  ``metadata.section``.

A fact's key is its section and text, so the same list imported twice (or
reordered) adds nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from memory.archive import ArchiveError
from memory.importers.base import SOURCE_KEY, ImportedItem, epoch_time, read_json

SOURCE = "facts"
TEXT_KEYS = ("content", "text", "fact", "memory")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")


def _item(entry: Any, where: str, file: str) -> ImportedItem:
    if isinstance(entry, str):
        entry = {"content": entry}
    if not isinstance(entry, dict):
        raise ArchiveError(f"{where}: a fact is a string or an object")
    text = next((entry[k] for k in TEXT_KEYS if isinstance(entry.get(k), str)), None)
    if text is None or not text.strip():
        raise ArchiveError(f"{where}: needs non-empty text in one of {', '.join(TEXT_KEYS)}")
    metadata = entry.get("metadata") or {}
    tier = entry.get("tier") or "recall"
    if not isinstance(metadata, dict) or tier not in ("recall", "core"):
        raise ArchiveError(f"{where}: 'metadata' must be an object and 'tier' recall or core")
    section = metadata.get("section")
    return ImportedItem(
        key=f"{section or ''}\0{text.strip()}",
        content=text,
        kind=str(entry.get("kind") or "fact"),
        tier=tier,
        event_time=epoch_time(entry.get("event_time") or entry.get("date")),
        metadata={**metadata, SOURCE_KEY: {"source": SOURCE, "file": file}},
    )


def parse_markdown(text: str, file: str) -> list[ImportedItem]:
    items: list[ImportedItem] = []
    section: str | None = None
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            body = " ".join(line.strip() for line in paragraph).strip()
            if body:
                meta = {"section": section} if section else {}
                items.append(_item({"content": body, "metadata": meta}, f"{file}", file))
            paragraph.clear()

    for line in text.splitlines():
        heading, bullet = _HEADING.match(line), _BULLET.match(line)
        if heading:
            flush()
            section = heading.group(1).strip() or None
        elif bullet:
            flush()
            paragraph.append(bullet.group(1))
        elif not line.strip():
            flush()
        elif paragraph or line.strip():
            paragraph.append(line)
    flush()
    return items


def parse(path: Path) -> list[ImportedItem]:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".md", ".markdown", ".txt"):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ArchiveError(f"{path.name}: not readable text ({exc})") from exc
        return parse_markdown(text, path.name)
    if suffix == ".jsonl":
        items = []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ArchiveError(f"{path.name}: not readable text ({exc})") from exc
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    entry = json.loads(line)
                except ValueError as exc:
                    raise ArchiveError(f"{path.name} line {number}: not JSON ({exc})") from exc
                items.append(_item(entry, f"{path.name} line {number}", path.name))
        return items
    data = read_json(path)
    if isinstance(data, dict):
        data = data.get("facts", data.get("memories"))
    if not isinstance(data, list):
        raise ArchiveError(f"{path.name}: a facts file is a JSON list (or {{'facts': [...]}})")
    return [_item(entry, f"{path.name} item {n}", path.name) for n, entry in enumerate(data, start=1)]
