"""Memory in Responses shapes: which texts make the turn, where the blocks go,
and the reply of a final ``response`` object.

- The turn: ``input`` read as chat messages once (the bridge's own parser,
  lenient), so the recall query and the user's text follow the same rules
  as ``/v1/chat/completions``.
- Placement: the core block is appended to ``instructions`` (set when there
  are none), so the stable prefix is ``[instructions + core]``. The recalled
  block follows it there (``system``), or is prepended to the last user
  message of ``input`` (``last_user``; ``instructions`` when there is none).
- The reply: the output text of the final response, tool calls summarised.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from proxy.openai.responses.bridge import input_to_messages
from proxy.pipeline import MemoryBlocks, ReplyCapture
from proxy.pipeline.messages import last_user_text, recall_query


@dataclass(frozen=True, slots=True)
class Turn:
    query: str  # what to recall memories for
    user_text: str  # the user's text of this turn (what gets written)


def read_turn(body: dict[str, Any]) -> Turn:
    messages = input_to_messages(body.get("input"), strict=False)
    return Turn(recall_query(messages), last_user_text(messages) or "")


def place_blocks(body: dict[str, Any], blocks: MemoryBlocks, placement: str) -> dict[str, Any]:
    """A copy of ``body`` with the core block in ``instructions`` and the recalled block per ``placement``."""
    out = _append_instructions(body, blocks.core) if blocks.core else dict(body)
    if not blocks.recalled:
        return out
    if placement == "last_user":
        placed = _prepend_to_last_user(out, blocks.recalled)
        if placed is not None:
            return placed
    return _append_instructions(out, blocks.recalled)


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


def restore_instructions(response: dict[str, Any], client_body: dict[str, Any]) -> dict[str, Any]:
    """The response as the client should see it: its own instructions, not the memory blocks."""
    if "instructions" not in response:
        return response
    return {**response, "instructions": client_body.get("instructions")}


def _append_instructions(body: dict[str, Any], block: str) -> dict[str, Any]:
    instructions = body.get("instructions")
    merged = f"{instructions}\n\n{block}" if isinstance(instructions, str) and instructions else block
    return {**body, "instructions": merged}


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
