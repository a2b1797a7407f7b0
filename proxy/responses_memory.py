"""Where memories go in a Responses request, and which texts make the turn.

- Recall query and the turn's user text: the ``input``'s user messages, read
  as chat messages (so the rules match ``/v1/chat/completions``).
- Placement ``system``: the block is appended to ``instructions`` (set when
  there are none). ``last_user``: it is prepended to the last user message
  of ``input`` (falling back to ``instructions`` when there is none).
- The reply: the final response's output text, tool calls summarised.
"""

from __future__ import annotations

import copy
from typing import Any

from proxy.capture import ReplyCapture
from proxy.injection import last_user_text, message_text, recall_query


def input_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's ``input`` as chat-like ``{"role", "content": text}`` messages."""
    value = body.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages: list[dict[str, Any]] = []
    for item in value or ():
        if not isinstance(item, dict):
            continue
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            messages.append({"role": item.get("role", "user"), "content": _plain(item.get("content"))})
        else:
            messages.append({"role": kind or "item", "content": ""})
    return messages


def query_of(body: dict[str, Any]) -> str:
    return recall_query(input_messages(body))


def user_text_of(body: dict[str, Any]) -> str:
    return last_user_text(input_messages(body)) or ""


def place_block(body: dict[str, Any], block: str, placement: str) -> dict[str, Any]:
    """A copy of ``body`` with the memory block placed per ``placement``."""
    if placement == "last_user":
        placed = _prepend_to_last_user(body, block)
        if placed is not None:
            return placed
    instructions = body.get("instructions")
    merged = f"{instructions}\n\n{block}" if isinstance(instructions, str) and instructions else block
    return {**body, "instructions": merged}


def capture_output(response: dict[str, Any]) -> ReplyCapture:
    """The assistant's reply in a final ``response`` object."""
    capture = ReplyCapture()
    capture.model = response.get("model")
    for item in response.get("output") or ():
        if item.get("type") == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text" and part.get("text"):
                    capture.add_text(part["text"])
        elif item.get("type") == "function_call":
            capture.add_tool_call(str(item.get("name") or "tool"), item.get("arguments") or "")
    capture.finished = response.get("status") == "completed"
    return capture


def _plain(content: Any) -> Any:
    if isinstance(content, list):
        texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in ("input_text", "output_text", "text")]
        return "\n".join(t for t in texts if t)
    return message_text({"content": content})


def _prepend_to_last_user(body: dict[str, Any], block: str) -> dict[str, Any] | None:
    value = body.get("input")
    if isinstance(value, str):
        return {**body, "input": f"{block}\n\n{value}"}
    if not isinstance(value, list):
        return None
    items = copy.deepcopy(value)
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user" and item.get("type", "message") == "message":
            content = item.get("content")
            if isinstance(content, list):
                item["content"] = [{"type": "input_text", "text": block}, *content]
            else:
                item["content"] = f"{block}\n\n{content or ''}"
            return {**body, "input": items}
    return None
