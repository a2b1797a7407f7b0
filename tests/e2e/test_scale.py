"""Large owners: a restart over 40,000 memories, and recall that never holds up the server.

The 40,000 rows are written straight through the store's batch path (what
``POST /v1/memories`` ends in) so the test stays fast: their vectors are the
real embeddings of a few sentences, reused row by row (each row's text is
its sentence plus a row number), written without the standing-fact fields,
as rows from before those were stored. The memories the assertions are about
go through the HTTP API like any other.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import memory.engine
from memory.chroma_store import ChromaStore
from memory.encoding import encode
from tests.memory.memory_helpers import bulk_cubes, cycled

BIG = 40_000
FILLER = [
    "We talked about the weather and the weekend plans",
    "The train was late again this morning",
    "I finished reading a long novel about sailors",
    "Our team reviewed the quarterly roadmap",
    "The garden needs watering twice a week in summer",
]


def _memories(url: str, user: str, contents: list[str]) -> None:
    body = {"user": user, "memories": [{"content": c} for c in contents]}
    assert httpx.post(f"{url}/v1/memories", json=body, timeout=60).status_code == 201


def _search(url: str, user: str, query: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/memories/search", json={"user": user, "query": query}, timeout=120)


def _chat(url: str, user: str, mode: str, text: str, timeout: float = 60) -> httpx.Response:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": text}]}
    headers = {"X-Memory-User": user, "X-Memory": mode}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=timeout)


def _bulk_write(path: Path, embedder: Any, user: str, count: int) -> None:
    async def write() -> None:
        vectors = await encode(embedder.embed, FILLER)
        store = ChromaStore.embedded(path)
        await store.add(bulk_cubes(user, count, FILLER), cycled(vectors, count))
        await store.aclose()

    asyncio.run(write())


def test_restart_on_an_owner_with_40000_memories_then_search(make_proxy, tmp_path: Path, embedder: Any) -> None:
    chroma = tmp_path / "chroma"
    first = make_proxy(memory={"chroma_path": str(chroma)})
    _memories(first.url, "big", ["My cat Zorblax only eats tuna from Brittany.", "I'm allergic to peanuts."])
    first.stop()
    _bulk_write(chroma, embedder, "big", BIG)  # 32,767+ rows: one unpaged read of this owner fails

    restarted = make_proxy(memory={"chroma_path": str(chroma)})
    response = _search(restarted.url, "big", "What does Zorblax eat?")
    assert response.status_code == 200
    assert "Zorblax" in response.json()["data"][0]["content"]
    listed = httpx.get(f"{restarted.url}/v1/memories", params={"user": "big", "limit": 1000}, timeout=60).json()
    assert len(listed["data"]) == 1000 and listed["has_more"]
    chat = _chat(restarted.url, "big", "read", "Tell me about Zorblax and his tuna.")
    assert chat.status_code == 200 and chat.headers["x-memory-status"] == "ok"


def test_a_slow_recall_holds_up_neither_healthz_nor_other_chats(make_proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ranking step is held (a gate inside the recall's CPU work): were it
    on the event loop, nothing else could be answered until it let go."""
    entered, gate = threading.Event(), threading.Event()
    real = memory.engine.rank_view

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        gate.wait(60)
        return real(*args, **kwargs)

    proxy = make_proxy(memory={"recall_deadline_ms": 500})
    _memories(proxy.url, "slow", ["I'm training for the Porto half marathon in May."])
    monkeypatch.setattr(memory.engine, "rank_view", held)
    slow: dict[str, httpx.Response] = {}
    caller = threading.Thread(target=lambda: slow.update(r=_chat(proxy.url, "slow", "on", "Any tips for my marathon?")))
    caller.start()
    try:
        assert entered.wait(30), "the recall never reached its ranking step"
        health = httpx.get(f"{proxy.url}/healthz", timeout=10)
        other = _chat(proxy.url, "someone-else", "off", "What is 17 times 23?", timeout=10)
        assert not gate.is_set()  # answered while the recall was still held
        assert health.status_code == 200 and other.status_code == 200
        assert other.headers["x-memory-status"] == "off"
        caller.join(30)
        assert not caller.is_alive() and not gate.is_set()  # the chat came back while its recall still ran
        assert slow["r"].status_code == 200 and slow["r"].headers["x-memory-status"] == "degraded"
    finally:
        gate.set()
        caller.join(30)
    found = _search(proxy.url, "slow", "Any tips for my marathon?").json()["data"]
    assert found and "marathon" in found[0]["content"]  # the held owner recovers once its recall ends
