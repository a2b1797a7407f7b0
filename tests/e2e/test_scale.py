"""Large owners: a restart over 40,000 memories, and recall that never holds up the server.

The 40,000 rows come from :mod:`tests.bigstore` (written once per session
straight through the store's batch path, so the test stays fast); the
memories the assertions are about go through the HTTP API like any other.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

import memory.engine


def _memories(url: str, user: str, contents: list[str]) -> None:
    body = {"user": user, "memories": [{"content": c} for c in contents]}
    assert httpx.post(f"{url}/v1/memories", json=body, timeout=60).status_code == 201


def _search(url: str, user: str, query: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/memories/search", json={"user": user, "query": query}, timeout=120)


def _chat(url: str, user: str, mode: str, text: str, timeout: float = 60) -> httpx.Response:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": text}]}
    headers = {"X-Memory-User": user, "X-Memory": mode}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=timeout)


def test_restart_on_an_owner_with_40000_memories_then_search(make_proxy, big_store: tuple[Path, Any]) -> None:
    chroma, _ = big_store  # 40,000 memories of "big": one unpaged read of this owner fails
    first = make_proxy(memory={"chroma_path": str(chroma)})
    _memories(first.url, "big", ["My cat Zorblax only eats tuna from Brittany.", "I'm allergic to peanuts."])
    first.stop()

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
