"""Collects the assistant's reply from a response or a relayed stream.

Only the first choice is kept (that is what gets written to memory). Tool
calls are merged from their streamed fragments by index.
"""

from __future__ import annotations

import json
from typing import Any


class ReplyCapture:
    def __init__(self) -> None:
        self._text: list[str] = []
        self._tools: dict[int, dict[str, str]] = {}
        self.model: str | None = None
        self.finished = False

    def add_chunk(self, chunk: dict[str, Any]) -> None:
        self.model = self.model or chunk.get("model")
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self._text.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                self._merge_tool(call)
            if choice.get("finish_reason"):
                self.finished = True

    def add_completion(self, completion: dict[str, Any]) -> None:
        self.model = completion.get("model")
        for choice in completion.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            message = choice.get("message") or {}
            if isinstance(message.get("content"), str):
                self._text.append(message["content"])
            for index, call in enumerate(message.get("tool_calls") or ()):
                self._merge_tool({"index": index, **call})
            self.finished = True

    def add_text(self, text: str) -> None:
        """A piece of reply text from any protocol (Ollama, Responses)."""
        self._text.append(text)

    def add_tool_call(self, name: str, arguments: Any) -> None:
        """A complete tool call from any protocol; ``arguments`` as a string or an object."""
        self._merge_tool({"index": len(self._tools), "function": {"name": name, "arguments": arguments}})

    @property
    def text(self) -> str:
        """The reply as one string; tool calls are summarised after any text."""
        parts = ["".join(self._text).strip()]
        for index in sorted(self._tools):
            tool = self._tools[index]
            parts.append(f"[called tool {tool['name']}({tool['arguments']})]")
        return "\n".join(p for p in parts if p)

    def _merge_tool(self, call: dict[str, Any]) -> None:
        slot = self._tools.setdefault(int(call.get("index", 0)), {"name": "", "arguments": ""})
        function = call.get("function") or {}
        if function.get("name"):
            slot["name"] = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            slot["arguments"] += arguments
        elif arguments is not None:
            slot["arguments"] += json.dumps(arguments)
