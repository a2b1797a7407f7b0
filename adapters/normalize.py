"""Make backend output valid OpenAI chat-completion shapes.

Backends (llama.cpp, litellm's provider translations) return dicts that are
*almost* OpenAI's: a missing ``choices[].logprobs`` or ``message.refusal``, a
``tool_calls: None`` where the schema allows only an array, a provider's
``finish_reason`` such as ``"end_turn"``, usage details full of ``None``.
Strict clients and validators reject those, so every adapter passes its output
through :func:`normalize_completion` / :func:`normalize_chunk`.

The rules, which only ever *add* required fields, *drop* ``None`` values the
schema does not allow, or *map* values to the allowed ones (unknown extra
fields are kept, they are harmless):

* top level: ``id`` (generated if missing), ``object``, ``created`` (int),
  ``model`` (``model`` argument if given, else the backend's, else ``""``).
* choices: ``index``; ``logprobs`` defaults to ``None``; ``finish_reason``
  mapped onto ``stop | length | tool_calls | content_filter | function_call``
  (``None`` allowed in chunks, ``"stop"`` when missing in a completion).
* message: ``role`` is ``assistant``; ``content`` and ``refusal`` default to
  ``None``; tool calls get an ``id``, ``type: function`` and string
  ``arguments``.
* delta: ``None`` ``role``/``tool_calls``/``function_call`` are removed.
* a deprecated ``function_call`` next to ``tool_calls`` is removed (OpenAI
  never sends both; llama.cpp does, and clients would then see two calls).
* :func:`dedupe_tool_call_deltas` (stream-level, not per chunk): only the
  first delta of a tool call carries ``id``/``type``/``function.name``, as
  OpenAI sends them; SDK stream accumulators concatenate repeated strings.
* usage: missing counters become 0, ``total_tokens`` is recomputed when
  missing, ``None`` entries in the ``*_details`` objects are removed.

All functions are pure: they return new dicts and never mutate their input.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})

# Provider spellings of the OpenAI finish reasons.
_FINISH_ALIASES = {
    "eos": "stop",
    "eos_token": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "complete": "stop",
    "finished": "stop",
    "max_tokens": "length",
    "max_length": "length",
    "model_length": "length",
    "tool_use": "tool_calls",
    "tool_call": "tool_calls",
    "function_calls": "tool_calls",
    "safety": "content_filter",
    "recitation": "content_filter",
    "content_filtered": "content_filter",
}

# Optional fields whose schema does not allow ``null``: dropped when ``None``.
_TOP_NON_NULLABLE = ("system_fingerprint", "usage", "obfuscation")
_MESSAGE_NON_NULLABLE = ("tool_calls", "function_call", "annotations")
_DELTA_NON_NULLABLE = ("role", "tool_calls", "function_call")
_USAGE_DETAILS = ("completion_tokens_details", "prompt_tokens_details")


def content_text(content: Any) -> str:
    """A message content as plain text (text parts of a list joined by newlines)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return str(content)


def new_completion_id() -> str:
    """An id in OpenAI's ``chatcmpl-...`` style."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def normalize_finish_reason(value: Any, *, allow_none: bool) -> str | None:
    """Map a backend finish reason onto OpenAI's enum.

    ``None`` stays ``None`` when ``allow_none`` (stream chunks), else becomes
    ``"stop"``; unknown strings become ``"stop"``.
    """
    if value is None:
        return None if allow_none else "stop"
    text = str(value).lower()
    if text in FINISH_REASONS:
        return text
    return _FINISH_ALIASES.get(text, "stop")


def normalize_completion(data: dict[str, Any], *, model: str | None = None) -> dict[str, Any]:
    """Return ``data`` as a valid OpenAI ``chat.completion`` object."""
    out = _normalize_top(data, model=model, object_type="chat.completion")
    out["choices"] = [_completion_choice(c, i) for i, c in enumerate(_list(data.get("choices")))]
    if "usage" in out:
        out["usage"] = normalize_usage(out["usage"])
    return out


def normalize_chunk(data: dict[str, Any], *, model: str | None = None) -> dict[str, Any]:
    """Return ``data`` as a valid OpenAI ``chat.completion.chunk`` object.

    ``usage`` may be ``None`` in chunks (OpenAI sends it as null on every chunk
    but the last when ``include_usage`` is on), so a null usage is kept.
    """
    had_null_usage = "usage" in data and data["usage"] is None
    out = _normalize_top(data, model=model, object_type="chat.completion.chunk")
    out["choices"] = [_chunk_choice(c, i) for i, c in enumerate(_list(data.get("choices")))]
    if out.get("usage") is not None:
        out["usage"] = normalize_usage(out["usage"])
    elif had_null_usage:
        out["usage"] = None
    return out


def normalize_usage(usage: Any) -> dict[str, Any]:
    """Counters as ints (0 when missing), details without ``None`` entries."""
    src = usage if isinstance(usage, dict) else {}
    out = dict(src)
    prompt = _int(src.get("prompt_tokens"))
    completion = _int(src.get("completion_tokens"))
    out["prompt_tokens"] = prompt
    out["completion_tokens"] = completion
    total = src.get("total_tokens")
    out["total_tokens"] = _int(total) if total is not None else prompt + completion
    for key in _USAGE_DETAILS:
        details = out.get(key)
        if isinstance(details, dict):
            out[key] = {k: v for k, v in details.items() if v is not None}
        elif key in out:
            del out[key]
    return out


def normalize_tool_call(call: Any, index: int, *, chunk: bool) -> dict[str, Any]:
    """A function tool call with ``id``, ``type`` and string ``arguments``.

    In chunks only ``index`` is required (later deltas of one call carry just
    argument fragments), so nothing is invented there besides ``index``.
    """
    src = call if isinstance(call, dict) else {}
    out = {k: v for k, v in src.items() if v is not None}
    if out.get("type") == "custom":
        return out
    function = out.get("function")
    if isinstance(function, dict):
        function = {k: v for k, v in function.items() if v is not None}
        if "arguments" in function and not isinstance(function["arguments"], str):
            function["arguments"] = json.dumps(function["arguments"])
        out["function"] = function
    if chunk:
        out["index"] = _int(src.get("index"), default=index)
        return out
    out.pop("index", None)
    out.setdefault("id", f"call_{uuid.uuid4().hex[:24]}")
    out["type"] = "function"
    fn = out.setdefault("function", {})
    fn.setdefault("name", "")
    fn.setdefault("arguments", "")
    return out


def _normalize_top(data: dict[str, Any], *, model: str | None, object_type: str) -> dict[str, Any]:
    out = dict(data)
    for key in _TOP_NON_NULLABLE:
        if key in out and out[key] is None:
            del out[key]
    if not isinstance(out.get("id"), str) or not out["id"]:
        out["id"] = new_completion_id()
    out["object"] = object_type
    out["created"] = _int(out.get("created"), default=int(time.time()))
    if model is not None:
        out["model"] = model
    elif not isinstance(out.get("model"), str):
        out["model"] = "" if out.get("model") is None else str(out["model"])
    return out


def _completion_choice(choice: Any, position: int) -> dict[str, Any]:
    src = choice if isinstance(choice, dict) else {}
    out = dict(src)
    out["index"] = _int(src.get("index"), default=position)
    out["message"] = _message(src.get("message"))
    out["logprobs"] = _logprobs(src.get("logprobs"))
    out["finish_reason"] = normalize_finish_reason(src.get("finish_reason"), allow_none=False)
    return out


def _chunk_choice(choice: Any, position: int) -> dict[str, Any]:
    src = choice if isinstance(choice, dict) else {}
    out = dict(src)
    out["index"] = _int(src.get("index"), default=position)
    out["delta"] = _delta(src.get("delta"))
    out["logprobs"] = _logprobs(src.get("logprobs"))
    out["finish_reason"] = normalize_finish_reason(src.get("finish_reason"), allow_none=True)
    return out


def _message(message: Any) -> dict[str, Any]:
    out = dict(message) if isinstance(message, dict) else {}
    for key in _MESSAGE_NON_NULLABLE:
        if key in out and out[key] is None:
            del out[key]
    out["role"] = "assistant"
    out.setdefault("content", None)
    out.setdefault("refusal", None)
    if out.get("tool_calls"):
        out.pop("function_call", None)
    if isinstance(out.get("tool_calls"), list):
        if out["tool_calls"]:
            out["tool_calls"] = [
                normalize_tool_call(c, i, chunk=False) for i, c in enumerate(out["tool_calls"])
            ]
        else:
            del out["tool_calls"]
    return out


def _delta(delta: Any) -> dict[str, Any]:
    out = dict(delta) if isinstance(delta, dict) else {}
    for key in _DELTA_NON_NULLABLE:
        if key in out and out[key] is None:
            del out[key]
    if out.get("tool_calls"):
        out.pop("function_call", None)
    if isinstance(out.get("tool_calls"), list):
        out["tool_calls"] = [normalize_tool_call(c, i, chunk=True) for i, c in enumerate(out["tool_calls"])]
    return out


def dedupe_tool_call_deltas(
    chunk: dict[str, Any], seen: frozenset[tuple[int, int]]
) -> tuple[dict[str, Any], frozenset[tuple[int, int]]]:
    """Strip ``id``/``type``/``function.name`` from repeat deltas of a tool call.

    ``seen`` holds the ``(choice index, tool call index)`` pairs already
    announced earlier in the stream; returns the cleaned chunk (a copy when
    anything changed) and the updated set. Use on normalized chunks.
    """
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not any(_delta_tool_calls(c) for c in choices):
        return chunk, seen
    announced = set(seen)
    new_choices = []
    for choice in choices:
        calls = _delta_tool_calls(choice)
        if not calls:
            new_choices.append(choice)
            continue
        new_calls = []
        for call in calls:
            key = (_int(choice.get("index")), _int(call.get("index")))
            if key in announced:
                call = {k: v for k, v in call.items() if k not in ("id", "type")}
                if isinstance(call.get("function"), dict):
                    call["function"] = {k: v for k, v in call["function"].items() if k != "name"}
            announced.add(key)
            new_calls.append(call)
        new_choices.append({**choice, "delta": {**choice["delta"], "tool_calls": new_calls}})
    return {**chunk, "choices": new_choices}, frozenset(announced)


def _delta_tool_calls(choice: Any) -> list[dict[str, Any]]:
    delta = choice.get("delta") if isinstance(choice, dict) else None
    calls = delta.get("tool_calls") if isinstance(delta, dict) else None
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def _logprobs(value: Any) -> dict[str, Any] | None:
    """OpenAI chat logprobs (``{content, refusal}``) or ``None``.

    llama.cpp's completion-style logprobs (``tokens``/``token_logprobs``/...)
    are converted to the chat form.
    """
    if not isinstance(value, dict):
        return None
    if "content" in value or "refusal" in value:
        return {**value, "content": value.get("content"), "refusal": value.get("refusal")}
    tokens = value.get("tokens")
    if isinstance(tokens, list):
        return {"content": _chat_logprobs_from_completion(value), "refusal": None}
    return None


def _chat_logprobs_from_completion(value: dict[str, Any]) -> list[dict[str, Any]]:
    tokens = _list(value.get("tokens"))
    logprobs = _list(value.get("token_logprobs"))
    tops = _list(value.get("top_logprobs"))
    out: list[dict[str, Any]] = []
    for i, token in enumerate(tokens):
        logprob = logprobs[i] if i < len(logprobs) and logprobs[i] is not None else -9999.0
        top = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        out.append(
            {
                "token": str(token),
                "logprob": float(logprob),
                "bytes": list(str(token).encode("utf-8")),
                "top_logprobs": [
                    {"token": str(t), "logprob": float(lp), "bytes": list(str(t).encode("utf-8"))}
                    for t, lp in top.items()
                ],
            }
        )
    return out


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return default
