"""Fixtures for the memory engine tests: real Chroma, real embedder, offline.

Self-contained on purpose (no pytest-asyncio): tests drive coroutines with
``open_engine.run`` (or ``asyncio.run``). The session's one Embedder comes
from ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memory.embedder import Embedder
from testing.processes import ChromaServer, chroma_binary
from tests.memory.memory_helpers import EngineFactory


@pytest.fixture
def open_engine(embedder: Embedder, tmp_path: Path) -> Iterator[EngineFactory]:
    """``await open_engine(**settings)`` inside ``open_engine.run(scenario())``."""
    factory = EngineFactory(embedder, tmp_path)
    yield factory
    left = len(factory.open)
    assert left == 0, f"{left} engine(s) opened outside open_engine.run() were never closed"


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    assert chroma_binary().exists(), "the chroma CLI (installed with chromadb) is missing next to this Python"
    server = ChromaServer(tmp_path / "chroma-server")
    yield server
    server.stop()
