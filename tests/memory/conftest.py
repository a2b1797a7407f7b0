"""Fixtures for the memory engine tests: real Chroma, real embedder, offline.

Self-contained on purpose (no pytest-asyncio): tests drive coroutines with
``asyncio.run``. One Embedder is shared by the whole session because loading
the model takes seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.memory.memory_helpers import MIN_SCORE, ChromaServer, EngineFactory, chroma_binary

from memory.embedder import Embedder
from memory.engine import MemoryEngine
from memory.settings import MemorySettings


@pytest.fixture(scope="session")
def embedder() -> Iterator[Embedder]:
    shared = Embedder()
    asyncio.run(shared.warmup())
    yield shared
    shared.close()


@pytest.fixture
def open_engine(embedder: Embedder, tmp_path: Path) -> EngineFactory:
    """``await open_engine(**settings)``: an engine on a fresh embedded store."""

    async def factory(**overrides: Any) -> MemoryEngine:
        settings = MemorySettings(**{"min_score": MIN_SCORE, **overrides})
        return await MemoryEngine.open(settings, tmp_path, embedder=embedder)

    return factory


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    assert chroma_binary().exists(), "the chroma CLI (installed with chromadb) is missing next to this Python"
    server = ChromaServer(tmp_path / "chroma-server")
    yield server
    server.stop()
