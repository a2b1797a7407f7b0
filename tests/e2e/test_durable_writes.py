"""Durable writes over HTTP: Idempotency-Key, forget receipts, degraded while the store cannot be written."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from memory.errors import StoreUnavailable
from testing.serving import ServerThread


def engine_of(server: ServerThread) -> Any:
    return server.server.config.app.state.services.engine


def chat(url: str, user: str, text: str) -> httpx.Response:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": text}]}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"X-Memory-User": user}, timeout=30)
    assert response.status_code == 200, response.text
    return response


def test_post_memories_with_an_idempotency_key_answers_once(proxy: ServerThread) -> None:
    body = {"user": "idem", "memories": [{"content": "I live in Lyon."}, {"content": "I cycle to work."}]}
    first = httpx.post(f"{proxy.url}/v1/memories", json=body, headers={"Idempotency-Key": "a1"}, timeout=30)
    again = httpx.post(f"{proxy.url}/v1/memories", json=body, headers={"Idempotency-Key": "a1"}, timeout=30)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    listed = httpx.get(f"{proxy.url}/v1/memories", params={"user": "idem"}, timeout=30).json()["data"]
    assert len(listed) == 2
    other = {**body, "memories": [{"content": "Something else."}]}
    conflict = httpx.post(f"{proxy.url}/v1/memories", json=other, headers={"Idempotency-Key": "a1"}, timeout=30)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_key_reused"


def test_forget_returns_a_receipt(proxy: ServerThread) -> None:
    httpx.post(f"{proxy.url}/v1/memories", json={"user": "gone", "memories": [{"content": "x"}]}, timeout=30)
    receipt = httpx.delete(f"{proxy.url}/v1/users/gone/memories", timeout=30).json()
    assert receipt["object"] == "user.memories.deleted" and receipt["user"] == "gone" and receipt["deleted"] == 1
    removed = receipt["removed"]
    assert removed["store"] == 1 and removed["journal"] == 0 and "lexical" in removed["caches"]
    assert set(removed) >= {"store", "journal", "queued", "caches", "kv_files", "scheduler"}


def test_a_store_that_cannot_be_written_is_degraded_and_not_ready_then_recovers(proxy: ServerThread) -> None:
    engine = engine_of(proxy)
    engine.writer._backoff_s = 0.05
    real_add = engine.store.add

    async def broken(*args: Any) -> None:
        raise StoreUnavailable("the memory store failed: disk full (injected)")

    engine.store.add = broken
    try:
        chat(proxy.url, "dora", "I play the oboe.")
        deadline = time.monotonic() + 10
        while httpx.get(f"{proxy.url}/readyz", timeout=10).status_code != 503:
            assert time.monotonic() < deadline, "/readyz never reported the failing writer"
            time.sleep(0.05)
        ready = httpx.get(f"{proxy.url}/readyz", timeout=10).json()
        assert ready["writes"]["status"] == "failing" and "disk full" in ready["writes"]["error"]
        assert ready["writes"]["journal_depth"] >= 1
        assert chat(proxy.url, "dora", "I also sing.").headers["X-Memory-Status"] == "degraded"
    finally:
        engine.store.add = real_add
    deadline = time.monotonic() + 30
    while True:
        ready = httpx.get(f"{proxy.url}/readyz", timeout=10)
        if ready.status_code == 200 and ready.json()["writes"]["journal_depth"] == 0:
            break
        assert time.monotonic() < deadline, f"the writer never recovered: {ready.text}"
        time.sleep(0.05)
    stored = httpx.get(f"{proxy.url}/v1/memories", params={"user": "dora"}, timeout=30).json()["data"]
    assert sorted(m["content"].split("\n")[0] for m in stored) == ["User: I also sing.", "User: I play the oboe."]
    assert chat(proxy.url, "dora", "Hello").headers["X-Memory-Status"] == "ok"


def test_a_full_backlog_holds_a_chat_before_its_recall_then_journals_it_late(make_proxy: Any) -> None:
    server = make_proxy(memory={"write_queue_size": 1, "write_backpressure_ms": 200, "write_linger_ms": 0})
    engine = engine_of(server)
    real_add = engine.store.add
    opened = False

    async def held(*args: Any) -> None:  # the writer cannot store anything until opened
        while not opened:
            await asyncio.sleep(0.01)
        await real_add(*args)

    engine.store.add = held
    try:
        assert chat(server.url, "erin", "I grow tomatoes.").headers["X-Memory-Status"] == "ok"  # room: no wait
        late = chat(server.url, "erin", "I also grow basil.")  # the backlog is full: no room within 200 ms
        assert late.headers["X-Memory-Status"] == "degraded"
        assert engine.journal.depth == 2  # journaled anyway (the one the writer holds counts), never dropped
    finally:
        opened = True
    deadline = time.monotonic() + 30
    while engine.journal.depth > 0 or engine.writer.in_flight:
        assert time.monotonic() < deadline, "the writer never caught up"
        time.sleep(0.05)
    stored = httpx.get(f"{server.url}/v1/memories", params={"user": "erin"}, timeout=30).json()["data"]
    assert len(stored) == 2
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'memproxy_turn_writes_total{status="degraded"} 1.0' in metrics


def test_a_request_that_waited_too_long_for_its_recall_goes_on_without_memory(make_proxy: Any) -> None:
    server = make_proxy(memory={"recall_queue_ms": 50})
    gate = server.server.config.app.state.services.pipeline.gate
    gate.running = int(gate.limit)  # every place taken (by recalls that never finish)
    response = chat(server.url, "fred", "What do I grow?")
    assert response.headers["X-Memory-Status"] == "degraded"
    assert gate.shed == 1 and gate.waiting == 0
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert 'memproxy_memory_degraded_total{cause="overload"} 1.0' in metrics
    gate.running = 0
    assert chat(server.url, "fred", "What do I grow?").headers["X-Memory-Status"] == "ok"
