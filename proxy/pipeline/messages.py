"""Memory in chat-shaped messages (OpenAI chat completions, Ollama's ``/api/chat``).

Placing blocks: the core block always goes into the first system message, so
the stable prefix is ``[system prompt + core]``; the recalled block goes there
too (``system``, the default) or at the start of the last user message
(``last_user``: everything before it stays byte-identical across turns, which
keeps providers' prompt caches warm). Messages are copied, never mutated.

Reading turns: the recall query and the user's text of the turn, with any
memory block a client echoed back stripped.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from memory.render import strip_injected
from proxy.pipeline.blocks import MemoryBlocks

SYSTEM_ROLES = ("system", "developer")
SHORT_QUERY_WORDS = 4


def inject_blocks(messages: list[dict[str, Any]], blocks: MemoryBlocks, placement: str) -> list[dict[str, Any]]:
    """Core block first (always into the system message, so the stable prefix is
    ``[system prompt + core]``), then the recalled block per ``placement``."""
    out = messages
    if blocks.core:
        out = inject(out, blocks.core, "system")
    if blocks.recalled:
        out = inject(out, blocks.recalled, placement)
    return out


def inject(messages: list[dict[str, Any]], block: str, placement: str) -> list[dict[str, Any]]:
    """A copy of ``messages`` with ``block`` placed per ``placement``."""
    out = [dict(m) for m in messages]
    if placement == "last_user":
        index = _last_index(out, "user")
        if index is not None:
            out[index] = _prepend_text(out[index], block)
            return out
    if out and out[0].get("role") in SYSTEM_ROLES:
        out[0] = _append_text(out[0], block)
        return out
    return [{"role": "system", "content": block}, *out]


def message_text(message: dict[str, Any]) -> str:
    """The plain text of a message (text parts of a multi-part content joined)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(p for p in parts if p)
    return ""


def recall_query(messages: Sequence[dict[str, Any]]) -> str:
    """The text to recall memories for: the last user message.

    A very short last message ("yes, do it") is joined with the previous
    user message so the query keeps its topic.
    """
    user_texts = [strip_injected(message_text(m)).strip() for m in messages if m.get("role") == "user"]
    user_texts = [t for t in user_texts if t]
    if not user_texts:
        return ""
    query = user_texts[-1]
    if len(query.split()) < SHORT_QUERY_WORDS and len(user_texts) > 1:
        query = f"{user_texts[-2]}\n{query}"
    return query


def last_user_text(messages: Sequence[dict[str, Any]]) -> str | None:
    """The client's newest user message when it ends the conversation, else None."""
    if not messages or messages[-1].get("role") != "user":
        return None
    return strip_injected(message_text(messages[-1])).strip()


def _last_index(messages: Sequence[dict[str, Any]], role: str) -> int | None:
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == role:
            return index
    return None


def _append_text(message: dict[str, Any], block: str) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, list):
        return {**message, "content": [*copy.deepcopy(content), {"type": "text", "text": block}]}
    text = content if isinstance(content, str) else ""
    return {**message, "content": f"{text}\n\n{block}" if text else block}


def _prepend_text(message: dict[str, Any], block: str) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, list):
        return {**message, "content": [{"type": "text", "text": block}, *copy.deepcopy(content)]}
    text = content if isinstance(content, str) else ""
    return {**message, "content": f"{block}\n\n{text}" if text else block}
