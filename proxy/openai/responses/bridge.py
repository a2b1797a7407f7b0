"""The Responses API bridged onto chat completions, for upstreams that lack it.

Three pure translations:

- :func:`to_chat_request`: a ``CreateResponse`` body -> a chat-completions
  body (``instructions`` -> system message; ``input`` string or items —
  messages, ``function_call``, ``function_call_output`` — -> messages;
  function ``tools``/``tool_choice``; ``text.format`` -> ``response_format``;
  ``max_output_tokens`` -> ``max_tokens``; sampling fields kept).
- :func:`to_response`: a ``chat.completion`` -> a ``response`` object.
- :class:`BridgeStream`: ``chat.completion.chunk``s -> Responses stream
  events, with ``sequence_number``s, message and function-call items.

Features that need server-side state or hosted tools (``previous_response_id``,
``conversation``, web/file search...) are refused with a 400 that says so.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from proxy.errors import InvalidRequest

# CreateResponse fields with a chat-completions field of the same name and meaning.
_SAME_NAME = (
    "model",
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "user",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "stream",
)
_STATEFUL = ("previous_response_id", "conversation")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


# --------------------------------------------------------------- request


def to_chat_request(body: dict[str, Any]) -> dict[str, Any]:
    for field in _STATEFUL:
        if body.get(field):
            raise InvalidRequest(
                f"'{field}' needs an upstream with the Responses API; this upstream is "
                "served through the chat-completions bridge, which keeps no conversation state. "
                "Send the whole conversation in 'input' instead.",
                param=field,
            )
    chat: dict[str, Any] = {k: body[k] for k in _SAME_NAME if body.get(k) is not None}
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str) and body["instructions"]:
        messages.append({"role": "system", "content": body["instructions"]})
    messages.extend(input_to_messages(body.get("input")))
    if not messages:
        raise InvalidRequest("'input' must not be empty.", param="input")
    chat["messages"] = messages
    if body.get("tools"):
        chat["tools"] = [_tool(t, i) for i, t in enumerate(body["tools"])]
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    if body.get("top_logprobs"):
        chat["logprobs"] = True
        chat["top_logprobs"] = body["top_logprobs"]
    effort = (body.get("reasoning") or {}).get("effort")
    if effort:
        chat["reasoning_effort"] = effort
    response_format = _response_format((body.get("text") or {}).get("format"))
    if response_format:
        chat["response_format"] = response_format
    if body.get("stream"):
        chat["stream_options"] = {"include_usage": True}
    return chat


def input_to_messages(value: Any, *, strict: bool = True) -> list[dict[str, Any]]:
    """``input`` (a string or a list of items) as chat messages.

    ``strict`` (the bridge) refuses what chat completions cannot carry. Not
    strict (reading the turn for memory, whatever the upstream): such items
    become empty placeholder messages and such content parts are skipped.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            continue  # the request model admits only objects; be safe when not strict
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            messages.append(_message(item, index, strict))
        elif kind == "function_call":
            call = {
                "id": item.get("call_id") or item.get("id") or new_id("call"),
                "type": "function",
                "function": {"name": item.get("name", ""), "arguments": item.get("arguments") or "{}"},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and ("tool_calls" in last or not last.get("content")):
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append(
                {"role": "tool", "tool_call_id": item.get("call_id", ""), "content": _text_of(output)}
            )
        elif kind == "reasoning":
            continue  # reasoning items are the upstream model's own; chat has no place for them
        elif not strict:
            messages.append({"role": kind or "item", "content": ""})
        else:
            raise InvalidRequest(
                f"Input items of type '{kind}' need an upstream with the Responses API.",
                param=f"input[{index}]",
            )
    return messages


def _message(item: dict[str, Any], index: int, strict: bool) -> dict[str, Any]:
    role = item.get("role", "user")
    content = item.get("content")
    if isinstance(content, str) or content is None:
        return {"role": role, "content": content or ""}
    if role in ("assistant", "system", "developer"):
        return {"role": role, "content": _text_of(content)}
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif not strict:
            continue  # only the text matters for memory
        elif kind == "input_image":
            url = part.get("image_url") or part.get("file_id")
            if not url:
                raise InvalidRequest("input_image needs an image_url.", param=f"input[{index}].content")
            image: dict[str, Any] = {"url": url}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            file = {k: part[k] for k in ("file_data", "file_id", "filename") if part.get(k)}
            parts.append({"type": "file", "file": file})
        else:
            raise InvalidRequest(f"Unsupported content part '{kind}'.", param=f"input[{index}].content")
    return {"role": role, "content": parts}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") or p.get("refusal") or "" for p in content if isinstance(p, dict)]
        return "".join(texts)
    return "" if content is None else json.dumps(content)


def _tool(tool: dict[str, Any], index: int) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise InvalidRequest(
            f"Tools of type '{tool.get('type')}' need an upstream with the Responses API; "
            "the chat-completions bridge supports function tools.",
            param=f"tools[{index}]",
        )
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name", "")}}
    return choice


def _response_format(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    return {"type": fmt.get("type")}


# -------------------------------------------------------------- response


def skeleton(request: dict[str, Any], response_id: str, created_at: int, model: str, status: str) -> dict[str, Any]:
    """A ``response`` object echoing the client's request, with no output yet."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": request.get("reasoning") or {"effort": None, "summary": None},
        "store": False,
        "temperature": request.get("temperature", 1.0),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p", 1.0),
        "truncation": "disabled",
        "metadata": request.get("metadata") or {},
        **({"user": request["user"]} if request.get("user") else {}),
    }


def to_response(completion: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    model = completion.get("model") or request.get("model", "")
    response = skeleton(request, new_id("resp"), int(completion.get("created") or time.time()), model, "completed")
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    calls = message.get("tool_calls") or []
    if message.get("content") or message.get("refusal") or not calls:
        output.append(_message_item(new_id("msg"), message.get("content") or "", message.get("refusal")))
    for call in calls:
        function = call.get("function") or {}
        output.append(
            {
                "type": "function_call",
                "id": new_id("fc"),
                "call_id": call.get("id") or new_id("call"),
                "name": function.get("name", ""),
                "arguments": function.get("arguments") or "",
                "status": "completed",
            }
        )
    response["output"] = output
    _finish(response, choice.get("finish_reason"), completion.get("usage"))
    return response


def _message_item(item_id: str, text: str, refusal: str | None = None, status: str = "completed") -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    if text or not refusal:
        content.append(_text_part(text))
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _finish(response: dict[str, Any], finish_reason: str | None, usage: dict[str, Any] | None) -> None:
    if finish_reason in ("length", "content_filter"):
        response["status"] = "incomplete"
        reason = "max_output_tokens" if finish_reason == "length" else "content_filter"
        response["incomplete_details"] = {"reason": reason}
        for item in response["output"]:
            item["status"] = "incomplete"
    else:
        response["status"] = "completed"
        response["completed_at"] = int(time.time())
    if usage:
        response["usage"] = _usage(usage)


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    cached = int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
    reasoning = int(((usage.get("completion_tokens_details") or {}).get("reasoning_tokens")) or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }


# ---------------------------------------------------------------- stream


class BridgeStream:
    """Turns chat chunks into Responses events; one instance per response."""

    def __init__(self, request: dict[str, Any], model: str) -> None:
        self.request = request
        self.response = skeleton(request, new_id("resp"), int(time.time()), model, "in_progress")
        self._sequence = 0
        self._items: list[dict[str, Any]] = []  # output items in order, live
        self._text: dict[str, Any] | None = None  # the open message item
        self._text_parts: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}  # chat tool index -> open function_call item
        self._closed: set[str] = set()
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] | None = None

    def start(self) -> list[dict[str, Any]]:
        return [
            self._event("response.created", response=self._snapshot()),
            self._event("response.in_progress", response=self._snapshot()),
        ]

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if chunk.get("model"):
            self.response["model"] = chunk["model"]
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                if self._text is None:
                    events += self._open_text()
                text_item = self._text
                assert text_item is not None  # opened just above
                self._text_parts.append(content)
                events.append(
                    self._event(
                        "response.output_text.delta",
                        item_id=text_item["id"],
                        output_index=self._index(text_item),
                        content_index=0,
                        delta=content,
                        logprobs=[],
                    )
                )
            for call in delta.get("tool_calls") or ():
                events += self._tool_delta(call)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        return events

    def finish(self) -> list[dict[str, Any]]:
        events = self._close_text()
        for index in sorted(self._calls):
            events += self._close_call(self._calls[index])
        self.response["output"] = [dict(item) for item in self._items]
        _finish(self.response, self._finish_reason, self._usage)
        kind = "response.completed" if self.response["status"] == "completed" else "response.incomplete"
        events.append(self._event(kind, response=self._snapshot()))
        return events

    def fail(self, message: str) -> list[dict[str, Any]]:
        self.response["status"] = "failed"
        self.response["output"] = [dict(item) for item in self._items]
        self.response["error"] = {"code": "server_error", "message": message}
        return [self._event("response.failed", response=self._snapshot())]

    # -- items

    def _open_text(self) -> list[dict[str, Any]]:
        self._text = {"type": "message", "id": new_id("msg"), "status": "in_progress", "role": "assistant", "content": []}
        self._text_parts = []
        self._items.append(self._text)
        index = self._index(self._text)
        return [
            self._event("response.output_item.added", output_index=index, item=_copy(self._text)),
            self._event(
                "response.content_part.added",
                item_id=self._text["id"],
                output_index=index,
                content_index=0,
                part=_text_part(""),
            ),
        ]

    def _close_text(self) -> list[dict[str, Any]]:
        item = self._text
        if item is None:
            return []
        self._text = None
        text = "".join(self._text_parts)
        index = self._index(item)
        item["content"] = [_text_part(text)]
        item["status"] = "completed"
        return [
            self._event(
                "response.output_text.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[],
            ),
            self._event(
                "response.content_part.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=_text_part(text),
            ),
            self._event("response.output_item.done", output_index=index, item=_copy(item)),
        ]

    def _tool_delta(self, call: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        slot = int(call.get("index", 0))
        function = call.get("function") or {}
        item = self._calls.get(slot)
        if item is None:
            events += self._close_text()
            item = {
                "type": "function_call",
                "id": new_id("fc"),
                "call_id": call.get("id") or new_id("call"),
                "name": function.get("name") or "",
                "arguments": "",
                "status": "in_progress",
            }
            self._calls[slot] = item
            self._items.append(item)
            events.append(self._event("response.output_item.added", output_index=self._index(item), item=_copy(item)))
        elif function.get("name") and not item["name"]:
            item["name"] = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            arguments = json.dumps(arguments)
        if arguments:
            item["arguments"] += arguments
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=self._index(item),
                    delta=arguments,
                )
            )
        return events

    def _close_call(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        if item["id"] in self._closed:
            return []
        self._closed.add(item["id"])
        item["status"] = "completed"
        index = self._index(item)
        return [
            self._event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=item["name"],
                arguments=item["arguments"],
            ),
            self._event("response.output_item.done", output_index=index, item=_copy(item)),
        ]

    # -- plumbing

    def _index(self, item: dict[str, Any]) -> int:
        return next(i for i, candidate in enumerate(self._items) if candidate is item)

    def _snapshot(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.response))

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(item))
