"""The engine against a real ``chroma run`` server (HttpClient mode)."""

from __future__ import annotations

import pytest

from memory.cube import Owner
from memory.engine import NewMemory
from memory.errors import StoreUnavailable
from testing.processes import ChromaServer
from tests.memory.memory_helpers import EngineFactory

ALICE = Owner(user="alice")


def test_http_mode_round_trip_then_store_unavailable(open_engine: EngineFactory, chroma_server: ChromaServer) -> None:
    async def scenario() -> None:
        # coherence off: recall queries the store (with it, recall is served from the
        # process for up to memory.coherence.max_staleness_ms: tests/memory/test_coherence.py)
        engine = await open_engine(chroma_url=chroma_server.url, coherence={"enabled": False})
        await engine.ping()
        [cube] = await engine.add(ALICE, [NewMemory("User: my dog is called Biscuit", metadata={"a": [1, "é"]})])
        assert await engine.get(cube.id) == cube
        hits = (await engine.search("alice", "what's my dog's name?")).items
        assert [h.cube.id for h in hits] == [cube.id]

        chroma_server.stop()
        # Fails fast: every call reports the refused connection itself; none
        # waits out the store's deadline (a timeout as the cause would mean
        # the call hung until the timer fired).
        calls = (
            lambda: engine.ping(),
            lambda: engine.search("alice", "what's my dog's name?"),
            lambda: engine.add(ALICE, [NewMemory("User: another fact")]),
            lambda: engine.get(cube.id),
        )
        for call in calls:
            with pytest.raises(StoreUnavailable) as info:
                await call()
            assert not isinstance(info.value.__cause__, TimeoutError), info.value

    open_engine.run(scenario())


def test_unreachable_server_raises_store_unavailable_lazily(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine(chroma_url="http://127.0.0.1:9")  # opening does not connect
        with pytest.raises(StoreUnavailable):
            await engine.ping()
        with pytest.raises(StoreUnavailable):
            await engine.list("alice")

    open_engine.run(scenario())
