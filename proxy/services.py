"""The objects a running server is made of, built once per app."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from adapters.base import Upstream
from memory.engine import MemoryEngine
from proxy.chat_service import ChatService
from proxy.config import Settings
from proxy.embeddings_service import EmbeddingsService
from proxy.identity import IdentityResolver
from proxy.ollama_service import OllamaService
from proxy.responses_service import ResponsesService


@dataclass(slots=True)
class Services:
    settings: Settings
    engine: MemoryEngine
    upstream: Upstream
    identity: IdentityResolver
    chat: ChatService
    responses: ResponsesService
    embeddings: EmbeddingsService
    ollama: OllamaService


def services(request: Request) -> Services:
    return request.app.state.services
