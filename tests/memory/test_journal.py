"""Durable writes: the journal, replay, exactly-once, backpressure, retries, prompt forgetting."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from memory.cube import Owner, Provenance
from memory.engine import IdempotencyConflict, MemoryEngine, NewMemory
from memory.errors import MemoryNotFound, StoreUnavailable
from memory.journal import Entry, Journal, journal_path
from tests.memory.memory_helpers import EngineFactory

ALICE = Owner(user="alice")
BOB = Owner(user="bob")
PROV = Provenance(request_id="req_1", model="m", roles=("user", "assistant"))


async def contents(engine: MemoryEngine, user: str) -> list[str]:
    return [c.content for c in (await engine.list(user, limit=1000)).items]


class Gate:
    """Wraps a store's ``add``: blocks while closed, fails while ``failures`` > 0."""

    def __init__(self, engine: MemoryEngine, *, closed: bool = False, failures: int = 0) -> None:
        self.real = engine.store.add
        self.open = asyncio.Event()
        if not closed:
            self.open.set()
        self.failures = failures
        self.calls = 0
        engine.store.add = self  # type: ignore[method-assign]

    async def __call__(self, cubes: Any, embeddings: Any) -> None:
        self.calls += 1
        await self.open.wait()
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable("the memory store failed: injected")
        await self.real(cubes, embeddings)


def test_a_remembered_turn_is_journaled_before_remember_returns(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        Gate(engine, closed=True)  # the store never gets it in this process
        assert await engine.remember(ALICE, "I keep bees.", "Lovely.", PROV) == "ok"
        assert engine.journal.durable and journal_path(open_engine.data_dir).is_file()
        probe = Journal(journal_path(open_engine.data_dir))  # another reader sees it on disk
        assert await probe.pending_count("alice") == 1
        await probe.aclose()
        assert await engine.remember(ALICE, "", "", PROV) == "skipped"
        engine.writer._closed = True  # this "process" never writes it; no need to wait for the stuck batch

    open_engine.run(scenario())


def test_unwritten_turns_are_replayed_at_the_next_start_exactly_once(open_engine: EngineFactory) -> None:
    async def first() -> None:
        engine = await open_engine()
        gate = Gate(engine)
        real_complete = engine.journal.complete

        async def crash_before_complete(ids: Any) -> None:  # stored, but the process "dies" before dropping them
            raise RuntimeError("killed")

        engine.journal.complete = crash_before_complete  # type: ignore[method-assign]
        for i in range(5):
            await engine.remember(ALICE, f"Fact number {i}.", "Noted.", PROV)
        deadline = time.monotonic() + 30
        while not await contents(engine, "alice"):
            assert time.monotonic() < deadline, "nothing reached the store"
            await asyncio.sleep(0.05)
        gate.open.clear()  # nothing more reaches the store
        engine.journal.complete = real_complete  # type: ignore[method-assign]
        assert gate.calls >= 1 and 0 < len(await contents(engine, "alice")) <= 5
        assert await engine.journal.pending_count("alice") == 5  # stored or not, all still journaled

    async def second() -> None:
        engine = await open_engine()  # the same data dir: replays the journal
        await engine.flush()
        stored = await contents(engine, "alice")
        assert sorted(stored) == sorted(f"User: Fact number {i}.\nAssistant: Noted." for i in range(5))
        assert engine.journal.depth == 0

    open_engine.run(first())
    open_engine.run(second())


def test_a_full_backlog_is_backpressure_never_a_drop(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine(write_queue_size=2, write_backpressure_ms=100, write_linger_ms=0)
        gate = Gate(engine, closed=True)
        statuses = [await engine.remember(ALICE, f"Turn {i}", "ok", PROV) for i in range(5)]
        assert statuses[:2] == ["ok", "ok"] and set(statuses[3:]) == {"degraded"}
        assert engine.journal.depth >= 4  # all journaled (one may be in the writer's hands)
        gate.open.set()
        await engine.flush()
        assert len(await contents(engine, "alice")) == 5

    open_engine.run(scenario())


def test_store_failures_keep_turns_journaled_and_retry_with_backoff(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine(write_linger_ms=0)
        engine.writer._backoff_s = 0.05
        gate = Gate(engine, failures=3)
        assert await engine.remember(ALICE, "My cat is Tom.", "Hi Tom.", PROV) == "ok"
        deadline = time.monotonic() + 10
        while not engine.writer.failing and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert engine.write_status() is not None and "injected" in engine.write_status()
        assert await engine.remember(ALICE, "My dog is Rex.", "Hi Rex.", PROV) == "degraded"
        while gate.failures > 0 or engine.journal.depth > 0:
            assert time.monotonic() < deadline + 10, "the writer never recovered"
            await asyncio.sleep(0.02)
        await engine.flush()
        assert engine.write_status() is None
        assert sorted(await contents(engine, "alice")) == [
            "User: My cat is Tom.\nAssistant: Hi Tom.",
            "User: My dog is Rex.\nAssistant: Hi Rex.",
        ]

    open_engine.run(scenario())


def test_forget_is_prompt_and_covers_journaled_turns(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine(write_linger_ms=0)
        await engine.add(ALICE, [NewMemory("Alice likes tea.")])
        gate = Gate(engine, closed=True)  # the writer is stuck on the store
        for i in range(20):
            await engine.remember(BOB if i % 2 else ALICE, f"Turn {i}", "ok", PROV)
        started = time.monotonic()
        receipt = await asyncio.wait_for(engine.erase("alice"), timeout=5)
        assert time.monotonic() - started < 5
        assert receipt.store == 1 and receipt.journal + receipt.queued >= 10 and receipt.deleted >= 10
        assert "lexical" in receipt.caches
        assert await engine.journal.pending_count("alice") == 0
        gate.open.set()
        await engine.flush()
        assert await contents(engine, "alice") == []
        assert len(await contents(engine, "bob")) == 10

    open_engine.run(scenario())


def test_delete_removes_a_memory_still_journaled(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine(write_linger_ms=0)
        gate = Gate(engine, closed=True)
        await engine.remember(ALICE, "first", "ok", PROV)
        await engine.remember(ALICE, "second", "ok", PROV)
        await asyncio.sleep(0.1)
        pending = [e.cube.id for e in await engine.journal.next_unclaimed(10)]
        await engine.delete(pending[-1])
        with pytest.raises(MemoryNotFound):
            await engine.delete(pending[-1])
        gate.open.set()
        await engine.flush()
        assert await contents(engine, "alice") == ["User: first\nAssistant: ok"]

    open_engine.run(scenario())


def test_idempotent_add_returns_the_first_answer_and_never_duplicates(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        items = [NewMemory(f"Item {i}") for i in range(3)]
        first = await engine.add(ALICE, items, idempotency_key="k1", request_hash="h")
        again = await engine.add(ALICE, items, idempotency_key="k1", request_hash="h")
        assert [c.to_dict() for c in again] == [c.to_dict() for c in first]
        assert len(await contents(engine, "alice")) == 3
        with pytest.raises(IdempotencyConflict):
            await engine.add(ALICE, items, idempotency_key="k1", request_hash="other")
        # keys are per user
        assert len(await engine.add(BOB, items, idempotency_key="k1", request_hash="h")) == 3

    open_engine.run(scenario())


def test_an_add_killed_midway_is_completed_without_duplicates(open_engine: EngineFactory) -> None:
    items = [NewMemory(f"Batch item {i}") for i in range(6)]
    answer: list[str] = []

    async def first() -> None:
        engine = await open_engine()
        cubes = [engine._build(ALICE, item, PROV) for item in items]
        answer.extend(c.id for c in cubes)
        entries = [Entry(c, "api", "alice\x00k2") for c in cubes]
        # what add() does, up to a crash after half the store write
        await engine.journal.begin_batch("alice\x00k2", "alice", "h", [{"id": c.id, "document": c.content, "meta": __import__("memory.codec", fromlist=["x"]).to_metadata(c)} for c in cubes], entries)
        await engine._store_new(cubes[:3])
        await engine.writer.aclose()  # the process dies: no background replay in this one

    async def second() -> None:
        engine = await open_engine()
        again = await engine.add(ALICE, items, idempotency_key="k2", request_hash="h")
        assert [c.id for c in again] == answer
        await engine.flush()
        stored = await contents(engine, "alice")
        assert sorted(stored) == sorted(f"Batch item {i}" for i in range(6))

    open_engine.run(first())
    open_engine.run(second())
