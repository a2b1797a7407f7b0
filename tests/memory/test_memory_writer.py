"""The background turn writer (the journal's own tests are in test_journal.py)."""

from __future__ import annotations

from memory.cube import Owner, Provenance
from memory.render import BLOCK_CLOSE, BLOCK_OPEN, strip_injected
from memory.writer import turn_content
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
