"""Ollama's native API: request models (validation only) and its error shape.

Bodies are validated loosely and forwarded as the client sent them (every
field — ``options``, ``format``, ``tools``, ``images``, ``keep_alive``,
``think``, ``context``... — passes through). Errors on ``/api/*`` are
Ollama's own shape, ``{"error": "message"}``, with the HTTP status.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field


class OllamaMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1)
    content: str | None = None


class OllamaChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[OllamaMessage] = Field(default_factory=list)
    stream: bool | None = None


class OllamaGenerateRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    prompt: str | None = None
    system: str | None = None
    raw: bool | None = None
    stream: bool | None = None


class OllamaModelRequest(BaseModel):
    """``/api/show``: Ollama accepts ``model`` (and the older ``name``)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    name: str | None = None


class OllamaEmbedRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)


def ollama_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def streams(body: dict[str, Any]) -> bool:
    """Ollama streams unless the body says ``"stream": false``."""
    return body.get("stream") is not False
