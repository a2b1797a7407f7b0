"""Add / get / update / delete / forget / list through the engine facade."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from memory.cube import Owner, Provenance, owner_key
from memory.engine import MemoryPatch, NewMemory
from memory.errors import InvalidMemory, MemoryNotFound
from tests.memory.memory_helpers import EngineFactory

ALICE = Owner(user="alice", session="s1")

METADATA = {
    "nested": {"list": [1, 2.5, {"deep": [True, None, "x"]}], "empty": {}},
    "unicode": "café ☕ 日本語 🚀",
    "float": 0.1 + 0.2,
    "big": 2**53 + 1,
    "negative": -1.5e-300,
    "list": ["a", 1, None, False],
}


def test_metadata_and_fields_round_trip(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        when = datetime(2023, 5, 8, 9, 30, tzinfo=UTC)
        prov = Provenance(request_id="req_1", model="m", roles=("api",))
        [cube] = await engine.add(
            ALICE,
            [NewMemory("Prefers tea ☕ over coffee", kind="preference", metadata=METADATA, event_time=when,
                       session="s2", source_ids=("a", "b"))],
            provenance=prov,
        )
        got = await engine.get(cube.id)
        assert got == cube
        assert got.metadata == METADATA
        assert got.owner == Owner(user="alice", session="s2")
        assert got.provenance == Provenance(request_id="req_1", model="m", roles=("api",), source_ids=("a", "b"))
        assert (got.kind, got.tier, got.state, got.version) == ("preference", "recall", "active", 1)
        assert got.event_time == when
        assert got.id.startswith(f"mem_{owner_key('alice')}_")
        assert got.tokens == engine.counter.count("[2023-05-08] Prefers tea ☕ over coffee")

    open_engine.run(scenario())


def test_update_reembeds_and_bumps_version(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        [cube] = await engine.add(ALICE, [NewMemory("User: my favourite sport is tennis")])
        assert (await engine.search("alice", "which racket sport do I play?")).items
        updated = await engine.update(cube.id, MemoryPatch(content="User: I play the cello in an orchestra"))
        assert updated.version == 2 and updated.updated_at is not None
        assert updated.tokens == engine.counter.count(updated.content)
        assert await engine.get(cube.id) == updated
        assert (await engine.search("alice", "which racket sport do I play?")).items == []
        hits = (await engine.search("alice", "what musical instrument do I play?")).items
        assert [h.cube.id for h in hits] == [cube.id]
        meta_only = await engine.update(cube.id, MemoryPatch(metadata={"k": [1]}, tier="core"))
        assert (meta_only.version, meta_only.metadata, meta_only.tier) == (3, {"k": [1]}, "core")
        assert meta_only.content == updated.content
        assert (await engine.get(cube.id)).metadata == {"k": [1]}

    open_engine.run(scenario())


def test_validation(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        with pytest.raises(InvalidMemory) as err:
            await engine.add(ALICE, [NewMemory("  \n ")])
        assert err.value.param == "content"
        with pytest.raises(InvalidMemory) as err:
            await engine.add(ALICE, [NewMemory("ok", tier="attic")])
        assert err.value.param == "tier"
        [cube] = await engine.add(ALICE, [NewMemory("ok")])
        with pytest.raises(InvalidMemory) as err:
            await engine.update(cube.id, MemoryPatch(state="melted"))
        assert err.value.param == "state"
        with pytest.raises(InvalidMemory) as err:
            await engine.update(cube.id, MemoryPatch(content=""))
        assert err.value.param == "content"
        assert (await engine.get(cube.id)).version == 1

    open_engine.run(scenario())


def test_delete(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        keep, gone = await engine.add(ALICE, [NewMemory("User: my cat is Luna"), NewMemory("User: my dog is Rex")])
        await engine.delete(gone.id)
        with pytest.raises(MemoryNotFound):
            await engine.get(gone.id)
        with pytest.raises(MemoryNotFound):
            await engine.delete(gone.id)
        with pytest.raises(MemoryNotFound):
            await engine.get("mem_nonsense")
        assert [c.id for c in (await engine.list("alice")).items] == [keep.id]
        hits = (await engine.search("alice", "what is my dog called? Rex")).items
        assert gone.id not in [h.cube.id for h in hits]

    open_engine.run(scenario())


def test_forget_user(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        await engine.add(ALICE, [NewMemory(f"User: fact number {i} about my garden") for i in range(5)])
        [bob] = await engine.add(Owner("bob"), [NewMemory("User: my garden has roses")])
        assert await engine.forget("alice") == 5
        assert (await engine.list("alice")).items == []
        assert (await engine.search("alice", "my garden")).items == []
        assert await engine.forget("alice") == 0
        assert (await engine.get(bob.id)) == bob
        await engine.add(ALICE, [NewMemory("User: a fresh start")])
        assert len((await engine.list("alice")).items) == 1

    open_engine.run(scenario())


def test_paging_with_after(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        cubes = []
        for i in range(7):  # separate calls: distinct creation order
            cubes += await engine.add(ALICE, [NewMemory(f"note {i}", tier="core" if i % 3 == 0 else "recall")])
        ids = [c.id for c in cubes]
        assert ids == sorted(ids)
        seen: list[str] = []
        after = None
        while True:
            page = await engine.list("alice", limit=3, after=after)
            seen += [c.id for c in page.items]
            if not page.has_more:
                break
            after = page.items[-1].id
        assert seen == ids
        core = await engine.list("alice", limit=10, tier="core")
        assert [c.id for c in core.items] == [ids[0], ids[3], ids[6]] and not core.has_more
        exact = await engine.list("alice", limit=7)
        assert len(exact.items) == 7 and not exact.has_more
        with pytest.raises(InvalidMemory):
            await engine.list("alice", tier="attic")

    open_engine.run(scenario())


def test_batch_add_of_1000_items(open_engine: EngineFactory) -> None:
    async def scenario() -> None:
        engine = await open_engine()
        items = [NewMemory(f"User: reading log entry {i}: chapter {i % 40} of book {i // 40}") for i in range(1000)]
        cubes = await engine.add(ALICE, items)
        assert len(cubes) == 1000 and len({c.id for c in cubes}) == 1000
        total = 0
        after = None
        while True:
            page = await engine.list("alice", limit=1000, after=after)
            total += len(page.items)
            if not page.has_more:
                break
            after = page.items[-1].id
        assert total == 1000
        hits = (await engine.search("alice", "reading log entry 537", limit=5)).items
        assert hits and hits[0].cube.content.startswith("User: reading log entry 537:")

    open_engine.run(scenario())
