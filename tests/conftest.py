"""Shared fixtures: real servers on loopback, the real embedder, the real store."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from bench.fake_upstream import FakeUpstream  # noqa: E402
from bench.serving import ServerThread  # noqa: E402


@pytest.fixture(scope="session")
def embedder() -> Any:
    """One real all-MiniLM-L6-v2 for the whole run (loading takes seconds)."""
    from memory.embedder import Embedder

    return Embedder()


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
def fake_upstream() -> Iterator[tuple[FakeUpstream, ServerThread]]:
    fake = FakeUpstream()
    with ServerThread(fake.app()) as server:
        yield fake, server


@pytest.fixture()
def upstream(fake_upstream: tuple[FakeUpstream, ServerThread]) -> FakeUpstream:
    fake, _ = fake_upstream
    fake.clear()
    return fake


@pytest.fixture()
def upstream_url(fake_upstream: tuple[FakeUpstream, ServerThread]) -> str:
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


def wait_for_memories(base_url: str, user: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Poll the management API until ``user`` holds at least ``count`` memories."""
    deadline = time.monotonic() + timeout
    while True:
        data = httpx.get(f"{base_url}/v1/memories", params={"user": user, "limit": 1000}).json()["data"]
        if len(data) >= count or time.monotonic() > deadline:
            return data
        time.sleep(0.05)
