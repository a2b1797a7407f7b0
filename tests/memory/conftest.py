"""Fixtures for the memory engine tests: real Chroma, real embedder, offline.

Self-contained on purpose (no pytest-asyncio): tests drive coroutines with
``asyncio.run``. One Embedder is shared by the whole session because loading
the model takes seconds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from memory.embedder import Embedder
from memory.engine import MemoryEngine
from proxy.config import MemorySettings

T = TypeVar("T")

# The floor calibrated for all-MiniLM-L6-v2 (see memory/recall.py).
MIN_SCORE = 0.30


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def embedder() -> Iterator[Embedder]:
    shared = Embedder()
    asyncio.run(shared.warmup())
    yield shared
    shared.close()


EngineFactory = Callable[..., Awaitable[MemoryEngine]]


@pytest.fixture
def open_engine(embedder: Embedder, tmp_path: Path) -> EngineFactory:
    """``await open_engine(**settings)``: an engine on a fresh embedded store."""

    async def factory(**overrides: Any) -> MemoryEngine:
        settings = MemorySettings(**{"min_score": MIN_SCORE, **overrides})
        return await MemoryEngine.open(settings, tmp_path, embedder=embedder)

    return factory


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chroma_binary() -> Path:
    return Path(sys.executable).parent / "chroma"


class ChromaServer:
    def __init__(self, path: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [str(chroma_binary()), "run", "--path", str(path), "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
        )
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chroma run exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("chroma server did not become ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    if not chroma_binary().exists():
        pytest.skip("the chroma CLI is not installed next to this Python")
    server = ChromaServer(tmp_path / "chroma-server")
    yield server
    server.stop()
