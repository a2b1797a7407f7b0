"""The objects a running server is made of, built once per app (see :mod:`proxy.app`)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from adapters.base import Upstream
from memory.engine import MemoryEngine
from proxy.auth.middleware import Authenticator
from proxy.config import Settings
from proxy.identity import IdentityResolver
from proxy.observability.metrics import Metrics
from proxy.ollama.serving import OllamaServing
from proxy.openai.chat.serving import ChatServing
from proxy.openai.embeddings.serving import EmbeddingsServing
from proxy.openai.responses.serving import ResponsesServing
from proxy.pipeline import MemoryPipeline


@dataclass(slots=True)
class Services:
    settings: Settings
    engine: MemoryEngine
    upstream: Upstream
    identity: IdentityResolver
    pipeline: MemoryPipeline
    chat: ChatServing
    responses: ResponsesServing
    embeddings: EmbeddingsServing
    ollama: OllamaServing
    auth: Authenticator
    metrics: Metrics | None = None  # observability.metrics


def services(request: Request) -> Services:
    return request.app.state.services
