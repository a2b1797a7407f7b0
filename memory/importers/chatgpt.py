"""ChatGPT's data export (``conversations.json``): every conversation becomes
turns (a user message and the assistant's reply) with their real timestamps.

Each conversation has a ``mapping`` of nodes (``message``, ``parent``,
``children``); the conversation as last shown is the path from
``current_node`` up to the root, so edited-away branches are left out.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from memory.archive import ArchiveError
from memory.importers.base import SOURCE_KEY, ImportedItem, epoch_time, read_json
from memory.writer import turn_content

SOURCE = "chatgpt"


def _text(message: dict[str, Any]) -> str:
    content = message.get("content") or {}
    if not isinstance(content, dict):
        return ""
    if content.get("content_type") not in ("text", "multimodal_text"):
        return ""
    parts = content.get("parts") or []
    return "\n".join(p for p in parts if isinstance(p, str)).strip()


def _path(conversation: dict[str, Any], number: int) -> list[dict[str, Any]]:
    mapping = conversation.get("mapping")
    if not isinstance(mapping, dict):
        raise ArchiveError(f"conversation {number}: no 'mapping' of messages")
    node_id = conversation.get("current_node")
    if node_id not in mapping:  # no current node: the newest leaf
        leaves = [n for n in mapping.values() if isinstance(n, dict) and not n.get("children")]
        leaves.sort(key=lambda n: ((n.get("message") or {}).get("create_time") or 0))
        node_id = leaves[-1].get("id") if leaves else None
    path: list[dict[str, Any]] = []
    seen: set[str] = set()
    while node_id is not None:
        if node_id in seen or node_id not in mapping:
            raise ArchiveError(f"conversation {number}: broken message tree at {node_id!r}")
        seen.add(node_id)
        node = mapping[node_id]
        if not isinstance(node, dict):
            raise ArchiveError(f"conversation {number}: node {node_id!r} is not an object")
        if isinstance(node.get("message"), dict):
            path.append(node["message"])
        node_id = node.get("parent")
    path.reverse()
    return path


def parse(path: Path) -> list[ImportedItem]:
    data = read_json(path)
    if not isinstance(data, list):
        raise ArchiveError(f"{Path(path).name}: a ChatGPT export is a JSON list of conversations")
    items: list[ImportedItem] = []
    for number, conversation in enumerate(data, start=1):
        if not isinstance(conversation, dict):
            raise ArchiveError(f"conversation {number}: not a JSON object")
        conv_id = str(conversation.get("conversation_id") or conversation.get("id") or number)
        title = conversation.get("title")
        started = epoch_time(conversation.get("create_time"))
        origin = {"source": SOURCE, "conversation_id": conv_id, "title": title}
        turn: list[Any] = []  # [user message, user text, [assistant texts]]
        for message in _path(conversation, number):
            role = ((message.get("author") or {}).get("role")) if isinstance(message.get("author"), dict) else None
            hidden = (message.get("metadata") or {}).get("is_visually_hidden_from_conversation")
            text = _text(message)
            if hidden or not text:
                continue
            if role == "user":
                _flush(items, turn, conv_id, started, origin)
                turn = [message, text, []]
            elif role == "assistant" and turn:
                turn[2].append(text)
        _flush(items, turn, conv_id, started, origin)
    return items


def _flush(
    items: list[ImportedItem], turn: list[Any], conv_id: str, started: datetime | None, origin: dict[str, Any]
) -> None:
    if not turn:
        return
    message, user_text, replies = turn
    content = turn_content(user_text, "\n\n".join(replies))
    if content:
        items.append(
            ImportedItem(
                key=f"{conv_id}/{message.get('id')}",
                content=content,
                kind="episodic",
                event_time=epoch_time(message.get("create_time")) or started,
                session=conv_id,
                roles=("user", "assistant") if replies else ("user",),
                metadata={SOURCE_KEY: dict(origin)},
            )
        )
