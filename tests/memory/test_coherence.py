"""Coherence between processes over one ``chroma run`` server, and index snapshots.

Two engines in this test process stand for two replicas: each has its own
data directory (journal, snapshots) and its own in-process indexes, and they
share only the Chroma server. What one writes, edits, promotes or forgets
is what the other recalls next, patched into its index in place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import memory.chroma_store as chroma_store
from memory.coherence import SharedStore
from memory.cube import Owner, Tier
from memory.embedder import Embedder
from memory.engine import MemoryEngine, MemoryPatch, NewMemory
from memory.errors import StoreUnavailable
from memory.settings import MemorySettings
from testing.processes import ChromaServer
from tests.memory.memory_helpers import MIN_SCORE

ALICE = Owner(user="alice")
FACTS = [
    "User: my dog is called Biscuit",
    "User: I work as a nurse in Lyon",
    "User: my favourite dessert is tarte tatin",
    "User: I am allergic to peanuts",
]
# fast polls, so a test waits little; the bound is what a request may see at most
FAST = {"interval_ms": 20, "max_staleness_ms": 200, "clock_skew_ms": 2000}


async def _open(embedder: Embedder, folder: Path, **overrides: Any) -> MemoryEngine:
    settings = MemorySettings(**{"min_score": MIN_SCORE, **overrides})
    return await MemoryEngine.open(settings, folder, embedder=embedder)


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, tries: int = 200) -> None:
    """Poll ``check`` (no wall-clock assertion: a generous number of tries)."""
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def _ids(engine: MemoryEngine, query: str) -> list[str]:
    return [hit.cube.id for hit in (await engine.search("alice", query)).items]


def test_changes_through_one_engine_reach_the_other(
    embedder: Embedder, chroma_server: ChromaServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        a = await _open(embedder, tmp_path / "a", chroma_url=chroma_server.url, coherence=FAST)
        b = await _open(embedder, tmp_path / "b", chroma_url=chroma_server.url, coherence=FAST)
        try:
            assert a.coherence is not None and b.coherence is not None
            first = await a.add(ALICE, [NewMemory(f) for f in FACTS[:3]])
            await _eventually(lambda: _has(b, "what is my dog called?", first[0].id), "B recalls A's first write")
            await a.search("alice", "where do I work?")  # A holds alice's index too
            loads = {"a": 0, "b": 0}
            for name, engine in (("a", a), ("b", b)):
                _count_loads(engine, loads, name)
            index_b = b._lexical._cache["alice"]
            view_b = index_b._view
            assert view_b is not None and view_b.n == 3

            # write through A -> B recalls it, its view patched in place
            [peanuts] = await a.add(ALICE, [NewMemory(FACTS[3])])
            await _eventually(lambda: _has(b, "what am I allergic to?", peanuts.id), "B recalls A's new memory")
            assert index_b._view is view_b and view_b.n == 4  # appended, not rebuilt

            # edit through B -> A recalls the new text
            edited = await b.update(first[0].id, MemoryPatch(content="User: my dog is called Pretzel"))

            async def a_sees_edit() -> bool:
                hits = (await a.search("alice", "what is my dog called?")).items
                return any(h.cube.id == edited.id and "Pretzel" in h.cube.content for h in hits)

            await _eventually(a_sees_edit, "A recalls B's edit")

            # promote to core through B -> A's core block (and its version) changes
            before = await a.core("alice")
            assert first[1].id not in {c.id for c in before.items}
            await b.update(first[1].id, MemoryPatch(tier=Tier.CORE.value))

            async def a_core_has_it() -> bool:
                return first[1].id in {c.id for c in (await a.core("alice")).items}

            await _eventually(a_core_has_it, "A's core block holds B's promotion")
            assert (await a.core("alice")).version != before.version

            # forget one memory through B -> gone from A's recall, A's view patched in place
            view_a = a._lexical._cache["alice"]._view
            await b.delete(peanuts.id)

            async def a_forgot() -> bool:
                return peanuts.id not in await _ids(a, "what am I allergic to?")

            await _eventually(a_forgot, "A no longer recalls the memory B deleted")
            assert a._lexical._cache["alice"]._view is view_a
            assert peanuts.id not in a._lexical._cache["alice"].cubes
            assert loads == {"a": 0, "b": 0}, "a change rebuilt an owner from the store"

            # demote through A -> B's core (once read) loses it
            await b.core("alice")
            await a.update(first[1].id, MemoryPatch(tier=Tier.RECALL.value))

            async def b_core_lost_it() -> bool:
                return first[1].id not in {c.id for c in (await b.core("alice")).items}

            await _eventually(b_core_lost_it, "B's core block drops A's demotion")

            # erase the user through A -> B recalls nothing
            await a.erase("alice")

            async def b_empty() -> bool:
                return not (await b.search("alice", "what is my dog called?")).items

            await _eventually(b_empty, "B recalls nothing of an erased user")
            assert b.coherence.patched > 0
        finally:
            await a.aclose()
            await b.aclose()

    asyncio.run(scenario())


async def _has(engine: MemoryEngine, query: str, memory_id: str) -> bool:
    return memory_id in await _ids(engine, query)


def _count_loads(engine: MemoryEngine, counts: dict[str, int], name: str) -> None:
    """Count full reads of an owner from the store (snapshots are off for a server here)."""
    load = engine._load_owner

    async def counted(user: str) -> Any:
        counts[name] += 1
        return await load(user)

    engine._lexical._load = counted


def test_a_poll_that_fails_past_the_bound_fails_the_search(
    embedder: Embedder, chroma_server: ChromaServer, tmp_path: Path
) -> None:
    async def scenario() -> None:
        engine = await _open(embedder, tmp_path / "a", chroma_url=chroma_server.url, coherence=FAST)
        try:
            [cube] = await engine.add(ALICE, [NewMemory(FACTS[0])])
            assert await _has(engine, "what is my dog called?", cube.id)
            chroma_server.stop()
            coherence = engine.coherence
            assert coherence is not None

            async def poll_fails() -> bool:  # (a poll already under way when the server stopped may succeed)
                try:
                    await coherence.poll()
                except StoreUnavailable:
                    return True
                return False

            await _eventually(poll_fails, "a poll with the store down fails")

            async def refused() -> bool:  # within the bound recall may answer from the process, then not
                try:
                    await engine.search("alice", "what is my dog called?")
                except StoreUnavailable:
                    return True
                return False

            await _eventually(refused, "a search past the staleness bound with the store down fails")
        finally:
            await engine.aclose()

    asyncio.run(scenario())


def test_snapshot_and_delta_after_a_restart_equal_a_rebuild(embedder: Embedder, tmp_path: Path) -> None:
    queries = ["what is my dog called?", "where do I work?", "what can't I eat?", "dessert", "nurse Lyon"]

    async def scenario() -> None:
        first = await _open(embedder, tmp_path)
        cubes = await first.add(ALICE, [NewMemory(f"{fact} (note {n})") for n in range(6) for fact in FACTS])
        await first.search("alice", queries[0])  # builds alice's index
        await first.aclose()  # ... and saves its snapshot
        snapshot = tmp_path / "index"
        assert len(list(snapshot.glob("*.snap"))) == 1

        # changes the snapshot does not hold: written by a process that never loads alice
        second = await _open(embedder, tmp_path, snapshot={"warm_owners": 0})
        added = await second.add(ALICE, [NewMemory("User: my sister lives in Oslo")])
        await second.update(cubes[0].id, MemoryPatch(content="User: my dog is called Pretzel"))
        await second.update(cubes[1].id, MemoryPatch(state="archived"))
        await second.delete(cubes[2].id)
        assert not second._lexical.holds("alice")
        await second.aclose()

        restored = await _open(embedder, tmp_path, snapshot={"warm_owners": 0})
        assert restored.snapshots is not None
        fulls: list[str] = []
        read = restored.store.active_with_vectors  # type: ignore[attr-defined]

        async def counted(user: str) -> Any:
            fulls.append(user)
            return await read(user)

        restored.store.active_with_vectors = counted  # type: ignore[attr-defined]
        got = [await _ranked(restored, q) for q in queries + ["sister Oslo"]]
        assert restored.snapshots.restored == 1 and fulls == [], "the owner was rebuilt, not restored"
        index = restored._lexical._cache["alice"]
        assert added[0].id in index.cubes and "Pretzel" in index.cubes[cubes[0].id].content
        assert cubes[1].id not in index.cubes and cubes[2].id not in index.cubes
        await restored.aclose()  # saves the snapshot again, the delta folded in

        again = await _open(embedder, tmp_path, snapshot={"warm_owners": 0})
        got_again = [await _ranked(again, q) for q in queries + ["sister Oslo"]]
        assert again.snapshots is not None and again.snapshots.restored == 1
        await again.aclose()

        rebuilt = await _open(embedder, tmp_path, snapshot={"enabled": False})
        want = [await _ranked(rebuilt, q) for q in queries + ["sister Oslo"]]
        await rebuilt.aclose()
        assert got == want
        assert got_again == want

    asyncio.run(scenario())


def test_the_embedded_store_logs_deletions_but_no_writes(embedder: Embedder, tmp_path: Path) -> None:
    """No other process reads an embedded store's log, and every record is a Chroma add
    that holds the GIL: writes are found by their stamp at a restore (the test above)."""

    async def scenario() -> None:
        engine = await _open(embedder, tmp_path)
        try:
            cubes = await engine.add(ALICE, [NewMemory(fact) for fact in FACTS])
            await engine.delete(cubes[0].id)
            store = engine.store
            assert isinstance(store, SharedStore) and not store.log_writes
            changes = await store.changes.since(0.0)
        finally:
            await engine.aclose()
        assert [c.op for c in changes] == ["delete"]
        assert changes[0].ids == (cubes[0].id,)

    asyncio.run(scenario())


async def _ranked(engine: MemoryEngine, query: str) -> list[tuple[str, float]]:
    return [(h.cube.id, round(h.score, 6)) for h in (await engine.search("alice", query)).items]


def test_listing_pages_from_the_store_across_page_and_window_edges(
    embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chroma_store, "READ_PAGE", 64)  # store reads cross their page edge
    monkeypatch.setattr(chroma_store, "LIST_WINDOW_MS", 1)  # id windows widen several times

    async def scenario() -> None:
        engine = await _open(embedder, tmp_path, snapshot={"enabled": False})
        try:
            stored: list[str] = []
            for batch in range(3):
                items = [NewMemory(f"User: fact number {batch}-{n}", tier="core" if n % 5 == 0 else "recall")
                         for n in range(90)]
                stored += [c.id for c in await engine.add(ALICE, items)]
                await asyncio.sleep(0.01)  # ids of later batches a few milliseconds apart
            assert stored == sorted(stored)
            for tier, want in ((None, stored), ("core", [i for n, i in enumerate(stored) if n % 90 % 5 == 0])):
                seen: list[str] = []
                after: str | None = None
                while True:
                    page = await engine.list("alice", limit=100, after=after, tier=tier)
                    seen += [c.id for c in page.items]
                    if not page.has_more:
                        break
                    assert len(page.items) == 100
                    after = page.items[-1].id
                assert seen == want

            # dense windows (more rows than a window may hold in one read) are narrowed, down to one millisecond
            monkeypatch.setattr(chroma_store, "LIST_MIN_CAP", 8)
            seen, after = [], None
            while True:
                page = await engine.list("alice", limit=7, after=after)
                seen += [c.id for c in page.items]
                if not page.has_more:
                    break
                after = page.items[-1].id
            assert seen == stored

            # a collection written before rows carried ``_id_ms``: stamped on its first listing
            store = engine.store.inner  # type: ignore[attr-defined]
            collection = store._collection(ALICE.key, create=False)
            collection.modify(metadata={chroma_store.LISTING_MARK: 0})
            store._listable.clear()
            page = await engine.list("alice", limit=100, after=stored[149])
            assert [c.id for c in page.items] == stored[150:250] and page.has_more
        finally:
            await engine.aclose()

    asyncio.run(scenario())
