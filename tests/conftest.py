"""Shared fixtures: real servers on loopback, the real embedder, the real store."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.environment import prepare_environment  # noqa: E402

prepare_environment()  # as the CLI does, before anything imports litellm or tiktoken

from testing.fake_openai import FakeOpenAI  # noqa: E402
from testing.serving import ServerThread  # noqa: E402

MEMORIES_TIMEOUT_S = 30.0


@pytest.fixture(scope="session")
def embedder() -> Iterator[Any]:
    """One real all-MiniLM-L6-v2 for the whole run (loading takes seconds)."""
    from memory.embedder import Embedder

    shared = Embedder()
    asyncio.run(shared.warmup())
    yield shared
    shared.close()


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged Gemma 3 270M GGUF, assembled once per run as the
    llama.cpp upstream does by default: into ``<data dir>/models/``."""
    from adapters.llamacpp_upstream import DEFAULT_MODEL_FILE, assemble_default_model

    return assemble_default_model(tmp_path_factory.mktemp("gemma-data") / "models" / DEFAULT_MODEL_FILE)


@pytest.fixture(scope="session")
def big_store_master(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> tuple[Path, Any]:
    """The session's one copy of :mod:`tests.bigstore` (40,000 memories), and their vectors."""
    import numpy as np

    from memory.encoding import encode
    from tests import bigstore

    root = tmp_path_factory.mktemp("big-store")
    vectors = asyncio.run(encode(embedder.embed, bigstore.TEXTS))
    np.save(root / "vectors.npy", vectors)
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    subprocess.run(
        [sys.executable, "-m", "tests.bigstore", str(root / "chroma"), str(root / "vectors.npy")],
        check=True, cwd=repo, env=env,
    )
    return root / "chroma", vectors


@pytest.fixture()
def big_store(big_store_master: tuple[Path, Any], tmp_path: Path) -> tuple[Path, Any]:
    """A copy of the 40,000-memory store of its own (path, the texts' vectors)."""
    master, vectors = big_store_master
    copy = tmp_path / "big-chroma"
    shutil.copytree(master, copy)
    return copy, vectors


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[tuple[FakeOpenAI, ServerThread]]:
    fake = FakeOpenAI()
    with ServerThread(fake.app()) as server:
        yield fake, server


@pytest.fixture()
def upstream(fake_upstream: tuple[FakeOpenAI, ServerThread]) -> Iterator[FakeOpenAI]:
    fake, _ = fake_upstream
    fake.clear()
    yield fake
    fake.clear()  # nothing scripted or held leaks into the next test


@pytest.fixture()
def upstream_url(fake_upstream: tuple[FakeOpenAI, ServerThread]) -> str:
    return f"{fake_upstream[1].url}/v1"


ProxyFactory = Callable[..., ServerThread]


@pytest.fixture()
def make_proxy(tmp_path: Path, embedder: Any, upstream_url: str) -> Iterator[ProxyFactory]:
    """Start a proxy on a real port: ``make_proxy(memory={...}, upstream={...})``."""
    from proxy.app import create_app
    from proxy.config import load_settings

    servers: list[ServerThread] = []

    def factory(**overrides: Any) -> ServerThread:
        upstream_overrides = {"base_url": upstream_url, "provider": "openai", **overrides.pop("upstream", {})}
        # Tests check behaviour, not speed: a generous recall deadline keeps a
        # loaded CI machine from turning recalls into "degraded" at random.
        memory_overrides = {"recall_deadline_ms": 10_000, **overrides.pop("memory", {})}
        settings = load_settings(
            data_dir=str(tmp_path / f"data{len(servers)}"),
            upstream=upstream_overrides,
            memory=memory_overrides,
            **overrides,
        )
        server = ServerThread(create_app(settings, embedder=embedder)).start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture()
def proxy(make_proxy: ProxyFactory) -> ServerThread:
    return make_proxy()


def list_memories(base_url: str, user: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    response = httpx.get(f"{base_url}/v1/memories", params={"user": user, "limit": 1000}, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def wait_for_memories(
    base_url: str,
    user: str,
    count: int,
    timeout: float = MEMORIES_TIMEOUT_S,
    headers: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Poll the management API until ``user`` holds at least ``count`` memories.

    Writes happen in the background after a reply, so tests wait for them;
    a wait that runs out is a failure, reported with what was stored.
    """
    return _poll_memories(
        base_url, user, lambda data: len(data) >= count, f"at least {count} memories", timeout, headers
    )


def memories_before_barrier(base_url: str, user: str) -> list[dict[str, Any]]:
    """What ``user`` had stored before a barrier turn, once the barrier is stored.

    Sends one memory-on chat turn as ``user`` and waits until it is stored.
    Writes are queued in order, so anything an earlier call queued has landed
    by then: an empty answer proves earlier calls stored nothing, with no
    sleep-and-hope.
    """
    marker = f"barrier-{uuid.uuid4().hex}"
    response = httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": "fake-model", "messages": [{"role": "user", "content": f"Note {marker}."}]},
        headers={"X-Memory-User": user, "X-Memory": "on"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    landed = _poll_memories(
        base_url, user, lambda data: any(marker in m["content"] for m in data), "the barrier turn", MEMORIES_TIMEOUT_S
    )
    return [m for m in landed if marker not in m["content"]]


def _poll_memories(
    base_url: str,
    user: str,
    done: Callable[[list[dict[str, Any]]], bool],
    expected: str,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        data = list_memories(base_url, user, headers)
        if done(data):
            return data
        if time.monotonic() > deadline:
            contents = [m["content"] for m in data]
            raise AssertionError(f"{user!r} still lacks {expected} after {timeout:.0f} s; stored: {contents}")
        time.sleep(0.05)
