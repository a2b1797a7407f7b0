"""The background turn writer."""

from __future__ import annotations

import asyncio
import logging

import pytest
from tests.memory.memory_helpers import EngineFactory, run

from memory.cube import Owner, Provenance
from memory.render import BLOCK_CLOSE, BLOCK_OPEN, strip_injected
from memory.writer import Turn, TurnWriter, turn_content

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


def test_full_queue_drops_without_blocking(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        release = asyncio.Event()
        written: list[Turn] = []

        async def slow_sink(batch: list[Turn]) -> None:
            await release.wait()
            written.extend(batch)

        writer = TurnWriter(slow_sink, maxsize=2, batch_size=1)
        turn = Turn(ALICE, "User: x", Provenance())
        accepted = [writer.submit(turn) for _ in range(2)]
        await asyncio.sleep(0)  # worker takes one: one slot frees
        accepted += [writer.submit(turn) for _ in range(3)]
        assert accepted == [True, True, True, False, False]
        assert writer.dropped == 2
        release.set()
        await writer.aclose()
        assert len(written) == 3
        assert not writer.submit(turn)

    with caplog.at_level(logging.WARNING, logger="memory.writer"):
        run(scenario())
    assert any("queue full" in r.message for r in caplog.records)


def test_sink_failure_is_logged_and_writer_continues(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        calls: list[int] = []

        async def flaky(batch: list[Turn]) -> None:
            calls.append(len(batch))
            if len(calls) == 1:
                raise RuntimeError("store down")

        writer = TurnWriter(flaky, maxsize=10, batch_size=1)
        writer.submit(Turn(ALICE, "User: a", Provenance()))
        await writer.flush()
        writer.submit(Turn(ALICE, "User: b", Provenance()))
        await writer.flush()
        assert (writer.failed, writer.written) == (1, 1)
        await writer.aclose()

    with caplog.at_level(logging.ERROR, logger="memory.writer"):
        run(scenario())
    assert any(r.exc_info and "store down" in str(r.exc_info[1]) for r in caplog.records)
