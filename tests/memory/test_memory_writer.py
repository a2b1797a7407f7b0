"""The background turn writer (the journal's own tests are in test_journal.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

import memory.writer as writer_module
from memory.cube import MemCube, Owner, Provenance
from memory.engine import MemoryEngine
from memory.errors import StoreUnavailable
from memory.journal import Entry, Journal, journal_path
from memory.render import BLOCK_CLOSE, BLOCK_OPEN, strip_injected
from memory.writer import GATHER_BATCH, JournalWriter, take_next_at_once, turn_content
from tests.memory.memory_helpers import EngineFactory

ALICE = Owner(user="alice")
PROV = Provenance(request_id="req_1", model="m", roles=("user", "assistant"))
BLOCK = f"{BLOCK_OPEN}\nReference data...\n- [2023-01-01] User: I'm allergic to peanuts.\n{BLOCK_CLOSE}"


def test_strip_injected() -> None:
    assert strip_injected(f"{BLOCK}\n\nWhat's for dinner?") == "What's for dinner?"
    assert strip_injected(f"Hi {BLOCK} there {BLOCK} end") == "Hi  there  end"
    assert strip_injected(f"keep this {BLOCK_OPEN} unclosed tail") == "keep this"
    assert strip_injected("plain text") == "plain text"


def test_turn_content() -> None:
    assert turn_content("hi", "hello") == "User: hi\nAssistant: hello"
    assert turn_content(BLOCK, "  ") == ""
    assert turn_content("", "only reply") == "Assistant: only reply"


def test_remember_turn_strips_block_and_flush_waits(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        prov = Provenance(request_id="req_9", model="m", roles=("user", "assistant"))
        engine.remember_turn(ALICE, f"{BLOCK}\nI adopted a parrot named Kiwi.", "Congratulations on Kiwi!", prov)
        engine.remember_turn(ALICE, BLOCK, "", prov)  # empty once stripped: skipped
        engine.remember_turn(Owner("bob"), "I like jazz", "Nice.", prov)
        await engine.flush()
        [turn] = (await engine.list("alice")).items
        assert turn.content == "User: I adopted a parrot named Kiwi.\nAssistant: Congratulations on Kiwi!"
        assert turn.kind == "episodic" and turn.provenance == prov and turn.event_time is not None
        assert BLOCK_OPEN not in turn.content
        assert len((await engine.list("bob")).items) == 1
        hits = (await engine.search("alice", "what's my parrot called?")).items
        assert [h.cube.id for h in hits] == [turn.id]

    open_engine.run(scenario())


def test_the_writer_embeds_the_next_batch_while_one_is_being_stored(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine(write_linger_ms=0, write_pipeline="on")
        stored_open = asyncio.Event()
        adds: list[list[str]] = []
        embedded: list[list[str]] = []
        real_add, real_embed = engine.store.add, engine.embedder.embed_memories

        async def held_add(cubes: Any, embeddings: Any) -> None:
            adds.append([c.content for c in cubes])
            await stored_open.wait()
            await real_add(cubes, embeddings)

        async def counted_embed(texts: list[str]) -> Any:
            embedded.append(list(texts))
            return await real_embed(texts)

        engine.store.add = held_add  # type: ignore[method-assign]
        engine.embedder.embed_memories = counted_embed  # type: ignore[method-assign]
        try:
            await held(engine, stored_open, adds, embedded)
        finally:
            stored_open.set()
            del engine.embedder.embed_memories  # the embedder is shared by the tests

    async def held(engine: MemoryEngine, stored_open: asyncio.Event, adds: list[Any], embedded: list[Any]) -> None:
        await engine.remember(ALICE, "I keep bees.", "Lovely.", PROV)
        deadline = time.monotonic() + 30
        while not adds:  # the first batch is being stored (held)
            assert time.monotonic() < deadline, "the first batch never reached the store"
            await asyncio.sleep(0.01)
        for i in range(3):
            await engine.remember(Owner(f"user{i}"), f"My number is {i}.", "Noted.", PROV)
        while len(embedded) < 2:  # the next batch is embedded while the first is still held
            assert time.monotonic() < deadline, "the next batch was not embedded while one was stored"
            await asyncio.sleep(0.01)
        assert len(adds) == 1 and engine.journal.depth == 4  # nothing is completed before its store
        in_flight = {e.cube.content for e in engine.writer.in_flight}
        assert set(adds[0]) | set(embedded[1]) <= in_flight  # both batches held by the writer (erase sees them)
        stored_open.set()
        await engine.flush()
        assert engine.journal.depth == 0 and engine.writer.in_flight == []
        assert [len((await engine.list(u)).items) for u in ("alice", "user0", "user1", "user2")] == [1, 1, 1, 1]
        assert sum(len(a) for a in adds) == 4  # each turn stored once
        assert engine.writer.written == 4

    open_engine.run(scenario())


def test_a_pipelined_writer_retries_failed_batches_and_stores_each_turn_once(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine(write_linger_ms=0, write_pipeline="on")
        engine.writer._backoff_s = 0.05
        failures = [2]
        real_add = engine.store.add

        async def failing_add(cubes: Any, embeddings: Any) -> None:
            if failures[0] > 0:
                failures[0] -= 1
                raise StoreUnavailable("the memory store failed: injected")
            await real_add(cubes, embeddings)

        engine.store.add = failing_add  # type: ignore[method-assign]
        for i in range(6):
            await engine.remember(Owner(f"user{i % 3}"), f"Fact number {i}.", "Noted.", PROV)
        await engine.flush()
        while engine.journal.depth > 0 or engine.writer.failing:  # flush returns while failing: wait out the retry
            await engine.flush()
            await asyncio.sleep(0.05)
        contents = sorted([c.content for u in ("user0", "user1", "user2") for c in (await engine.list(u)).items])
        assert contents == sorted(f"User: Fact number {i}.\nAssistant: Noted." for i in range(6))
        assert engine.writer.failed >= 1 and not engine.writer.failing and engine.writer.in_flight == []

    open_engine.run(scenario())


def test_after_a_batch_the_writer_gathers_again_rather_than_taking_turns_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Turns that came while a batch was stored wait for the gather (one store call
    for them all) unless a full :data:`GATHER_BATCH` is already waiting."""
    monkeypatch.setattr(writer_module, "LULL_S", 1.0)  # the gather ends after a 1 s lull (or 10 s)
    monkeypatch.setattr(writer_module, "MAX_GATHER_S", 10.0)
    owner = Owner(user="alice")
    turns = [Entry(MemCube(id=f"m_alice_{i:04d}", owner=owner, content=f"turn {i}"), "turn") for i in range(4)]
    batches: list[list[str]] = []
    release = asyncio.Event()

    async def sink(entries: list[Entry]) -> list[Entry]:
        batches.append([e.cube.id for e in entries])
        if len(batches) == 1:
            await release.wait()  # the first batch is being stored while turns 1 and 2 come
        return entries

    async def scenario() -> None:
        journal = await Journal(journal_path(tmp_path)).open()
        writer = JournalWriter(journal, sink, linger_s=0.05)
        try:
            await journal.append(turns[:1])
            writer.notify()
            while not batches:
                await asyncio.sleep(0.01)
            await journal.append(turns[1:3])
            writer.notify()
            release.set()
            while writer.written < 1:
                await asyncio.sleep(0.001)
            await journal.append(turns[3:])  # came after the first batch was stored
            writer.notify()
            await writer.flush()
        finally:
            await writer.aclose()
            await journal.aclose()

    asyncio.run(scenario())
    ids = [t.cube.id for t in turns]
    assert batches == [ids[:1], ids[1:]]  # not [1, 2] then [3]: one store call for the three


def test_a_backlog_is_taken_at_once_and_a_writer_without_linger_never_waits() -> None:
    assert take_next_at_once(GATHER_BATCH, 0.1)
    assert not take_next_at_once(GATHER_BATCH - 1, 0.1)
    assert take_next_at_once(0, 0.0)


def test_a_pipelined_writer_stays_failing_until_a_batch_is_stored(open_engine: EngineFactory) -> None:
    """Embedding a batch again is not a recovery: only a stored batch clears ``failing``."""

    async def scenario() -> None:
        engine = await open_engine(write_linger_ms=0, write_pipeline="on")
        engine.writer._backoff_s = engine.writer._max_backoff_s = 0.02
        real_add = engine.store.add

        seen: list[bool] = []  # at each retry's store: still failing?

        async def broken(cubes: Any, embeddings: Any) -> None:
            if engine.writer.failed:
                seen.append(engine.writer.failing)
            raise StoreUnavailable("the memory store failed: disk full (injected)")

        engine.store.add = broken  # type: ignore[method-assign]
        await engine.remember(ALICE, "I play the oboe.", "Nice.", PROV)
        deadline = time.monotonic() + 30
        while engine.writer.failed < 3:  # several retries, each embedding the batch again
            assert time.monotonic() < deadline, "the writer did not retry"
            await asyncio.sleep(0.005)
        assert seen and all(seen)
        assert await engine.remember(ALICE, "I also sing.", "Lovely.", PROV) == "degraded"
        engine.store.add = real_add  # type: ignore[method-assign]
        while engine.writer.failing or engine.journal.depth > 0:
            assert time.monotonic() < deadline + 30, "the writer never recovered"
            await asyncio.sleep(0.02)
        assert len((await engine.list("alice")).items) == 2

    open_engine.run(scenario())


def test_write_pipeline_auto_is_on_unless_chroma_runs_in_this_process(tmp_path: Path) -> None:
    from memory.chroma_store import ChromaStore
    from memory.engine import pipelined

    inline = ChromaStore.embedded(tmp_path / "chroma")
    remote = ChromaStore.remote("http://127.0.0.1:9")  # never connected: only its kind matters
    assert not pipelined("auto", inline) and pipelined("auto", remote)
    assert pipelined("on", inline) and not pipelined("off", remote)
