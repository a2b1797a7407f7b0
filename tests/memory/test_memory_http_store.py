"""The engine against a real ``chroma run`` server (HttpClient mode)."""

from __future__ import annotations

import time

import pytest
from tests.memory.memory_helpers import ChromaServer, EngineFactory, run

from memory.cube import Owner
from memory.engine import NewMemory
from memory.errors import StoreUnavailable

ALICE = Owner(user="alice")


def test_http_mode_round_trip_then_store_unavailable(open_engine: EngineFactory, chroma_server: ChromaServer) -> None:
    async def scenario() -> None:
        engine = await open_engine(chroma_url=chroma_server.url)
        await engine.ping()
        [cube] = await engine.add(ALICE, [NewMemory("User: my dog is called Biscuit", metadata={"a": [1, "é"]})])
        assert await engine.get(cube.id) == cube
        hits = (await engine.search("alice", "what's my dog's name?")).items
        assert [h.cube.id for h in hits] == [cube.id]

        chroma_server.stop()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await engine.ping()
        with pytest.raises(StoreUnavailable):
            await engine.search("alice", "what's my dog's name?")
        with pytest.raises(StoreUnavailable):
            await engine.add(ALICE, [NewMemory("User: another fact")])
        with pytest.raises(StoreUnavailable):
            await engine.get(cube.id)
        assert time.monotonic() - started < 15  # fails fast, never hangs
        await engine.aclose()

    run(scenario())


def test_unreachable_server_raises_store_unavailable_lazily(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine(chroma_url="http://127.0.0.1:9")  # opening does not connect
        with pytest.raises(StoreUnavailable):
            await engine.ping()
        with pytest.raises(StoreUnavailable):
            await engine.list("alice")
        await engine.aclose()

    run(scenario())
