"""The fake upstream's OpenAI Responses API and embeddings (see ``fake_upstream``).

Written independently of memproxy's own bridge so that tests compare two
implementations. Replies follow the chat fake: ``"Echo: <last user text>"``,
or a call to the first function tool when tools are offered; the request's
``previous_response_id``, ``store`` and ``instructions`` are echoed back.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

EMBEDDING_DIMENSIONS = 8
USAGE = {
    "input_tokens": 12,
    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    "output_tokens": 5,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 17,
}


def response_reply(body: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """(text, function call) the fake answers ``body`` with."""
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    if tools and body.get("tool_choice") != "none":
        call = {"name": tools[0].get("name", "tool"), "arguments": json.dumps({"city": "Paris", "unit": "c"})}
        return None, call
    return f"Echo: {_last_user_text(body.get('input'))}", None


def response_object(body: dict[str, Any], status: str, output: list[dict[str, Any]], usage: bool) -> dict[str, Any]:
    stamp = time.time_ns()
    return {
        "id": f"resp_fake{stamp:x}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model", "fake-model"),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "metadata": body.get("metadata") or {},
        **({"user": body["user"]} if body.get("user") else {}),
        **({"usage": USAGE} if usage else {}),
    }


def _items(text: str | None, call: dict[str, Any] | None) -> list[dict[str, Any]]:
    if call is not None:
        return [
            {
                "type": "function_call",
                "id": "fc_fake1",
                "call_id": "call_fake_1",
                "name": call["name"],
                "arguments": call["arguments"],
                "status": "completed",
            }
        ]
    part = {"type": "output_text", "text": text or "", "annotations": [], "logprobs": []}
    return [{"type": "message", "id": "msg_fake1", "status": "completed", "role": "assistant", "content": [part]}]


def complete_response(body: dict[str, Any]) -> dict[str, Any]:
    text, call = response_reply(body)
    return response_object(body, "completed", _items(text, call), usage=True)


async def stream_response(body: dict[str, Any], delay: float) -> AsyncIterator[bytes]:
    text, call = response_reply(body)
    sequence = iter(range(10_000))

    def event(kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": next(sequence), **fields}
        return f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode("utf-8")

    yield event("response.created", response=response_object(body, "in_progress", [], usage=False))
    yield event("response.in_progress", response=response_object(body, "in_progress", [], usage=False))
    (item,) = _items(text, call)
    if call is not None:
        yield event("response.output_item.added", output_index=0, item={**item, "arguments": "", "status": "in_progress"})
        arguments = call["arguments"]
        for piece in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
            await asyncio.sleep(delay)
            yield event("response.function_call_arguments.delta", item_id=item["id"], output_index=0, delta=piece)
        yield event(
            "response.function_call_arguments.done", item_id=item["id"], output_index=0, name=call["name"], arguments=arguments
        )
    else:
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield event("response.output_item.added", output_index=0, item={**item, "status": "in_progress", "content": []})
        yield event("response.content_part.added", item_id=item["id"], output_index=0, content_index=0, part=empty)
        words = (text or "").split(" ")
        for index, word in enumerate(words):
            await asyncio.sleep(delay)
            piece = word if index == 0 else f" {word}"
            yield event(
                "response.output_text.delta", item_id=item["id"], output_index=0, content_index=0, delta=piece, logprobs=[]
            )
        yield event(
            "response.output_text.done", item_id=item["id"], output_index=0, content_index=0, text=text, logprobs=[]
        )
        yield event(
            "response.content_part.done", item_id=item["id"], output_index=0, content_index=0, part=item["content"][0]
        )
    yield event("response.output_item.done", output_index=0, item=item)
    yield event("response.completed", response=response_object(body, "completed", [item], usage=True))


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    data = []
    for index, text in enumerate(texts):
        vector = fake_vector(str(text))
        if body.get("encoding_format") == "base64":
            encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        else:
            encoded = vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(max(1, len(str(t)) // 4) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": body.get("model", "fake-embedding"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def fake_vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [round(b / 255.0, 4) for b in digest[:EMBEDDING_DIMENSIONS]]


def _last_user_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    for item in reversed(value or []):
        if item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and "text" in p)
            return str(content or "")
    return ""
