"""The objects a running server is made of, built once per app."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from adapters.base import Upstream
from memory.engine import MemoryEngine
from proxy.chat_service import ChatService
from proxy.config import Settings
from proxy.identity import IdentityResolver


@dataclass(slots=True)
class Services:
    settings: Settings
    engine: MemoryEngine
    upstream: Upstream
    identity: IdentityResolver
    chat: ChatService


def services(request: Request) -> Services:
    return request.app.state.services
