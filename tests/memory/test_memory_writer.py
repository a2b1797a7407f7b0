"""The background turn writer (the journal's own tests are in test_journal.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import memory.writer as writer_module
from memory.cube import MemCube, Owner, Provenance
from memory.journal import Entry, Journal, journal_path
from memory.render import BLOCK_CLOSE, BLOCK_OPEN, strip_injected
from memory.writer import GATHER_BATCH, JournalWriter, take_next_at_once, turn_content
from tests.memory.memory_helpers import EngineFactory

ALICE = Owner(user="alice")
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
