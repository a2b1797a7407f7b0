"""Crash safety of the real server: ``kill -9`` right after acknowledged work,
restart on the same data dir: nothing acknowledged is lost, nothing is duplicated."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from openai import AsyncOpenAI

from testing.processes import ServeProcess, stored_contents

TURNS = 60
USERS = 4
# a slow writer: most acknowledged turns are still only journaled when the server dies
SLOW_WRITER = {"MEMPROXY_MEMORY__WRITE_LINGER_MS": "3000"}


def wait_for_replay(url: str, timeout_s: float = 120.0) -> None:
    """Until the journal is empty (every replayed write is in the store)."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = httpx.get(f"{url}/readyz", timeout=10).json()
        if body.get("writes", {}).get("journal_depth") == 0:
            return
        assert time.monotonic() < deadline, f"the journal was not replayed within {timeout_s:.0f} s: {body}"
        time.sleep(0.1)


def test_kill_9_after_acknowledged_chat_replies_loses_and_duplicates_nothing(
    tmp_path: Path, upstream_url: str, upstream: Any
) -> None:
    data_dir = tmp_path / "data"
    run = uuid.uuid4().hex[:8]
    server = ServeProcess("--upstream-base-url", upstream_url, data_dir=data_dir, env=SLOW_WRITER)
    acknowledged: list[tuple[str, str]] = []  # (user, the fact)

    async def one(client: AsyncOpenAI, i: int) -> None:
        user = f"crash-{run}-{i % USERS}"
        fact = f"fact {run} number {i}"
        messages = [{"role": "user", "content": f"Remember {fact}."}]
        headers = {"X-Memory-User": user}
        if i % 2:  # streamed: the turn is journaled before the final [DONE]
            stream = await client.chat.completions.create(
                model="fake-model", messages=messages, stream=True, extra_headers=headers
            )
            async for _ in stream:
                pass
        else:
            await client.chat.completions.create(model="fake-model", messages=messages, extra_headers=headers)
        acknowledged.append((user, fact))

    async def drive() -> None:
        async with AsyncOpenAI(base_url=f"{server.url}/v1", api_key="sk-crash", max_retries=0) as client:
            await asyncio.gather(*(one(client, i) for i in range(TURNS)))

    try:
        asyncio.run(drive())
        depth_at_kill = httpx.get(f"{server.url}/readyz", timeout=10).json()["writes"]["journal_depth"]
    finally:
        server.kill()  # SIGKILL right after the last acknowledged reply
    assert len(acknowledged) == TURNS
    assert depth_at_kill > 0, "every turn was already stored: the crash proved nothing"

    restarted = ServeProcess("--upstream-base-url", upstream_url, data_dir=data_dir)
    try:
        wait_for_replay(restarted.url)
        for u in range(USERS):
            user = f"crash-{run}-{u}"
            counts = collections.Counter(stored_contents(restarted.url, user))
            expected = [fact for owner, fact in acknowledged if owner == user]
            for fact in expected:
                matching = [c for c in counts if f"Remember {fact}." in c]
                assert len(matching) == 1 and counts[matching[0]] == 1, (fact, counts)
            assert sum(counts.values()) == len(expected)
    finally:
        restarted.stop()


def test_kill_9_in_a_post_series_then_retry_with_idempotency_keys(tmp_path: Path, upstream_url: str) -> None:
    data_dir = tmp_path / "data"
    user = f"series-{uuid.uuid4().hex[:8]}"
    batches = [[f"{user} batch {b} item {i}" for i in range(20 if b < 5 else 800)] for b in range(6)]
    keys = [f"key-{b}" for b in range(len(batches))]

    def post(url: str, b: int) -> httpx.Response:
        body = {"user": user, "memories": [{"content": c} for c in batches[b]]}
        return httpx.post(f"{url}/v1/memories", json=body, headers={"Idempotency-Key": keys[b]}, timeout=300)

    server = ServeProcess("--upstream-base-url", upstream_url, data_dir=data_dir)
    first_answers: dict[int, list[str]] = {}
    try:
        for b in range(5):
            response = post(server.url, b)
            assert response.status_code == 201, response.text
            first_answers[b] = [m["id"] for m in response.json()["data"]]
        # the big last batch is killed midway (its items are being embedded / stored)
        in_flight = threading.Thread(target=lambda: _swallow(post, server.url, 5), daemon=True)
        in_flight.start()
        time.sleep(1.0)
    finally:
        server.kill()
    in_flight.join(timeout=30)

    restarted = ServeProcess("--upstream-base-url", upstream_url, data_dir=data_dir)
    try:
        for b in range(len(batches)):  # the client retries everything it is unsure of, with the same keys
            response = post(restarted.url, b)
            assert response.status_code == 201, response.text
            ids = [m["id"] for m in response.json()["data"]]
            if b in first_answers:
                assert ids == first_answers[b]  # the same answer, nothing re-added
        wait_for_replay(restarted.url)
        counts = collections.Counter(stored_contents(restarted.url, user))
        expected = [c for batch in batches for c in batch]
        assert sorted(counts) == sorted(expected)
        assert set(counts.values()) == {1}
    finally:
        restarted.stop()


def _swallow(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except httpx.HTTPError:
        pass  # the server died under it: that is the point
