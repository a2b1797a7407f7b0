"""Caps on what one memory may hold (the ``memory.limits`` settings).

Checked by the engine on every write, whichever way it comes in (the
management API, a chat turn, the extractor): content length, metadata size and
nesting, and the number of memories in one ``add``. A memory over a cap is an
:class:`InvalidMemory` (400); a chat turn longer than the content cap is
clipped instead, so a long conversation still leaves a memory.
"""

from __future__ import annotations

import json
from typing import Any

from memory.errors import InvalidMemory

CLIPPED = " [...]"


def check_content(text: str, max_chars: int, param: str = "content") -> str:
    if len(text) > max_chars:
        raise InvalidMemory(
            f"Memory content is {len(text)} characters; at most {max_chars} are accepted (memory.limits.max_content_chars).",
            param=param,
        )
    return text


def clip_content(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters (marked), for turns from chat."""
    if len(text) <= max_chars:
        return text
    return text[: max(0, max_chars - len(CLIPPED))].rstrip() + CLIPPED


def check_metadata(value: dict[str, Any], max_bytes: int, max_depth: int) -> dict[str, Any]:
    """``value`` when it nests at most ``max_depth`` levels and serialises to at most ``max_bytes``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                raise InvalidMemory(
                    f"Memory metadata nests deeper than {max_depth} levels (memory.limits.max_metadata_depth).",
                    param="metadata",
                )
            stack.extend((item, depth + 1) for item in (node.values() if isinstance(node, dict) else node))
    try:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise InvalidMemory(f"Memory metadata must be plain JSON: {exc}.", param="metadata") from None
    if size > max_bytes:
        raise InvalidMemory(
            f"Memory metadata is {size} bytes as JSON; at most {max_bytes} are accepted (memory.limits.max_metadata_bytes).",
            param="metadata",
        )
    return value


def check_batch(count: int, max_batch: int) -> None:
    if count > max_batch:
        raise InvalidMemory(
            f"{count} memories in one request; at most {max_batch} are accepted (memory.limits.max_batch).",
            param="memories",
        )
